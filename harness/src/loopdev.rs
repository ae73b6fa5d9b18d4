//! A loop device of the run's own, backed by a file in the run directory:
//! the block device the io-limit scenario writes to, never a disk of the
//! host. Made through /dev/loop-control (LOOP_CTL_GET_FREE, LOOP_SET_FD),
//! marked autoclear so it detaches by itself once the last fd is closed,
//! even if the harness dies; dropped: detached, then its file deleted.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use isocheck_runtime::sys;

use crate::fixtures::{io_err as io, FixtureError};

const CONTROL: &str = "/dev/loop-control";
/// Size of the scenario's loop device (a sparse file: only what is written
/// takes space).
pub const SIZE: u64 = 64 << 20;
/// LOOP_CTL_GET_FREE and LOOP_SET_FD are two steps: another process may
/// take the same device in between (EBUSY); then try the next free one.
const TRIES: usize = 8;

#[derive(Debug)]
pub struct LoopDevice {
    /// /dev/loopN.
    pub path: PathBuf,
    /// The backing file, deleted on drop.
    pub backing: PathBuf,
    device: File,
}

impl LoopDevice {
    /// A loop device over a new sparse file of `bytes` at `backing`.
    pub fn create(backing: PathBuf, bytes: u64, label: &str) -> Result<LoopDevice, FixtureError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&backing)
            .map_err(io("create the loop device's file", &backing))?;
        file.set_len(bytes)
            .map_err(io("size the loop device's file", &backing))?;
        let attached = Self::attach(&file, label);
        drop(file);
        match attached {
            Ok((path, device)) => Ok(LoopDevice {
                path,
                backing,
                device,
            }),
            Err(e) => {
                let _ = std::fs::remove_file(&backing);
                Err(e)
            }
        }
    }

    fn attach(file: &File, label: &str) -> Result<(PathBuf, File), FixtureError> {
        let control_path = Path::new(CONTROL);
        let control = File::open(control_path).map_err(io("open", control_path))?;
        let mut last = nix::errno::Errno::EBUSY;
        for _ in 0..TRIES {
            let n = sys::loop_get_free(control.as_fd()).map_err(|source| FixtureError::Sys {
                step: "LOOP_CTL_GET_FREE on /dev/loop-control",
                source,
            })?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let device = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io("open the free loop device", &path))?;
            match sys::loop_attach(device.as_fd(), file.as_fd(), label.as_bytes()) {
                Ok(()) => return Ok((path, device)),
                Err(nix::errno::Errno::EBUSY) => last = nix::errno::Errno::EBUSY,
                Err(source) => {
                    return Err(FixtureError::Sys {
                        step: "LOOP_SET_FD / LOOP_SET_STATUS64",
                        source,
                    })
                }
            }
        }
        Err(FixtureError::Sys {
            step: "attach a loop device (taken by others each time)",
            source: last,
        })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Err(e) = sys::loop_detach(self.device.as_fd()) {
            tracing::warn!(device = %self.path.display(), error = %e, "detach the loop device");
        }
        if let Err(e) = std::fs::remove_file(&self.backing) {
            tracing::warn!(file = %self.backing.display(), error = %e, "remove the loop device's file");
        }
    }
}

#[cfg(all(test, feature = "privileged"))]
mod tests {
    use super::*;

    /// Attach, check the kernel shows our file behind it, drop, check the
    /// device is free again and the file gone.
    #[test]
    fn a_loop_device_is_made_and_leaves_nothing() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        let backing = dir.path().join("loop.img");
        let dev = LoopDevice::create(backing.clone(), 8 << 20, "isocheck-test").expect("create");
        let name = dev
            .path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let sysfs = format!("/sys/block/{name}/loop/backing_file");
        let shown = std::fs::read_to_string(&sysfs).expect("backing_file");
        assert_eq!(shown.trim(), backing.display().to_string());
        drop(dev);
        assert!(!backing.exists());
        // The kernel finishes a detach after the last close, not inside
        // LOOP_CLR_FD, and a free device may be taken again at once by
        // another run: what must end is *our* file behind it.
        let ours = |shown: &str| shown.trim() == backing.display().to_string();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&sysfs).is_ok_and(|s| ours(&s)) {
            assert!(
                std::time::Instant::now() < deadline,
                "{name} still attached to our file 5 s after drop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

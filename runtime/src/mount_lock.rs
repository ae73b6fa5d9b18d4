//! Locked mounts: what keeps root in a user namespace from undoing the
//! container's mount table.
//!
//! The container's mount namespace is owned by its user namespace, where its
//! root holds CAP_SYS_ADMIN once kept: it may remount a read-only bind
//! read-write and unmount a mask to see the kernel file below. The kernel
//! locks mounts only when it copies a mount namespace into a *less
//! privileged* user namespace (MNT_LOCK_READONLY and the other flag locks on
//! every mount, MNT_LOCKED on every submount: see mount_namespaces(7)). So,
//! once the root is built, PID 1 enters a user namespace nested in the
//! container's, mapping the same ids onto themselves, together with a copy of
//! its mount namespace: in the copy everything is locked, and nothing else
//! changes (same ids, same root, same working directory; the capabilities are
//! set after this step).
//!
//! The nested maps cannot be written by PID 1 itself (a process may map only
//! its own single id) nor by the runtime on the host (a map's writer must be
//! in the namespace or in its parent), so a helper forked just before, which
//! stays in the container's user namespace, writes them and exits.
//!
//! Runs in the container's child after clone: no allocation, raw syscalls.

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;

use crate::spec::IdMap;
use crate::step::{Step, StepFailure};
use crate::sys::{self, Forked};

/// The nested namespace's maps, prepared by the parent before clone.
#[derive(Debug, Clone)]
pub struct NestedMaps {
    uid_map: CString,
    gid_map: CString,
}

impl NestedMaps {
    /// Each range the container's user namespace maps, onto itself.
    pub fn identity_of(uid_map: &[IdMap], gid_map: &[IdMap]) -> NestedMaps {
        let text = |map: &[IdMap]| {
            let lines: String = map
                .iter()
                .map(|m| format!("{} {} {}\n", m.inside, m.inside, m.count))
                .collect();
            // Numbers and spaces only: no NUL can occur.
            CString::new(lines).unwrap_or_default()
        };
        NestedMaps {
            uid_map: text(uid_map),
            gid_map: text(gid_map),
        }
    }

    /// The uid map's text (for tests and messages).
    pub fn uid_map(&self) -> &str {
        self.uid_map.to_str().unwrap_or("")
    }
}

fn failed(errno: Errno, what: &[u8]) -> StepFailure {
    StepFailure::new(Step::LockMounts, errno, what)
}

/// Enters the nested user namespace and the locked copy of the mount
/// namespace. On return the mount table is the same and every mount of it is
/// locked.
pub fn enter(maps: &NestedMaps) -> Result<(), StepFailure> {
    // The maps are files of ours in /proc, owned by our euid only while we
    // are dumpable; switching to root inside cleared that (execve sets it
    // again for an ordinary program in any case).
    sys::set_dumpable().map_err(|e| failed(e, b"PR_SET_DUMPABLE"))?;
    // Opened before the unshare, in the container's /proc: the helper writes
    // the maps through it, without formatting a pid.
    let own_proc = sys::open(c"/proc/self", libc::O_PATH | libc::O_DIRECTORY)
        .map_err(|e| failed(e, b"/proc/self"))?;
    let (go_read, go_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| failed(e, b"pipe"))?;
    // SAFETY: the helper runs only `helper_main` (raw syscalls on fds and
    // C strings made before clone) and ends in `exit_now`.
    let forked = unsafe { sys::clone3(0, false) }.map_err(|e| failed(e, b"fork the map writer"))?;
    let helper = match forked {
        Forked::Child => {
            drop(go_write);
            helper_main(go_read.as_fd(), own_proc.as_fd(), maps)
        }
        Forked::Parent { pid, .. } => pid,
    };
    drop(go_read);
    let entered = sys::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
    if entered.is_ok() {
        // The helper waits for this byte; on failure it sees EOF instead.
        let _ = sys::write_all(go_write.as_fd(), b"g");
    }
    drop(go_write);
    let helper_status = sys::wait_exit_code(helper);
    entered.map_err(|e| failed(e, b"unshare(CLONE_NEWUSER|CLONE_NEWNS)"))?;
    match helper_status {
        Ok(0) => Ok(()),
        Ok(code) => Err(failed(Errno::from_raw(code), b"write the nested id maps")),
        Err(e) => Err(failed(e, b"wait for the map writer")),
    }
}

/// The helper: waits until PID 1 is in the nested namespace, writes its maps,
/// exits with 0 or the errno.
fn helper_main(go: BorrowedFd<'_>, target: BorrowedFd<'_>, maps: &NestedMaps) -> ! {
    let mut byte = [0u8; 1];
    match sys::read(go, &mut byte) {
        Ok(1) => {}
        // PID 1 gave up: nothing to write.
        _ => sys::exit_now(0),
    }
    for (file, text) in [(c"gid_map", &maps.gid_map), (c"uid_map", &maps.uid_map)] {
        let written = sys::openat(target, file, libc::O_WRONLY)
            .and_then(|fd: OwnedFd| sys::write_all(fd.as_fd(), text.as_bytes()));
        if let Err(e) = written {
            sys::exit_now(e as i32);
        }
    }
    sys::exit_now(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_are_the_outer_ranges_onto_themselves() {
        let outer = [
            IdMap {
                inside: 0,
                outside: 100_000,
                count: 65_536,
            },
            IdMap {
                inside: 70_000,
                outside: 5,
                count: 1,
            },
        ];
        let maps = NestedMaps::identity_of(&outer, &outer[..1]);
        assert_eq!(maps.uid_map(), "0 0 65536\n70000 70000 1\n");
        assert_eq!(maps.gid_map.to_str().unwrap(), "0 0 65536\n");
    }
}

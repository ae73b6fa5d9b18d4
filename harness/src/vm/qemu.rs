//! Booting a guest with qemu-system-x86_64: always under a deadline, console
//! to a log file, and acceleration detected by trying it (a usable /dev/kvm
//! is not proof that a stock kernel boots under it: kvm_pvm hangs them).

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::guest::{BOOT_MARKER, SHARE_TAG};

/// How the guest's CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// qemu's software emulator, multi-threaded.
    Tcg,
    /// No VM: the `host` leg.
    None,
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
            Accel::None => "none",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QemuError {
    #[error("start qemu-system-x86_64: {0}")]
    Spawn(std::io::Error),
    #[error("wait for qemu: {0}")]
    Wait(std::io::Error),
}

/// One boot.
#[derive(Debug, Clone)]
pub struct QemuBoot {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub cmdline: String,
    /// Host directory shared read-write as 9p tag [`SHARE_TAG`].
    pub share_dir: PathBuf,
    pub console_log: PathBuf,
    pub accel: Accel,
    /// Kill the guest after this long, whatever it is doing.
    pub timeout: Duration,
    /// Kill the guest early if /init has not printed its marker by then.
    pub boot_deadline: Option<Duration>,
}

/// What came of a boot.
#[derive(Debug, Clone)]
pub struct BootResult {
    /// `None` when we killed it.
    pub status: Option<ExitStatus>,
    pub timed_out: bool,
    /// Seconds from start until /init announced itself.
    pub boot_secs: Option<f64>,
    pub total_secs: f64,
    pub console: String,
}

impl BootResult {
    pub fn booted(&self) -> bool {
        self.boot_secs.is_some()
    }
}

/// The qemu command line for a boot.
pub fn qemu_args(boot: &QemuBoot) -> Vec<OsString> {
    let accel: &[&str] = match boot.accel {
        Accel::Kvm => &["-accel", "kvm", "-cpu", "host"],
        Accel::Tcg | Accel::None => &["-accel", "tcg,thread=multi", "-cpu", "max"],
    };
    // No default devices, no display, no monitor: the serial port is the
    // only console and it goes to a file we can read while the guest runs.
    let mut args: Vec<OsString> = [
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
        "-m",
        "2048",
        "-smp",
        "2",
    ]
    .iter()
    .chain(accel)
    .map(OsString::from)
    .collect();
    args.extend([
        OsString::from("-kernel"),
        boot.kernel.clone().into_os_string(),
        OsString::from("-initrd"),
        boot.initrd.clone().into_os_string(),
        OsString::from("-append"),
        OsString::from(&boot.cmdline),
        OsString::from("-serial"),
        OsString::from(format!("file:{}", boot.console_log.display())),
        OsString::from("-virtfs"),
        OsString::from(format!(
            "local,path={},mount_tag={SHARE_TAG},security_model=none,id=isocheck",
            boot.share_dir.display()
        )),
    ]);
    args
}

/// Can /dev/kvm be opened at all? Necessary, not sufficient.
pub fn kvm_device_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Kills and reaps qemu if the caller returns early.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Boot and wait for qemu to exit, the deadline, or a missed boot deadline.
pub fn boot(b: &QemuBoot) -> Result<BootResult, QemuError> {
    let _ = fs::remove_file(&b.console_log);
    let start = Instant::now();
    let child = Command::new("qemu-system-x86_64")
        .args(qemu_args(b))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(QemuError::Spawn)?;
    let mut guard = Guard(Some(child));
    let mut boot_secs = None;
    let mut timed_out = false;
    let status = loop {
        let child = guard
            .0
            .as_mut()
            .ok_or_else(|| QemuError::Wait(std::io::Error::other("qemu child already reaped")))?;
        if let Some(status) = child.try_wait().map_err(QemuError::Wait)? {
            break Some(status);
        }
        let elapsed = start.elapsed();
        if boot_secs.is_none() && console_has(&b.console_log, BOOT_MARKER) {
            boot_secs = Some(elapsed.as_secs_f64());
        }
        let missed_boot = boot_secs.is_none() && b.boot_deadline.is_some_and(|d| elapsed > d);
        if elapsed > b.timeout || missed_boot {
            timed_out = elapsed > b.timeout;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut child) = guard.0.take() {
        if let Some(mut err) = child.stderr.take() {
            use std::io::Read;
            let _ = err.read_to_string(&mut stderr);
        }
    }
    let mut console = fs::read(&b.console_log)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    if boot_secs.is_none() && console.contains(BOOT_MARKER) {
        // Booted and finished between two polls.
        boot_secs = Some(start.elapsed().as_secs_f64());
    }
    if !stderr.trim().is_empty() {
        console.push_str("\n--- qemu stderr ---\n");
        console.push_str(&stderr);
    }
    Ok(BootResult {
        status,
        timed_out,
        boot_secs,
        total_secs: start.elapsed().as_secs_f64(),
        console,
    })
}

fn console_has(log: &Path, needle: &str) -> bool {
    fs::read(log)
        .map(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(accel: Accel) -> QemuBoot {
        QemuBoot {
            kernel: "/k/vmlinuz".into(),
            initrd: "/k/initrd".into(),
            cmdline: "console=ttyS0 cgroup_no_v1=all".into(),
            share_dir: "/tmp/isocheck-x/share".into(),
            console_log: "/tmp/isocheck-x/console.log".into(),
            accel,
            timeout: Duration::from_secs(60),
            boot_deadline: None,
        }
    }

    fn joined(b: &QemuBoot) -> String {
        qemu_args(b)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn tcg_args_use_multithreaded_tcg_and_cpu_max() {
        let s = joined(&sample(Accel::Tcg));
        assert!(s.contains("-accel tcg,thread=multi -cpu max"), "{s}");
        assert!(s.contains("-m 2048 -smp 2"), "{s}");
        assert!(s.contains("-no-reboot"), "{s}");
        assert!(
            s.contains("-serial file:/tmp/isocheck-x/console.log"),
            "{s}"
        );
        assert!(s.contains(
            "-virtfs local,path=/tmp/isocheck-x/share,mount_tag=isocheck-out,security_model=none"
        ));
        assert!(s.contains("-append console=ttyS0 cgroup_no_v1=all"), "{s}");
    }

    #[test]
    fn kvm_args_use_the_host_cpu() {
        let s = joined(&sample(Accel::Kvm));
        assert!(s.contains("-accel kvm -cpu host"), "{s}");
        assert!(!s.contains("tcg"));
    }
}

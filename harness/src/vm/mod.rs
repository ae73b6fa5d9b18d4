//! The kernel matrix's local runner: each leg boots a stock Debian kernel in
//! qemu with a busybox initramfs, mounts cgroups in the leg's mode, runs the
//! suite inside and brings the JSON report back.
//!
//! Steps, in running order: [`kernel::fetch_kernel`] (apt, cached) →
//! [`kernel::plan_for`] (modules in load order) → [`guest::init_script`] →
//! [`initramfs::build`] → [`qemu::boot`] (KVM probed, TCG fallback) → the
//! report from the 9p share, else from the console.

pub mod batch;
pub mod guest;
pub mod initramfs;
pub mod kernel;
pub mod legs;
pub mod qemu;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use legs::{find_leg, list_legs, CgroupMode, Leg, LegKind};
pub use qemu::Accel;

use crate::report::Report;

/// How long a KVM boot may take to reach /init before we call KVM unusable
/// and fall back to TCG. Stock kernels reach /init in 1-3 s under working KVM.
pub const KVM_PROBE_DEADLINE: Duration = Duration::from_secs(20);

/// The OCI runtimes every guest carries when the host has them.
pub const GUEST_RUNTIMES: &[&str] = &["runc", "crun"];

/// Options the CLI passes for a qemu leg.
#[derive(Debug, Clone)]
pub struct VmRunOptions {
    /// Static `isocheck`, run in the guest as `/isocheck run ...`.
    pub isocheck_bin: PathBuf,
    /// Static `isocheck-probe`, placed at `/isocheck-probe`.
    pub probe_bin: PathBuf,
    /// Copied to `/scenarios` in the guest.
    pub scenarios_dir: PathBuf,
    /// Kernels and apt state live here (default [`default_cache_dir`]).
    pub cache_dir: PathBuf,
    /// Whole-boot deadline; the guest is killed after it.
    pub timeout: Duration,
    /// Passed to the guest's `isocheck run --only`.
    pub only: Option<Vec<String>>,
    /// The OCI runtime the guest's suite runs through (`isocheck run
    /// --runtime`): a name looked up on this host or a host path; carried
    /// into the guest's /sbin with its libraries. `None`: ours.
    pub runtime: Option<String>,
}

/// `~/.cache/isocheck/vm` (or `$XDG_CACHE_HOME/isocheck/vm`).
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("isocheck").join("vm")
}

/// What a leg produced. A leg that did not boot or wrote no report has
/// `report: None`, `error` saying why, and the console tail.
#[derive(Debug, Clone)]
pub struct LegOutcome {
    pub leg: String,
    pub report: Option<Report>,
    pub accel: Accel,
    /// `uname -r` of the booted kernel.
    pub kernel_version: String,
    /// Seconds from qemu start until /init ran (the boot that counted).
    pub boot_secs: Option<f64>,
    /// Seconds for the whole leg, KVM probe and initramfs build included.
    pub total_secs: f64,
    pub console_tail: String,
    /// Full console log of the boot that counted, kept in the cache.
    pub console_log: PathBuf,
    pub error: Option<String>,
    /// Things worth knowing that are not errors (KVM fallback, built-in or
    /// missing modules, report taken from the console).
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("unknown leg {0:?} (see `isocheck vm list`)")]
    UnknownLeg(String),
    #[error("the host leg runs on this machine: call the suite runner directly")]
    HostLeg,
    #[error("{what} not found at {path}")]
    MissingInput { what: &'static str, path: PathBuf },
    #[error("--runtime {0:?}: not on this host's PATH nor in cargo's bin dir, so it cannot be carried into the guest")]
    RuntimeNotFound(String),
    #[error("create work directory: {0}")]
    WorkDir(std::io::Error),
    #[error("kernel: {0}")]
    Kernel(#[from] kernel::KernelError),
    #[error("initramfs: {0}")]
    Initramfs(#[from] initramfs::InitramfsError),
    #[error("qemu: {0}")]
    Qemu(#[from] qemu::QemuError),
}

/// $ISOCHECK_BUSYBOX, else Debian's busybox-static fetched once into the
/// cache like the kernels (nothing to install on the host, and never a
/// dynamically linked busybox that cannot run in the initramfs).
fn busybox_path(cache_dir: &Path) -> Result<PathBuf, VmError> {
    match std::env::var_os("ISOCHECK_BUSYBOX") {
        Some(p) => Ok(PathBuf::from(p)),
        None => Ok(kernel::fetch_busybox(cache_dir)?),
    }
}

fn require(what: &'static str, path: &Path) -> Result<(), VmError> {
    if path.exists() {
        Ok(())
    } else {
        Err(VmError::MissingInput {
            what,
            path: path.to_owned(),
        })
    }
}

/// Host programs the guest needs beside busybox: nft, for the NAT and port
/// forwarding scenarios. Without it those scenarios say unsupported.
fn guest_programs(
    notes: &mut Vec<String>,
    runtime: Option<&str>,
) -> Result<(Vec<initramfs::HostProgram>, Option<String>), VmError> {
    let mut programs = Vec::new();
    match ["/usr/sbin/nft", "/sbin/nft"]
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
    {
        None => notes.push("no nft on this host: the guest's NAT scenarios are unsupported".into()),
        Some(nft) => match initramfs::HostProgram::resolve(nft) {
            Ok(p) => programs.push(p),
            Err(e) => notes.push(format!("nft left out of the guest: {e}")),
        },
    }
    // The runtimes every guest carries when this host has them, so `vm run
    // LEG --runtime runc|crun` works on every leg (crun, which refuses this
    // hybrid host, runs on the v2 legs); any other is carried when asked.
    for name in GUEST_RUNTIMES {
        let Some(path) = crate::oci::trials::find_installed(name) else {
            notes.push(format!("no {name} on this host: not in the guest"));
            continue;
        };
        match initramfs::HostProgram::resolve(&path) {
            Ok(p) => programs.push(p),
            Err(e) => notes.push(format!("{name} left out of the guest: {e}")),
        }
    }
    let Some(asked) = runtime.filter(|r| *r != "isocheck") else {
        return Ok((programs, None));
    };
    let path = if asked.contains('/') {
        Some(PathBuf::from(asked)).filter(|p| p.is_file())
    } else {
        crate::oci::trials::find_installed(asked)
    }
    .ok_or_else(|| VmError::RuntimeNotFound(asked.to_owned()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| VmError::RuntimeNotFound(asked.to_owned()))?;
    // Asked for: it takes its name's place in /sbin (a wrapper called runc
    // wins over the host's runc), and one that cannot be carried stops the
    // leg.
    let asked_program = initramfs::HostProgram::resolve(&path)?;
    programs.retain(|p| p.path.file_name() != path.file_name());
    programs.push(asked_program);
    Ok((programs, Some(format!("/sbin/{name}"))))
}

/// Which accelerations to try, in order. `ISOCHECK_VM_ACCEL=tcg|kvm` pins
/// one (CI runners that know their /dev/kvm works, or a quick TCG-only run).
/// A kernel that failed the KVM probe on this host is not probed again: the
/// failure is remembered in the cache, keyed by the host's kernel release so
/// a changed hypervisor is probed afresh (`rm CACHE/kvm-unusable` forgets).
fn accel_plan(cache_dir: &Path, kernel_version: &str) -> Vec<Accel> {
    match std::env::var("ISOCHECK_VM_ACCEL").as_deref() {
        Ok("tcg") => vec![Accel::Tcg],
        Ok("kvm") => vec![Accel::Kvm],
        _ if kvm_failed_before(cache_dir, kernel_version) => vec![Accel::Tcg],
        _ if qemu::kvm_device_usable() => vec![Accel::Kvm, Accel::Tcg],
        _ => vec![Accel::Tcg],
    }
}

/// `CACHE/kvm-unusable`: one "HOST_RELEASE GUEST_VERSION" line per kernel
/// that did not reach /init under this host's KVM.
fn kvm_memory(cache_dir: &Path) -> PathBuf {
    cache_dir.join("kvm-unusable")
}

fn kvm_memory_line(kernel_version: &str) -> String {
    let host = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("{host} {kernel_version}")
}

fn kvm_failed_before(cache_dir: &Path, kernel_version: &str) -> bool {
    let line = kvm_memory_line(kernel_version);
    fs::read_to_string(kvm_memory(cache_dir))
        .is_ok_and(|text| text.lines().any(|l| l.trim() == line))
}

/// Best effort: a cache we cannot write only costs the next run a probe.
fn remember_kvm_failure(cache_dir: &Path, kernel_version: &str) {
    if kvm_failed_before(cache_dir, kernel_version) {
        return;
    }
    let path = kvm_memory(cache_dir);
    let mut text = fs::read_to_string(&path).unwrap_or_default();
    text.push_str(&kvm_memory_line(kernel_version));
    text.push('\n');
    let _ = fs::write(&path, text);
}

/// Run one qemu leg to the end. Errors are for things that stop the leg
/// before a boot (bad inputs, kernel fetch, initramfs); a guest that fails to
/// boot or report is an `Ok` outcome with `error` set.
pub fn run_leg(leg_name: &str, opts: &VmRunOptions) -> Result<LegOutcome, VmError> {
    let started = Instant::now();
    let leg = find_leg(leg_name).ok_or_else(|| VmError::UnknownLeg(leg_name.to_owned()))?;
    let mode = match (leg.kind, leg.cgroup_mode) {
        (LegKind::Qemu, Some(mode)) => mode,
        _ => return Err(VmError::HostLeg),
    };
    require("isocheck binary", &opts.isocheck_bin)?;
    require("probe binary", &opts.probe_bin)?;
    let busybox = busybox_path(&opts.cache_dir)?;
    let mut notes = Vec::new();

    let tree = kernel::fetch_kernel(leg.suite, &opts.cache_dir)?;
    let plan = kernel::plan_for(&tree)?;
    if !plan.builtin.is_empty() {
        notes.push(format!("built in: {}", plan.builtin.join(" ")));
    }
    if !plan.missing.is_empty() {
        notes.push(format!("not in this kernel: {}", plan.missing.join(" ")));
    }

    let (programs, guest_runtime) = guest_programs(&mut notes, opts.runtime.as_deref())?;

    let work = tempfile::Builder::new()
        .prefix(&format!("isocheck-vm-{leg_name}-"))
        .tempdir()
        .map_err(VmError::WorkDir)?;
    let share = work.path().join("share");
    fs::create_dir(&share).map_err(VmError::WorkDir)?;
    let initrd = work.path().join("initramfs.cpio");
    let init = guest::init_script(&guest::InitConfig {
        mode,
        modules: plan
            .load_order
            .iter()
            .enumerate()
            .map(|(i, rel)| initramfs::guest_module_name(i, rel))
            .collect(),
        command: guest::suite_command(opts.only.as_deref(), guest_runtime.as_deref()),
    });
    initramfs::build(
        &initramfs::GuestFiles {
            busybox: &busybox,
            isocheck_bin: &opts.isocheck_bin,
            probe_bin: &opts.probe_bin,
            scenarios_dir: &opts.scenarios_dir,
            init_script: &init,
            kernel: &tree,
            modules: &plan,
            programs: &programs,
        },
        &initrd,
    )?;

    let logs = opts.cache_dir.join("logs");
    fs::create_dir_all(&logs).map_err(VmError::WorkDir)?;
    let console_log = logs.join(format!("{leg_name}.console.log"));
    let mut boot = qemu::QemuBoot {
        kernel: tree.vmlinuz.clone(),
        initrd,
        cmdline: guest::kernel_cmdline(mode),
        share_dir: share.clone(),
        console_log: console_log.clone(),
        accel: Accel::Tcg,
        timeout: opts.timeout,
        boot_deadline: None,
    };
    let plan_accel = accel_plan(&opts.cache_dir, &tree.version);
    let mut result = None;
    for (i, accel) in plan_accel.iter().enumerate() {
        let last = i + 1 == plan_accel.len();
        boot.accel = *accel;
        // Every try but the last is a probe: it must reach /init quickly.
        boot.boot_deadline = (!last).then_some(KVM_PROBE_DEADLINE.min(opts.timeout));
        let r = qemu::boot(&boot)?;
        if r.booted() || last {
            result = Some(r);
            break;
        }
        if *accel == Accel::Kvm {
            remember_kvm_failure(&opts.cache_dir, &tree.version);
        }
        notes.push(format!(
            "{accel} did not reach /init within {}s (console: {}); falling back",
            KVM_PROBE_DEADLINE.as_secs(),
            guest::console_tail(&r.console, 1)
        ));
    }
    let Some(result) = result else {
        // accel_plan never returns an empty list.
        return Err(VmError::WorkDir(std::io::Error::other(
            "no acceleration to try",
        )));
    };

    let tail = guest::console_tail(&result.console, 40);
    let (report, error) = collect_report(&share, &result, &mut notes);
    Ok(LegOutcome {
        leg: leg_name.to_owned(),
        report,
        accel: boot.accel,
        kernel_version: tree.version,
        boot_secs: result.boot_secs,
        total_secs: started.elapsed().as_secs_f64(),
        console_tail: tail,
        console_log,
        error,
        notes,
    })
}

/// The report from the 9p share, else from the console markers; or why
/// there is none.
fn collect_report(
    share: &Path,
    result: &qemu::BootResult,
    notes: &mut Vec<String>,
) -> (Option<Report>, Option<String>) {
    let from_share = fs::read_to_string(share.join("report.json")).ok();
    let text = match from_share {
        Some(t) => t,
        None => match guest::report_from_console(&result.console) {
            Some(t) => {
                notes.push("report read from the serial console (no 9p copy)".to_owned());
                t
            }
            None => {
                let why = if !result.booted() {
                    "the guest did not boot (no /init marker on the console)".to_owned()
                } else if result.timed_out {
                    "the guest timed out before writing a report".to_owned()
                } else {
                    format!(
                        "the guest exited ({}) without a report",
                        result
                            .status
                            .map(|s| s.to_string())
                            .unwrap_or_else(|| "killed".to_owned())
                    )
                };
                return (None, Some(why));
            }
        },
    };
    match serde_json::from_str::<Report>(&text) {
        Ok(r) => (Some(r), None),
        Err(e) => (
            None,
            Some(format!("the guest's report is not valid JSON: {e}")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kvm_failure_is_remembered_per_guest_kernel() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        assert!(!kvm_failed_before(dir.path(), "6.1.0-50-amd64"));
        remember_kvm_failure(dir.path(), "6.1.0-50-amd64");
        remember_kvm_failure(dir.path(), "6.1.0-50-amd64");
        assert!(kvm_failed_before(dir.path(), "6.1.0-50-amd64"));
        assert!(!kvm_failed_before(dir.path(), "5.10.0-32-amd64"));
        let text = fs::read_to_string(kvm_memory(dir.path())).expect("memory file");
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn a_failure_on_another_host_kernel_does_not_count() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        fs::write(kvm_memory(dir.path()), "0.0.0-other-host 6.1.0-50-amd64\n").expect("write");
        assert!(!kvm_failed_before(dir.path(), "6.1.0-50-amd64"));
    }
}

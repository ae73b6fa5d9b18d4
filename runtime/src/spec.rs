//! What to build: a container described as plain data (serde), validated once,
//! up front, before any kernel object is created. Errors name the field and
//! the value that was refused.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole container: root filesystem, namespaces, mounts, limits, network,
/// privileges and the command to run as its first process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerSpec {
    pub rootfs: Rootfs,
    pub namespaces: Namespaces,
    /// Bind mounts, applied in order after the root is in place.
    pub mounts: Vec<BindMount>,
    /// Hostname inside; needs `namespaces.uts`.
    pub hostname: Option<String>,
    pub limits: Limits,
    pub network: NetworkMode,
    /// Capabilities kept in all five sets (bounding, effective, permitted,
    /// inheritable, ambient), as `CAP_*` names. Everything else is dropped.
    pub capabilities: Vec<String>,
    pub no_new_privs: bool,
    /// uid/gid maps; needs `namespaces.user`.
    pub user: Option<UserMapping>,
    /// Clock offsets of the time namespace; needs `namespaces.time`.
    pub time_offsets: TimeOffsets,
    /// How /proc/sys and the cgroup filesystem appear inside. The defaults
    /// are the safe ones; the others exist so a control can switch one
    /// protection off and watch the check fail.
    pub kernel_files: KernelFiles,
    /// Protections that have no other field; all on by default. See
    /// [`crate::protection::Protection`] for the whole list.
    pub hardening: Hardening,
    /// Kernel files and directories that act on or leak the host, masked
    /// when `kernel_files.mask_proc_files` (under /proc or /sys only). A
    /// path this kernel lacks is skipped.
    pub masked_paths: Vec<PathBuf>,
    /// Kernel files and directories made read-only when
    /// `kernel_files.readonly_paths` (under /proc or /sys only); /proc/sys
    /// has its own switch, `kernel_files.proc_sys_readonly`.
    pub readonly_paths: Vec<PathBuf>,
    /// The seccomp filter installed right before execve (the default deny
    /// list unless the spec names its own); `None` installs none.
    pub seccomp: Option<crate::seccomp::SeccompPolicy>,
    /// argv of the first process; `command[0]` is a path inside the rootfs.
    pub command: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        ContainerSpec {
            rootfs: Rootfs::default(),
            namespaces: Namespaces::default(),
            mounts: Vec::new(),
            hostname: None,
            limits: Limits::default(),
            network: NetworkMode::default(),
            capabilities: Vec::new(),
            no_new_privs: true,
            user: None,
            time_offsets: TimeOffsets::default(),
            kernel_files: KernelFiles::default(),
            hardening: Hardening::default(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(PathBuf::from).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS.iter().map(PathBuf::from).collect(),
            seccomp: Some(crate::seccomp::SeccompPolicy::default()),
            command: Vec::new(),
            env: vec!["PATH=/bin:/sbin:/usr/bin:/usr/sbin".into()],
            cwd: PathBuf::from("/"),
        }
    }
}

/// What container engines mask by default: files that leak the host's
/// kernel state (memory, keys, timers, the scheduler, the kernel log) or act
/// on it (sysrq), and directories of host hardware and firmware.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/sysrq-trigger",
    "/proc/kmsg",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// What container engines make read-only by default (besides /proc/sys):
/// host bus, filesystem and interrupt settings, and sysrq.
pub const DEFAULT_READONLY_PATHS: &[&str] =
    &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sysrq-trigger"];

/// Where the root filesystem comes from and how the container is put in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rootfs {
    pub source: RootfsSource,
    /// Mount an overlay with a throw-away upper dir over the image, so the
    /// image is never written. Off only in controls (on a copy).
    pub overlay: bool,
    /// PivotRoot (the real thing) or ChrootOnly (escapable; controls only).
    pub entry: RootEntry,
}

impl Default for Rootfs {
    fn default() -> Self {
        Rootfs {
            source: RootfsSource::Dir(PathBuf::new()),
            overlay: true,
            entry: RootEntry::PivotRoot,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsSource {
    /// A directory used as the image.
    Dir(PathBuf),
    /// A tar or tar.gz file, unpacked (safely) into a cache directory.
    Tar(PathBuf),
    /// An OCI image layout directory; layers in order become overlay lowerdirs.
    OciLayout(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootEntry {
    #[default]
    PivotRoot,
    ChrootOnly,
}

/// Which namespaces the first process gets. Off means "shared with the host".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Namespaces {
    pub pid: bool,
    pub mount: bool,
    pub uts: bool,
    pub ipc: bool,
    pub net: bool,
    pub cgroup: bool,
    pub time: bool,
    pub user: bool,
}

impl Default for Namespaces {
    fn default() -> Self {
        Namespaces {
            pid: true,
            mount: true,
            uts: true,
            ipc: true,
            net: true,
            cgroup: true,
            time: false,
            user: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindMount {
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub destination: PathBuf,
    #[serde(default)]
    pub readonly: bool,
}

/// cgroup limits and the first process's resource limits. `None` leaves a
/// controller unlimited (or at the kernel's default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes (v2 memory.max, v1 memory.limit_in_bytes).
    pub memory_bytes: Option<u64>,
    /// Bytes of swap allowed beyond `memory_bytes`: 0 (the default) forbids
    /// swap (v2 memory.swap.max, v1 memory.memsw.limit_in_bytes = limit +
    /// this). Only applied with a memory limit.
    pub swap_bytes: u64,
    /// Above this the kernel throttles and reclaims instead of killing (v2
    /// memory.high; cgroup v1 has none).
    pub memory_high_bytes: Option<u64>,
    /// An OOM kill takes every task of the container, not one (v2
    /// memory.oom.group; cgroup v1 has none).
    pub oom_group: bool,
    pub pids: Option<u64>,
    pub cpu: Option<CpuQuota>,
    /// Relative CPU weight, 1..=10000, 100 being the kernel's default (v2
    /// cpu.weight; v1 cpu.shares = weight * 1024 / 100).
    pub cpu_weight: Option<u64>,
    pub cpuset: Option<CpuSet>,
    /// Write bandwidth caps per block device (v2 io.max wbps, v1
    /// blkio.throttle.write_bps_device).
    pub io_write_bps: Vec<DeviceRate>,
    /// RLIMIT_NOFILE (soft and hard) of the first process.
    pub nofile: Option<u64>,
    /// RLIMIT_NPROC (soft and hard) of the first process: tasks per real
    /// uid (not enforced for root outside a user namespace).
    pub nproc: Option<u64>,
    /// /proc/PID/oom_score_adj of the first process, -1000..=1000.
    pub oom_score_adj: Option<i32>,
}

/// A byte rate for one block device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRate {
    /// A block device node, e.g. /dev/loop3.
    pub device: PathBuf,
    pub bytes_per_sec: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuQuota {
    pub quota_us: u64,
    pub period_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSet {
    /// Kernel list syntax, e.g. "0" or "0-1,3".
    pub cpus: String,
    /// Memory nodes; `None` copies the parent's.
    #[serde(default)]
    pub mems: Option<String>,
}

/// The container's network. Only meaningful with `namespaces.net`; without
/// it the container shares the host's network namespace.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// Own namespace with `lo` only (brought up).
    #[default]
    None,
    /// A veth pair to a bridge in the host namespace.
    Bridge(BridgeAttachment),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeAttachment {
    /// Name of an existing bridge in the host namespace (`isoc-br*`).
    pub bridge: String,
    /// Container address with prefix, e.g. "10.89.0.2/24".
    pub address: String,
    /// Default route via this address (normally the bridge's).
    #[serde(default)]
    pub gateway: Option<String>,
    /// An IPv6 address with prefix beside the IPv4 one, e.g.
    /// "fd69:736f:6368:89::2/64" (on-link with the bridge's; added without
    /// duplicate address detection, so usable at once).
    #[serde(default)]
    pub address6: Option<String>,
    /// IPv6 default route via this address (normally the bridge's).
    #[serde(default)]
    pub gateway6: Option<String>,
    /// Port forwards from the host side: DNAT host_port -> container_port.
    #[serde(default)]
    pub publish: Vec<PortForward>,
    /// Leave the host end of the veth off the bridge (controls only).
    #[serde(default)]
    pub detached: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortForward {
    pub host_port: u16,
    pub container_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserMapping {
    pub uid_map: Vec<IdMap>,
    pub gid_map: Vec<IdMap>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdMap {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeOffsets {
    pub monotonic_secs: i64,
    pub boottime_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelFiles {
    /// /proc/sys mounted read-only (the default) or left writable.
    pub proc_sys_readonly: bool,
    /// /sys mounted read-only.
    pub sys_readonly: bool,
    /// Bind the host's cgroup filesystem read-write at /sys/fs/cgroup with the
    /// host's view (controls only; the default mounts none).
    pub host_cgroupfs_rw: bool,
    /// The spec's `masked_paths` masked: files bound over by /dev/null,
    /// directories by an empty read-only tmpfs.
    pub mask_proc_files: bool,
    /// The spec's `readonly_paths` bound onto themselves read-only.
    pub readonly_paths: bool,
}

impl Default for KernelFiles {
    fn default() -> Self {
        KernelFiles {
            proc_sys_readonly: true,
            sys_readonly: true,
            host_cgroupfs_rw: false,
            mask_proc_files: true,
            readonly_paths: true,
        }
    }
}

/// Protections of the root and the process that have no natural field
/// elsewhere in the spec. Each is on by default; switching one off exists so
/// a control can remove exactly that protection (`Protection::switch_off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Hardening {
    /// `/` made rslave before the first mount. Off: the mounts that build
    /// the root propagate to the host (rslave comes only before pivot_root,
    /// which refuses a shared parent).
    pub rslave_root: bool,
    /// The old root unmounted after pivot_root. Off: it stays at
    /// `/.isocheck-put-old`.
    pub detach_old_root: bool,
    /// Binds are recursive (MS_REC). Off: submounts of a source are not
    /// carried, so what they hide on the host shows through.
    pub recursive_binds: bool,
    /// Read-only binds are read-only in every submount. Off: the top mount
    /// only.
    pub recursive_readonly: bool,
    /// Every fd above 2 is closed on exec. Off: inherited fds stay open.
    pub close_host_fds: bool,
    /// Supplementary groups are cleared (setgroups with no entries) in PID 1
    /// and in exec'd processes. Off: they keep the starting process's.
    pub clear_groups: bool,
    /// `Container::kill` kills the whole cgroup. Off: PID 1 only.
    pub group_kill: bool,
    /// `Container::exec` joins PID 1's namespaces. Off: it only takes
    /// PID 1's root.
    pub exec_joins_namespaces: bool,
    /// Only the allowlisted devices (`cgroups::devices::ALLOWED`) can be
    /// opened: devices cgroup on v1, a device program on v2. Off: any.
    pub device_allowlist: bool,
    /// The writable mounts the runtime makes (/dev, /dev/shm, /tmp) are
    /// nodev, so a device node made there opens nothing. Off: they are not.
    pub nodev: bool,
    /// /dev, /dev/shm and /tmp are nosuid, so a set-user-ID binary put
    /// there gives no ids. Off: it does.
    pub nosuid: bool,
    /// /dev and /dev/shm are noexec, so nothing put there runs. Off: it
    /// does.
    pub noexec: bool,
    /// `Container::pause` freezes the whole cgroup (cgroup.freeze or
    /// freezer.state). Off: SIGSTOP to PID 1 only.
    pub group_freeze: bool,
    /// With a user namespace, the mounts are locked (`mount_lock`): root
    /// inside cannot remount a read-only mount read-write or unmount a mask.
    /// Off: it can, holding CAP_SYS_ADMIN over its own mount namespace.
    pub locked_mounts: bool,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening {
            rslave_root: true,
            detach_old_root: true,
            recursive_binds: true,
            recursive_readonly: true,
            close_host_fds: true,
            clear_groups: true,
            group_kill: true,
            exec_joins_namespaces: true,
            device_allowlist: true,
            nodev: true,
            nosuid: true,
            noexec: true,
            group_freeze: true,
            locked_mounts: true,
        }
    }
}

// ---------------------------------------------------------------------------
// Validation and the CLI's parsers
// ---------------------------------------------------------------------------

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::str::FromStr;

/// A refused spec or CLI value. The message always names the field (or flag)
/// and the value that was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A field of a [`ContainerSpec`] is wrong or inconsistent with another.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A CLI value could not be parsed.
    #[error("{what}: {value:?} {reason}")]
    Parse {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// The host's cpu list could not be read to check `limits.cpuset`.
    #[error("reading the host's online cpus from {path}: {message}")]
    HostCpus { path: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn parse_err(what: &'static str, value: &str, reason: impl Into<String>) -> SpecError {
    SpecError::Parse {
        what,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Where the kernel lists the cpus that are online.
pub const HOST_ONLINE_CPUS: &str = "/sys/devices/system/cpu/online";

/// The host's online cpus, from [`HOST_ONLINE_CPUS`].
pub fn host_online_cpus() -> Result<BTreeSet<u32>, SpecError> {
    let text = std::fs::read_to_string(HOST_ONLINE_CPUS).map_err(|e| SpecError::HostCpus {
        path: HOST_ONLINE_CPUS.into(),
        message: e.to_string(),
    })?;
    cpu_list(text.trim()).map_err(|reason| SpecError::HostCpus {
        path: HOST_ONLINE_CPUS.into(),
        message: reason,
    })
}

/// Parses kernel list syntax ("0-1,3") into the set of numbers it names.
pub fn cpu_list(text: &str) -> Result<BTreeSet<u32>, String> {
    let mut set = BTreeSet::new();
    if text.is_empty() {
        return Err("is empty".into());
    }
    for part in text.split(',') {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo, hi),
            None => (part, part),
        };
        let lo: u32 =
            parse_decimal(lo).ok_or_else(|| format!("has {part:?}, not a number or range"))?;
        let hi: u32 =
            parse_decimal(hi).ok_or_else(|| format!("has {part:?}, not a number or range"))?;
        if lo > hi {
            return Err(format!("has the backwards range {part:?}"));
        }
        if hi - lo > 4096 {
            return Err(format!("has the range {part:?}, wider than 4096 cpus"));
        }
        set.extend(lo..=hi);
    }
    Ok(set)
}

/// Strict decimal: digits only, no sign, no spaces.
fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
const HOSTNAME_MAX: usize = 64;
/// The kernel accepts at most this many lines in a uid_map or gid_map.
const ID_MAP_LINES_MAX: usize = 340;
/// cgroup v1 and v2 accept periods from 1 ms to 1 s, quotas from 1 ms.
const CPU_PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
const CPU_QUOTA_MIN: u64 = 1_000;
/// cgroup v2 cpu.weight's range (v1 cpu.shares is mapped from it).
const CPU_WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// What /proc/PID/oom_score_adj accepts.
const OOM_SCORE_ADJ_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
/// The period `parse_cpus` uses, as docker and runc do.
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

impl ContainerSpec {
    /// Checks the whole spec before anything is created, against this host's
    /// online cpus. The first problem found is returned.
    pub fn validate(&self) -> Result<(), SpecError> {
        let cpus = if self.limits.cpuset.is_some() {
            host_online_cpus()?
        } else {
            BTreeSet::new()
        };
        self.validate_with(&cpus)
    }

    /// [`validate`](Self::validate) with the host's cpu list given, so tests
    /// need no particular machine.
    pub fn validate_with(&self, host_cpus: &BTreeSet<u32>) -> Result<(), SpecError> {
        self.validate_rootfs()?;
        self.validate_command()?;
        self.validate_hostname()?;
        self.validate_mounts()?;
        self.validate_limits(host_cpus)?;
        self.validate_network()?;
        self.validate_capabilities()?;
        self.validate_user()?;
        self.validate_time()?;
        self.validate_seccomp()?;
        self.validate_kernel_paths()?;
        Ok(())
    }

    /// Masked and read-only paths are mounted over before pivot_root, so
    /// they must stay on the kernel's own filesystems (never a path of the
    /// image, which could be a symlink out of the root).
    fn validate_kernel_paths(&self) -> Result<(), SpecError> {
        for (field, paths) in [
            ("masked_paths", &self.masked_paths),
            ("readonly_paths", &self.readonly_paths),
        ] {
            for (i, p) in paths.iter().enumerate() {
                let under_kernel_fs = p.starts_with("/proc/") || p.starts_with("/sys/");
                let clean = p
                    .components()
                    .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
                if !under_kernel_fs || !clean || p.parent().is_none_or(|d| d == Path::new("/")) {
                    return Err(invalid(
                        format!("{field}[{i}]"),
                        format!(
                            "{} must be a path below /proc or /sys without ..",
                            p.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_seccomp(&self) -> Result<(), SpecError> {
        let Some(policy) = &self.seccomp else {
            return Ok(());
        };
        for (i, name) in policy.deny.iter().enumerate() {
            if crate::seccomp::syscall_number(name).is_none() {
                return Err(invalid(
                    format!("seccomp.deny[{i}]"),
                    format!("{name:?} is not a syscall this runtime can filter"),
                ));
            }
        }
        Ok(())
    }

    fn validate_rootfs(&self) -> Result<(), SpecError> {
        if !self.namespaces.mount {
            // Without a mount namespace the container runs in the caller's
            // root and the rootfs is not used (a control).
            return Ok(());
        }
        let (path, want_dir) = match &self.rootfs.source {
            RootfsSource::Dir(p) => (p, true),
            RootfsSource::Tar(p) => (p, false),
            RootfsSource::OciLayout(p) => (p, true),
        };
        if path.as_os_str().is_empty() {
            return Err(invalid("rootfs.source", "is empty"));
        }
        let meta = std::fs::metadata(path).map_err(|_| {
            invalid(
                "rootfs.source",
                format!("{} does not exist", path.display()),
            )
        })?;
        if want_dir && !meta.is_dir() {
            return Err(invalid(
                "rootfs.source",
                format!("{} is not a directory", path.display()),
            ));
        }
        if !want_dir && !meta.is_file() {
            return Err(invalid(
                "rootfs.source",
                format!("{} is not a file", path.display()),
            ));
        }
        if self.namespaces.user
            && self.hardening.locked_mounts
            && self.rootfs.entry == RootEntry::ChrootOnly
        {
            return Err(invalid(
                "hardening.locked_mounts",
                "needs rootfs.entry pivot-root with a user namespace (the kernel refuses a \
                 new user namespace to a chrooted process); switch off locked-mounts too",
            ));
        }
        if let RootfsSource::OciLayout(p) = &self.rootfs.source {
            if !p.join("index.json").is_file() {
                return Err(invalid(
                    "rootfs.source",
                    format!(
                        "{} has no index.json (not an OCI image layout)",
                        p.display()
                    ),
                ));
            }
            if !self.rootfs.overlay {
                return Err(invalid(
                    "rootfs.overlay",
                    "false needs a dir or tar source (OCI layers are stacked by overlayfs)",
                ));
            }
        }
        Ok(())
    }

    fn validate_command(&self) -> Result<(), SpecError> {
        let Some(first) = self.command.first() else {
            return Err(invalid("command", "is empty"));
        };
        if !first.starts_with('/') {
            return Err(invalid(
                "command[0]",
                format!("{first} must be an absolute path inside the rootfs"),
            ));
        }
        for (i, arg) in self.command.iter().enumerate() {
            if arg.contains('\0') {
                return Err(invalid(
                    format!("command[{i}]"),
                    format!("{arg:?} contains NUL"),
                ));
            }
        }
        for (i, var) in self.env.iter().enumerate() {
            if !var.contains('=') || var.starts_with('=') || var.contains('\0') {
                return Err(invalid(
                    format!("env[{i}]"),
                    format!("{var:?} is not NAME=VALUE"),
                ));
            }
        }
        if !self.cwd.is_absolute() {
            return Err(invalid(
                "cwd",
                format!("{} must be absolute", self.cwd.display()),
            ));
        }
        Ok(())
    }

    fn validate_hostname(&self) -> Result<(), SpecError> {
        let Some(name) = &self.hostname else {
            return Ok(());
        };
        if !self.namespaces.uts {
            return Err(invalid("hostname", format!("{name} needs namespaces.uts")));
        }
        if name.is_empty() || name.len() > HOSTNAME_MAX || name.contains('\0') {
            return Err(invalid(
                "hostname",
                format!("{name:?} must be 1 to {HOSTNAME_MAX} bytes without NUL"),
            ));
        }
        Ok(())
    }

    fn validate_mounts(&self) -> Result<(), SpecError> {
        for (i, m) in self.mounts.iter().enumerate() {
            if !self.namespaces.mount {
                return Err(invalid(format!("mounts[{i}]"), "needs namespaces.mount"));
            }
            let dst = &m.destination;
            if !dst.is_absolute() {
                return Err(invalid(
                    format!("mounts[{i}].destination"),
                    format!("{} must be absolute", dst.display()),
                ));
            }
            if dst.components().any(|c| c == Component::ParentDir) {
                return Err(invalid(
                    format!("mounts[{i}].destination"),
                    format!("{} must not contain ..", dst.display()),
                ));
            }
            if dst == Path::new("/") {
                return Err(invalid(
                    format!("mounts[{i}].destination"),
                    "/ cannot be a bind destination (it is the rootfs)",
                ));
            }
            if !m.source.exists() {
                return Err(invalid(
                    format!("mounts[{i}].source"),
                    format!("{} does not exist", m.source.display()),
                ));
            }
        }
        Ok(())
    }

    /// The limits alone (a CLI checks them before it builds a rootfs).
    pub fn validate_limits(&self, host_cpus: &BTreeSet<u32>) -> Result<(), SpecError> {
        let l = &self.limits;
        if l.memory_bytes == Some(0) {
            return Err(invalid("limits.memory_bytes", "0 is not a usable limit"));
        }
        if l.pids == Some(0) {
            return Err(invalid("limits.pids", "0 is not a usable limit"));
        }
        if let Some(cpu) = l.cpu {
            if !CPU_PERIOD_RANGE.contains(&cpu.period_us) {
                return Err(invalid(
                    "limits.cpu.period_us",
                    format!("{} is outside 1000..=1000000", cpu.period_us),
                ));
            }
            if cpu.quota_us < CPU_QUOTA_MIN {
                return Err(invalid(
                    "limits.cpu.quota_us",
                    format!("{} is below the kernel's minimum of 1000", cpu.quota_us),
                ));
            }
        }
        self.validate_memory_extras()?;
        self.validate_process_limits()?;
        if let Some(w) = l.cpu_weight {
            if !CPU_WEIGHT_RANGE.contains(&w) {
                return Err(invalid(
                    "limits.cpu_weight",
                    format!("{w} is outside 1..=10000"),
                ));
            }
        }
        for (i, rate) in l.io_write_bps.iter().enumerate() {
            let field = format!("limits.io_write_bps[{i}]");
            if rate.bytes_per_sec == 0 {
                return Err(invalid(
                    format!("{field}.bytes_per_sec"),
                    "0 is not a usable rate",
                ));
            }
            block_device_number(&rate.device)
                .map_err(|why| invalid(format!("{field}.device"), why))?;
        }
        if let Some(set) = &l.cpuset {
            let cpus = cpu_list(&set.cpus)
                .map_err(|r| invalid("limits.cpuset.cpus", format!("{:?} {r}", set.cpus)))?;
            if let Some(bad) = cpus.iter().find(|c| !host_cpus.contains(c)) {
                return Err(invalid(
                    "limits.cpuset.cpus",
                    format!("{bad} is not a cpu of this host"),
                ));
            }
            if let Some(mems) = &set.mems {
                cpu_list(mems)
                    .map_err(|r| invalid("limits.cpuset.mems", format!("{mems:?} {r}")))?;
            }
        }
        Ok(())
    }

    fn validate_memory_extras(&self) -> Result<(), SpecError> {
        let l = &self.limits;
        if l.swap_bytes > 0 && l.memory_bytes.is_none() {
            return Err(invalid(
                "limits.swap_bytes",
                format!(
                    "{} needs limits.memory_bytes (swap is limited beside memory)",
                    l.swap_bytes
                ),
            ));
        }
        if let Some(high) = l.memory_high_bytes {
            if high == 0 {
                return Err(invalid(
                    "limits.memory_high_bytes",
                    "0 is not a usable limit",
                ));
            }
            if let Some(max) = l.memory_bytes.filter(|max| high > *max) {
                return Err(invalid(
                    "limits.memory_high_bytes",
                    format!("{high} is above limits.memory_bytes {max}, so it would never apply"),
                ));
            }
        }
        Ok(())
    }

    fn validate_process_limits(&self) -> Result<(), SpecError> {
        let l = &self.limits;
        for (field, value) in [("limits.nofile", l.nofile), ("limits.nproc", l.nproc)] {
            if value == Some(0) {
                return Err(invalid(field, "0 is not a usable limit"));
            }
        }
        if let Some(adj) = l.oom_score_adj {
            if !OOM_SCORE_ADJ_RANGE.contains(&adj) {
                return Err(invalid(
                    "limits.oom_score_adj",
                    format!("{adj} is outside -1000..=1000"),
                ));
            }
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), SpecError> {
        let NetworkMode::Bridge(b) = &self.network else {
            return Ok(());
        };
        if !self.namespaces.net {
            return Err(invalid(
                "network",
                format!("bridge {} needs namespaces.net", b.bridge),
            ));
        }
        if b.bridge.is_empty() || b.bridge.len() > 15 {
            return Err(invalid(
                "network.bridge",
                format!("{:?} must be 1 to 15 bytes (IFNAMSIZ)", b.bridge),
            ));
        }
        b.address.parse::<ipnet::IpNet>().map_err(|_| {
            invalid(
                "network.address",
                format!(
                    "{} is not an address with prefix (e.g. 10.89.0.2/24)",
                    b.address
                ),
            )
        })?;
        if let Some(gw) = &b.gateway {
            gw.parse::<std::net::IpAddr>()
                .map_err(|_| invalid("network.gateway", format!("{gw} is not an address")))?;
        }
        for (i, p) in b.publish.iter().enumerate() {
            if p.host_port == 0 || p.container_port == 0 {
                return Err(invalid(
                    format!("network.publish[{i}]"),
                    format!("{}:{} has port 0", p.host_port, p.container_port),
                ));
            }
        }
        Ok(())
    }

    fn validate_capabilities(&self) -> Result<(), SpecError> {
        for (i, name) in self.capabilities.iter().enumerate() {
            if !name.starts_with("CAP_") || caps::Capability::from_str(name).is_err() {
                return Err(invalid(
                    format!("capabilities[{i}]"),
                    format!("{name} is not a capability"),
                ));
            }
        }
        Ok(())
    }

    fn validate_user(&self) -> Result<(), SpecError> {
        let Some(user) = &self.user else {
            return Ok(());
        };
        if !self.namespaces.user {
            return Err(invalid("user", "a uid/gid mapping needs namespaces.user"));
        }
        for (field, map) in [
            ("user.uid_map", &user.uid_map),
            ("user.gid_map", &user.gid_map),
        ] {
            if map.is_empty() {
                return Err(invalid(field, "is empty"));
            }
            if map.len() > ID_MAP_LINES_MAX {
                return Err(invalid(
                    field,
                    format!(
                        "{} lines, the kernel takes at most {ID_MAP_LINES_MAX}",
                        map.len()
                    ),
                ));
            }
            for (i, m) in map.iter().enumerate() {
                if m.count == 0 {
                    return Err(invalid(format!("{field}[{i}].count"), "0 maps nothing"));
                }
            }
        }
        Ok(())
    }

    fn validate_time(&self) -> Result<(), SpecError> {
        let t = self.time_offsets;
        if (t.monotonic_secs != 0 || t.boottime_secs != 0) && !self.namespaces.time {
            return Err(invalid(
                "time_offsets",
                format!(
                    "monotonic {} / boottime {} need namespaces.time",
                    t.monotonic_secs, t.boottime_secs
                ),
            ));
        }
        Ok(())
    }
}

/// `--memory`: bytes, or a number with K, M, G or T (powers of 1024, either
/// case). Zero is refused.
pub fn parse_memory(text: &str) -> Result<u64, SpecError> {
    const HINT: &str = "is not a size (use e.g. 1048576, 512K, 64M or 1G)";
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 30),
        Some(b't' | b'T') => (&text[..text.len() - 1], 40),
        _ => (text, 0),
    };
    let n: u64 = parse_decimal(digits).ok_or_else(|| parse_err("memory", text, HINT))?;
    let bytes = n
        .checked_mul(1u64 << shift)
        .ok_or_else(|| parse_err("memory", text, "overflows 64 bits"))?;
    if bytes == 0 {
        return Err(parse_err("memory", text, "is zero"));
    }
    Ok(bytes)
}

/// `--cpus`: a decimal number of cpus ("0.5", "2") as a quota over a
/// 100 ms period. At most 5 decimals; at least 0.01 cpu.
pub fn parse_cpus(text: &str) -> Result<CpuQuota, SpecError> {
    const HINT: &str = "is not a number of cpus (use e.g. 0.5 or 2)";
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(parse_err("cpus", text, HINT));
    }
    if frac.len() > 5 || (text.contains('.') && frac.is_empty()) {
        return Err(parse_err("cpus", text, HINT));
    }
    let int: u64 = if int.is_empty() {
        0
    } else {
        parse_decimal(int).ok_or_else(|| parse_err("cpus", text, HINT))?
    };
    let frac_us: u64 = if frac.is_empty() {
        0
    } else {
        let f: u64 = parse_decimal(frac).ok_or_else(|| parse_err("cpus", text, HINT))?;
        f * 10u64.pow(5 - frac.len() as u32)
    };
    let quota_us = int
        .checked_mul(DEFAULT_CPU_PERIOD_US)
        .and_then(|q| q.checked_add(frac_us))
        .ok_or_else(|| parse_err("cpus", text, "is too large"))?;
    if quota_us < CPU_QUOTA_MIN {
        return Err(parse_err("cpus", text, "is below 0.01 cpu"));
    }
    Ok(CpuQuota {
        quota_us,
        period_us: DEFAULT_CPU_PERIOD_US,
    })
}

/// `--cpuset`: kernel list syntax ("0", "0-1,3"). Whether the cpus exist is
/// checked by [`ContainerSpec::validate`].
pub fn parse_cpuset(text: &str) -> Result<CpuSet, SpecError> {
    cpu_list(text).map_err(|reason| parse_err("cpuset", text, reason))?;
    Ok(CpuSet {
        cpus: text.to_string(),
        mems: None,
    })
}

/// The (major, minor) of a block device node, or why `path` is not one.
pub fn block_device_number(path: &Path) -> Result<(u64, u64), String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.file_type().is_block_device() {
        return Err(format!("{} is not a block device", path.display()));
    }
    let rdev = meta.rdev();
    Ok((nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)))
}

/// `--device-write-bps`: `DEVICE:RATE`, the rate in bytes per second with
/// an optional K, M or G (e.g. /dev/loop3:4M). Whether DEVICE is a block
/// device is checked by [`ContainerSpec::validate`].
pub fn parse_device_rate(text: &str) -> Result<DeviceRate, SpecError> {
    let (device, rate) = text
        .rsplit_once(':')
        .ok_or_else(|| parse_err("device-write-bps", text, "is not DEVICE:RATE"))?;
    if device.is_empty() {
        return Err(parse_err("device-write-bps", text, "has an empty DEVICE"));
    }
    let bytes_per_sec = parse_memory(rate).map_err(|_| {
        parse_err(
            "device-write-bps",
            text,
            "has a RATE that is not a byte count (use e.g. 1048576, 512K or 4M)",
        )
    })?;
    Ok(DeviceRate {
        device: PathBuf::from(device),
        bytes_per_sec,
    })
}

/// `--ro-bind` / `--bind`: `SRC:DST` or `SRC:DST:ro` / `SRC:DST:rw`.
pub fn parse_bind(text: &str) -> Result<BindMount, SpecError> {
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, readonly) = match parts.as_slice() {
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        [_, _, opt] => {
            return Err(parse_err(
                "bind",
                text,
                format!("has option {opt:?}; only ro or rw"),
            ))
        }
        _ => return Err(parse_err("bind", text, "is not SRC:DST[:ro]")),
    };
    if src.is_empty() || dst.is_empty() {
        return Err(parse_err("bind", text, "has an empty SRC or DST"));
    }
    if !dst.starts_with('/') {
        return Err(parse_err("bind", text, "has a DST that is not absolute"));
    }
    Ok(BindMount {
        source: PathBuf::from(src),
        destination: PathBuf::from(dst),
        readonly,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rstest::rstest;

    fn valid() -> ContainerSpec {
        ContainerSpec {
            rootfs: Rootfs {
                source: RootfsSource::Dir(std::env::temp_dir()),
                ..Rootfs::default()
            },
            command: vec!["/bin/sh".into()],
            ..ContainerSpec::default()
        }
    }

    fn cpus() -> BTreeSet<u32> {
        [0, 1].into_iter().collect()
    }

    #[test]
    fn a_plain_spec_is_valid() {
        assert_eq!(valid().validate_with(&cpus()), Ok(()));
    }

    #[rstest]
    #[case::missing_rootfs(|s: &mut ContainerSpec| s.rootfs.source = RootfsSource::Dir("/nope".into()), "rootfs.source: /nope does not exist")]
    #[case::tar_is_a_dir(|s: &mut ContainerSpec| s.rootfs.source = RootfsSource::Tar(std::env::temp_dir()), "rootfs.source: /tmp is not a file")]
    #[case::locked_mounts_in_a_chroot(|s: &mut ContainerSpec| { s.namespaces.user = true; s.rootfs.entry = RootEntry::ChrootOnly; }, "hardening.locked_mounts: needs rootfs.entry pivot-root with a user namespace (the kernel refuses a new user namespace to a chrooted process); switch off locked-mounts too")]
    #[case::hostname_without_uts(|s: &mut ContainerSpec| { s.hostname = Some("h".into()); s.namespaces.uts = false; }, "hostname: h needs namespaces.uts")]
    #[case::hostname_too_long(|s: &mut ContainerSpec| s.hostname = Some("x".repeat(65)), "hostname: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" must be 1 to 64 bytes without NUL")]
    #[case::relative_destination(|s: &mut ContainerSpec| s.mounts = vec![bind("/tmp", "/a"), bind("/tmp", "/b"), bind("/tmp", "rel")], "mounts[2].destination: rel must be absolute")]
    #[case::dotdot_destination(|s: &mut ContainerSpec| s.mounts = vec![bind("/tmp", "/a/../../etc")], "mounts[0].destination: /a/../../etc must not contain ..")]
    #[case::missing_source(|s: &mut ContainerSpec| s.mounts = vec![bind("/nope/src", "/a")], "mounts[0].source: /nope/src does not exist")]
    #[case::unknown_cap(|s: &mut ContainerSpec| s.capabilities = vec!["CAP_FOO".into()], "capabilities[0]: CAP_FOO is not a capability")]
    #[case::cap_without_prefix(|s: &mut ContainerSpec| s.capabilities = vec!["CAP_CHOWN".into(), "chown".into()], "capabilities[1]: chown is not a capability")]
    #[case::bridge_without_netns(|s: &mut ContainerSpec| { s.network = bridge("10.89.0.2/24"); s.namespaces.net = false; }, "network: bridge isoc-br0 needs namespaces.net")]
    #[case::bad_address(|s: &mut ContainerSpec| s.network = bridge("10.89.0.2"), "network.address: 10.89.0.2 is not an address with prefix (e.g. 10.89.0.2/24)")]
    #[case::cpu_not_on_host(|s: &mut ContainerSpec| s.limits.cpuset = Some(CpuSet { cpus: "0,7".into(), mems: None }), "limits.cpuset.cpus: 7 is not a cpu of this host")]
    #[case::cpuset_syntax(|s: &mut ContainerSpec| s.limits.cpuset = Some(CpuSet { cpus: "1-0".into(), mems: None }), "limits.cpuset.cpus: \"1-0\" has the backwards range \"1-0\"")]
    #[case::zero_memory(|s: &mut ContainerSpec| s.limits.memory_bytes = Some(0), "limits.memory_bytes: 0 is not a usable limit")]
    #[case::zero_pids(|s: &mut ContainerSpec| s.limits.pids = Some(0), "limits.pids: 0 is not a usable limit")]
    #[case::tiny_quota(|s: &mut ContainerSpec| s.limits.cpu = Some(CpuQuota { quota_us: 10, period_us: 100_000 }), "limits.cpu.quota_us: 10 is below the kernel's minimum of 1000")]
    #[case::bad_period(|s: &mut ContainerSpec| s.limits.cpu = Some(CpuQuota { quota_us: 1000, period_us: 5 }), "limits.cpu.period_us: 5 is outside 1000..=1000000")]
    #[case::swap_without_memory(|s: &mut ContainerSpec| s.limits.swap_bytes = 4096, "limits.swap_bytes: 4096 needs limits.memory_bytes (swap is limited beside memory)")]
    #[case::zero_high(|s: &mut ContainerSpec| s.limits.memory_high_bytes = Some(0), "limits.memory_high_bytes: 0 is not a usable limit")]
    #[case::high_above_max(|s: &mut ContainerSpec| { s.limits.memory_bytes = Some(1 << 20); s.limits.memory_high_bytes = Some(2 << 20); }, "limits.memory_high_bytes: 2097152 is above limits.memory_bytes 1048576, so it would never apply")]
    #[case::zero_weight(|s: &mut ContainerSpec| s.limits.cpu_weight = Some(0), "limits.cpu_weight: 0 is outside 1..=10000")]
    #[case::huge_weight(|s: &mut ContainerSpec| s.limits.cpu_weight = Some(10_001), "limits.cpu_weight: 10001 is outside 1..=10000")]
    #[case::io_not_a_device(|s: &mut ContainerSpec| s.limits.io_write_bps = vec![DeviceRate { device: "/tmp".into(), bytes_per_sec: 1 }], "limits.io_write_bps[0].device: /tmp is not a block device")]
    #[case::io_zero_rate(|s: &mut ContainerSpec| s.limits.io_write_bps = vec![DeviceRate { device: "/tmp".into(), bytes_per_sec: 0 }], "limits.io_write_bps[0].bytes_per_sec: 0 is not a usable rate")]
    #[case::zero_nofile(|s: &mut ContainerSpec| s.limits.nofile = Some(0), "limits.nofile: 0 is not a usable limit")]
    #[case::zero_nproc(|s: &mut ContainerSpec| s.limits.nproc = Some(0), "limits.nproc: 0 is not a usable limit")]
    #[case::oom_adj_range(|s: &mut ContainerSpec| s.limits.oom_score_adj = Some(1001), "limits.oom_score_adj: 1001 is outside -1000..=1000")]
    #[case::empty_command(|s: &mut ContainerSpec| s.command.clear(), "command: is empty")]
    #[case::relative_command(|s: &mut ContainerSpec| s.command = vec!["sh".into()], "command[0]: sh must be an absolute path inside the rootfs")]
    #[case::bad_env(|s: &mut ContainerSpec| s.env = vec!["A=1".into(), "JUSTNAME".into()], "env[1]: \"JUSTNAME\" is not NAME=VALUE")]
    #[case::relative_cwd(|s: &mut ContainerSpec| s.cwd = "work".into(), "cwd: work must be absolute")]
    #[case::mapping_without_userns(|s: &mut ContainerSpec| s.user = Some(mapping(1)), "user: a uid/gid mapping needs namespaces.user")]
    #[case::empty_map_count(|s: &mut ContainerSpec| { s.namespaces.user = true; s.user = Some(mapping(0)); }, "user.uid_map[0].count: 0 maps nothing")]
    #[case::offsets_without_timens(|s: &mut ContainerSpec| s.time_offsets.boottime_secs = 5, "time_offsets: monotonic 0 / boottime 5 need namespaces.time")]
    #[case::unknown_syscall(|s: &mut ContainerSpec| s.seccomp = Some(crate::seccomp::SeccompPolicy { deny: vec!["bpf".into(), "teleport".into()] }), "seccomp.deny[1]: \"teleport\" is not a syscall this runtime can filter")]
    #[case::masked_outside_proc(|s: &mut ContainerSpec| s.masked_paths.push("/etc/passwd".into()), "masked_paths[13]: /etc/passwd must be a path below /proc or /sys without ..")]
    #[case::readonly_dotdot(|s: &mut ContainerSpec| s.readonly_paths = vec!["/proc/../etc".into()], "readonly_paths[0]: /proc/../etc must be a path below /proc or /sys without ..")]
    #[case::oci_without_index(|s: &mut ContainerSpec| { s.rootfs.source = RootfsSource::OciLayout(std::env::temp_dir()); }, "rootfs.source: /tmp has no index.json (not an OCI image layout)")]
    fn invalid_specs_name_field_and_value(
        #[case] change: fn(&mut ContainerSpec),
        #[case] message: &str,
    ) {
        let mut s = valid();
        change(&mut s);
        let err = s.validate_with(&cpus()).expect_err("must be refused");
        assert_eq!(err.to_string(), message);
    }

    fn bind(src: &str, dst: &str) -> BindMount {
        BindMount {
            source: src.into(),
            destination: dst.into(),
            readonly: false,
        }
    }

    fn bridge(address: &str) -> NetworkMode {
        NetworkMode::Bridge(BridgeAttachment {
            bridge: "isoc-br0".into(),
            address: address.into(),
            gateway: None,
            address6: None,
            gateway6: None,
            publish: vec![],
            detached: false,
        })
    }

    fn mapping(count: u32) -> UserMapping {
        let m = IdMap {
            inside: 0,
            outside: 100_000,
            count,
        };
        UserMapping {
            uid_map: vec![m],
            gid_map: vec![m],
        }
    }

    #[rstest]
    #[case("1048576", 1 << 20)]
    #[case("512K", 512 << 10)]
    #[case("512k", 512 << 10)]
    #[case("64M", 64 << 20)]
    #[case("1G", 1 << 30)]
    #[case("2T", 2 << 40)]
    fn memory_sizes(#[case] text: &str, #[case] bytes: u64) {
        assert_eq!(parse_memory(text), Ok(bytes));
    }

    #[rstest]
    #[case("", "memory: \"\" is not a size (use e.g. 1048576, 512K, 64M or 1G)")]
    #[case(
        "64X",
        "memory: \"64X\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
    )]
    #[case(
        "-1",
        "memory: \"-1\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
    )]
    #[case(
        "1.5G",
        "memory: \"1.5G\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
    )]
    #[case("0", "memory: \"0\" is zero")]
    #[case("99999999999T", "memory: \"99999999999T\" overflows 64 bits")]
    fn bad_memory_sizes(#[case] text: &str, #[case] message: &str) {
        assert_eq!(
            parse_memory(text).expect_err("refused").to_string(),
            message
        );
    }

    #[rstest]
    #[case("0.5", 50_000)]
    #[case("2", 200_000)]
    #[case(".25", 25_000)]
    #[case("1.00001", 100_001)]
    #[case("0.01", 1_000)]
    fn cpu_quotas(#[case] text: &str, #[case] quota_us: u64) {
        assert_eq!(
            parse_cpus(text),
            Ok(CpuQuota {
                quota_us,
                period_us: 100_000
            })
        );
    }

    #[rstest]
    #[case("", "cpus: \"\" is not a number of cpus (use e.g. 0.5 or 2)")]
    #[case("abc", "cpus: \"abc\" is not a number of cpus (use e.g. 0.5 or 2)")]
    #[case("1.", "cpus: \"1.\" is not a number of cpus (use e.g. 0.5 or 2)")]
    #[case("-1", "cpus: \"-1\" is not a number of cpus (use e.g. 0.5 or 2)")]
    #[case(
        "0.000001",
        "cpus: \"0.000001\" is not a number of cpus (use e.g. 0.5 or 2)"
    )]
    #[case("0.001", "cpus: \"0.001\" is below 0.01 cpu")]
    #[case("0", "cpus: \"0\" is below 0.01 cpu")]
    fn bad_cpu_quotas(#[case] text: &str, #[case] message: &str) {
        assert_eq!(parse_cpus(text).expect_err("refused").to_string(), message);
    }

    #[rstest]
    #[case("0", &[0])]
    #[case("0-1,3", &[0, 1, 3])]
    #[case("5,2-3", &[2, 3, 5])]
    fn cpusets(#[case] text: &str, #[case] cpus: &[u32]) {
        let set = parse_cpuset(text).expect("valid");
        assert_eq!(set.cpus, text);
        assert_eq!(cpu_list(&set.cpus), Ok(cpus.iter().copied().collect()));
    }

    #[rstest]
    #[case("", "cpuset: \"\" is empty")]
    #[case("a", "cpuset: \"a\" has \"a\", not a number or range")]
    #[case("3-1", "cpuset: \"3-1\" has the backwards range \"3-1\"")]
    #[case("0,,1", "cpuset: \"0,,1\" has \"\", not a number or range")]
    #[case(
        "0-99999",
        "cpuset: \"0-99999\" has the range \"0-99999\", wider than 4096 cpus"
    )]
    fn bad_cpusets(#[case] text: &str, #[case] message: &str) {
        assert_eq!(
            parse_cpuset(text).expect_err("refused").to_string(),
            message
        );
    }

    #[rstest]
    #[case("/a:/b", "/a", "/b", false)]
    #[case("/a:/b:ro", "/a", "/b", true)]
    #[case("rel:/b:rw", "rel", "/b", false)]
    fn binds(#[case] text: &str, #[case] src: &str, #[case] dst: &str, #[case] ro: bool) {
        let b = parse_bind(text).expect("valid");
        assert_eq!(
            (b.source.to_str(), b.destination.to_str(), b.readonly),
            (Some(src), Some(dst), ro)
        );
    }

    #[rstest]
    #[case("/a", "bind: \"/a\" is not SRC:DST[:ro]")]
    #[case("/a:/b:rx", "bind: \"/a:/b:rx\" has option \"rx\"; only ro or rw")]
    #[case(":/b", "bind: \":/b\" has an empty SRC or DST")]
    #[case("/a:b", "bind: \"/a:b\" has a DST that is not absolute")]
    #[case("/a:/b:ro:x", "bind: \"/a:/b:ro:x\" is not SRC:DST[:ro]")]
    fn bad_binds(#[case] text: &str, #[case] message: &str) {
        assert_eq!(parse_bind(text).expect_err("refused").to_string(), message);
    }

    #[test]
    fn device_rates() {
        assert_eq!(
            parse_device_rate("/dev/loop3:4M"),
            Ok(DeviceRate {
                device: "/dev/loop3".into(),
                bytes_per_sec: 4 << 20
            })
        );
        for (text, message) in [
            ("/dev/loop3", "device-write-bps: \"/dev/loop3\" is not DEVICE:RATE"),
            (":4M", "device-write-bps: \":4M\" has an empty DEVICE"),
            ("/dev/loop3:fast", "device-write-bps: \"/dev/loop3:fast\" has a RATE that is not a byte count (use e.g. 1048576, 512K or 4M)"),
        ] {
            assert_eq!(parse_device_rate(text).expect_err("refused").to_string(), message);
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,24}") {
            let _ = parse_memory(&s);
            let _ = parse_cpus(&s);
            let _ = parse_cpuset(&s);
            let _ = parse_bind(&s);
            let _ = parse_device_rate(&s);
        }

        #[test]
        fn memory_round_trips(n in 1u64..u64::MAX, unit in 0usize..4) {
            let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30)][unit];
            let n = n >> (shift + 1);
            prop_assume!(n > 0);
            prop_assert_eq!(parse_memory(&format!("{n}{suffix}")), Ok(n << shift));
        }

        #[test]
        fn cpus_round_trip(quota in 1_000u64..10_000_000) {
            let text = format!("{}.{:05}", quota / 100_000, quota % 100_000);
            prop_assert_eq!(parse_cpus(&text).map(|q| q.quota_us), Ok(quota));
        }

        #[test]
        fn cpuset_round_trips(cpus in proptest::collection::btree_set(0u32..256, 1..16)) {
            let text = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            let set = parse_cpuset(&text).expect("a list of numbers parses");
            prop_assert_eq!(cpu_list(&set.cpus), Ok(cpus));
        }

        #[test]
        fn bind_round_trips(src in "/[a-z]{1,8}", dst in "/[a-z]{1,8}", ro in any::<bool>()) {
            let text = format!("{src}:{dst}{}", if ro { ":ro" } else { "" });
            let b = parse_bind(&text).expect("well formed");
            prop_assert_eq!(b, BindMount { source: src.into(), destination: dst.into(), readonly: ro });
        }
    }
}

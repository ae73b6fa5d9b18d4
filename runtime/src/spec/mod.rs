//! What to build: a container described as plain data (serde), validated once,
//! up front, before any kernel object is created. Errors name the field and
//! the value that was refused.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

mod parse;
#[cfg(test)]
mod tests;
mod validate;
pub use parse::*;
pub use validate::*;

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

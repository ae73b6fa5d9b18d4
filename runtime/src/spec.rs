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
            command: Vec::new(),
            env: vec!["PATH=/bin:/sbin:/usr/bin:/usr/sbin".into()],
            cwd: PathBuf::from("/"),
        }
    }
}

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

/// cgroup limits. `None` leaves the controller unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Bytes; swap is always switched off when a memory limit is set.
    pub memory_bytes: Option<u64>,
    pub pids: Option<u64>,
    pub cpu: Option<CpuQuota>,
    pub cpuset: Option<CpuSet>,
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
    /// /proc/sysrq-trigger and /proc/kmsg masked (bound over by /dev/null).
    pub mask_proc_files: bool,
}

impl Default for KernelFiles {
    fn default() -> Self {
        KernelFiles {
            proc_sys_readonly: true,
            sys_readonly: true,
            host_cgroupfs_rw: false,
            mask_proc_files: true,
        }
    }
}

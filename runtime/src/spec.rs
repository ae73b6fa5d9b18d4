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

    fn validate_limits(&self, host_cpus: &BTreeSet<u32>) -> Result<(), SpecError> {
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

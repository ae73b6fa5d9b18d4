//! Validation: a spec is checked once, up front, before any kernel object is
//! created; every refusal names the field and the value.

use super::*;

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

pub(super) fn invalid(field: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

pub(super) fn parse_err(what: &'static str, value: &str, reason: impl Into<String>) -> SpecError {
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
pub(super) fn parse_decimal<T: FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The longest hostname the kernel accepts (`HOST_NAME_MAX`).
pub(super) const HOSTNAME_MAX: usize = 64;
/// The kernel accepts at most this many lines in a uid_map or gid_map.
pub(super) const ID_MAP_LINES_MAX: usize = 340;
/// cgroup v1 and v2 accept periods from 1 ms to 1 s, quotas from 1 ms.
pub(super) const CPU_PERIOD_RANGE: std::ops::RangeInclusive<u64> = 1_000..=1_000_000;
pub(super) const CPU_QUOTA_MIN: u64 = 1_000;
/// cgroup v2 cpu.weight's range (v1 cpu.shares is mapped from it).
pub(super) const CPU_WEIGHT_RANGE: std::ops::RangeInclusive<u64> = 1..=10_000;
/// What /proc/PID/oom_score_adj accepts.
pub(super) const OOM_SCORE_ADJ_RANGE: std::ops::RangeInclusive<i32> = -1000..=1000;
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

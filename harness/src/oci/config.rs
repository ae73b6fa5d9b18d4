//! config.json from a [`ContainerSpec`]: the container a scenario asks for,
//! said in the OCI runtime spec (built with the oci-spec crate), so runc,
//! crun or youki can start it.
//!
//! A control switches one [`Protection`] off in the spec; because every
//! field here is derived from the spec, that protection's part of
//! config.json changes and nothing else. [`oci_meaning`] is the one place
//! that says, for each protection, what it is in OCI terms, or why OCI
//! cannot express it (the scenario is then `unsupported` with that reason).

use isocheck_runtime::cgroups::devices::ALLOWED;
use isocheck_runtime::protection::Protection;
use isocheck_runtime::spec::{ContainerSpec, RootEntry};
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBlockIoBuilder, LinuxBuilder, LinuxCapabilitiesBuilder,
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMapping,
    LinuxIdMappingBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, LinuxSeccompAction, LinuxSeccompArgBuilder,
    LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscallBuilder, LinuxThrottleDeviceBuilder,
    LinuxTimeOffsetBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The spec asks for something OCI has no field for.
    #[error("not expressible in an OCI config: {0}")]
    Unsupported(String),
    /// A capability name oci-spec does not know.
    #[error("capability {name:?}: {message}")]
    Capability { name: String, message: String },
    /// A block device of `limits.io_write_bps` could not be stat'ed.
    #[error("stat {path} for its major:minor: {source}")]
    Device {
        path: PathBuf,
        source: std::io::Error,
    },
    /// oci-spec refused a value while building `what`.
    #[error("building {what}: {source}")]
    Build {
        what: &'static str,
        source: oci_spec::OciSpecError,
    },
}

fn built<T>(what: &'static str, r: Result<T, oci_spec::OciSpecError>) -> Result<T, ConfigError> {
    r.map_err(|source| ConfigError::Build { what, source })
}

/// What a protection is in config.json (`Ok`), or why OCI cannot say it
/// (`Err`): the runtime does it unconditionally, or the switch is a command
/// line flag, or it lives in our runtime's API rather than in a config.
pub fn oci_meaning(p: Protection) -> Result<&'static str, &'static str> {
    use Protection::*;
    match p {
        PidNamespace => Ok("linux.namespaces[type=pid]"),
        MountNamespace => Ok("linux.namespaces[type=mount]"),
        UtsNamespace => Ok("linux.namespaces[type=uts] and hostname"),
        IpcNamespace => Ok("linux.namespaces[type=ipc]"),
        NetNamespace => Ok("linux.namespaces[type=network] (path: the netns the harness made)"),
        CgroupNamespace => Ok("linux.namespaces[type=cgroup]"),
        UserNamespace => Ok("linux.namespaces[type=user] and linux.uidMappings/gidMappings"),
        TimeNamespace => Ok("linux.namespaces[type=time] and linux.timeOffsets"),
        PivotRoot => Err("an OCI config has no chroot-only entry (runc's --no-pivot is a command-line flag, not config)"),
        DetachOldRoot => Err("an OCI runtime always detaches the old root; config.json cannot keep it"),
        RslaveRoot => Err("rslave before the root is built is the runtime's own step; linux.rootfsPropagation only sets the final propagation"),
        Overlay => Ok("root.path: an overlay of ours over the image (off: the image copy itself)"),
        ReadonlyBinds => Ok("mounts[].options ro on the spec's read-only binds"),
        RecursiveReadonly => Ok("mounts[].options rro (off: ro)"),
        RecursiveBinds => Ok("mounts[].options rbind (off: bind)"),
        ProcSysReadonly => Ok("linux.readonlyPaths /proc/sys"),
        SysReadonly => Ok("mounts[/sys].options ro"),
        MaskedPaths => Ok("linux.maskedPaths"),
        ReadonlyPaths => Ok("linux.readonlyPaths (besides /proc/sys)"),
        HostCgroupfsHidden => Ok("no cgroup mount (off: the host's /sys/fs/cgroup rbind rw)"),
        CapabilityDrop => Ok("process.capabilities, all five sets"),
        NoNewPrivs => Ok("process.noNewPrivileges"),
        Seccomp => Ok("linux.seccomp: SCMP_ACT_ALLOW with the deny list as SCMP_ACT_ERRNO (EPERM)"),
        CloseHostFds => Err("an OCI runtime closes every fd above 2 unless told by --preserve-fds, a command-line flag"),
        MemoryLimit => Ok("linux.resources.memory.limit"),
        NoSwap => Ok("linux.resources.memory.swap = limit + allowed swap"),
        MemoryHigh => Ok("linux.resources.unified memory.high"),
        OomGroup => Ok("linux.resources.unified memory.oom.group"),
        PidsLimit => Ok("linux.resources.pids.limit"),
        CpuQuota => Ok("linux.resources.cpu.quota/period"),
        CpuWeight => Ok("linux.resources.cpu.shares = weight * 1024 / 100"),
        Cpuset => Ok("linux.resources.cpu.cpus/mems"),
        IoLimit => Ok("linux.resources.blockIO.throttleWriteBpsDevice"),
        NofileLimit => Ok("process.rlimits RLIMIT_NOFILE"),
        NprocLimit => Ok("process.rlimits RLIMIT_NPROC"),
        OomScoreAdj => Ok("process.oomScoreAdj"),
        GroupKill => Ok("the runtime's `kill --all ID KILL` (off: `kill ID KILL`, the init only; outside config.json)"),
        DeviceAllowlist => Ok("linux.resources.devices: deny all, then the allowlist (off: allow all)"),
        Nodev => Ok("mounts[/dev/shm,/tmp].options nodev"),
        Nosuid => Ok("mounts[/dev,/dev/shm,/tmp].options nosuid"),
        Noexec => Ok("mounts[/dev,/dev/shm].options noexec"),
        ClearGroups => Err("an OCI runtime always sets the groups to process.user.additionalGids; keeping the caller's has no OCI form"),
        GroupFreeze => Err("pause is the runtime's command (runc pause freezes the cgroup); its SIGSTOP-only control has no OCI form"),
        ExecJoinsNamespaces => Err("exec is the runtime's command; an exec that joins nothing has no OCI form"),
        LockedMounts => Err("whether the mounts end up locked is how the runtime builds its user namespace; config.json has no field for it"),
        BridgeAttachment => Ok("the harness's veth into the netns at linux.namespaces[type=network].path (off: its host end left off the bridge; outside config.json)"),
        Masquerade => Ok("the harness's masquerade in the stand-in (off: none; outside config.json)"),
        PortForward => Ok("the harness's DNAT to the container's address (off: nothing published; outside config.json)"),
    }
}

/// What the caller prepared outside config.json.
#[derive(Debug, Clone)]
pub struct BundleInputs {
    /// The root filesystem (our overlay, or the image itself).
    pub rootfs: PathBuf,
    /// The network namespace the harness made for the container, if any.
    pub netns: Option<PathBuf>,
    /// `linux.cgroupsPath`, under the `isocheck` parent.
    pub cgroups_path: String,
}

/// The read-only paths besides the spec's own, as our runtime applies them.
const PROC_SYS: &str = "/proc/sys";

/// Builds config.json's contents for `spec`.
pub fn build_config(spec: &ContainerSpec, inputs: &BundleInputs) -> Result<Spec, ConfigError> {
    let h = &spec.hardening;
    for (off, p) in [
        (
            spec.rootfs.entry == RootEntry::ChrootOnly,
            Protection::PivotRoot,
        ),
        (!h.detach_old_root, Protection::DetachOldRoot),
        (!h.rslave_root, Protection::RslaveRoot),
        (!h.close_host_fds, Protection::CloseHostFds),
        (!h.clear_groups, Protection::ClearGroups),
        (!h.locked_mounts, Protection::LockedMounts),
    ] {
        if off {
            let why = oci_meaning(p).err().unwrap_or("no OCI form");
            return Err(ConfigError::Unsupported(format!("{p} off: {why}")));
        }
    }

    let root = built(
        "root",
        RootBuilder::default()
            .path(inputs.rootfs.clone())
            .readonly(false)
            .build(),
    )?;
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(spec, inputs)?)
        .resources(resources(spec)?)
        .cgroups_path(PathBuf::from(&inputs.cgroups_path))
        .masked_paths(masked_paths(spec))
        .readonly_paths(readonly_paths(spec));
    if let Some(user) = &spec.user {
        linux = linux
            .uid_mappings(id_maps(&user.uid_map)?)
            .gid_mappings(id_maps(&user.gid_map)?);
    }
    if spec.namespaces.time {
        let t = &spec.time_offsets;
        let mut offsets = HashMap::new();
        for (clock, secs) in [
            ("monotonic", t.monotonic_secs),
            ("boottime", t.boottime_secs),
        ] {
            let offset = built(
                "linux.timeOffsets",
                LinuxTimeOffsetBuilder::default()
                    .secs(secs)
                    .nanosecs(0u32)
                    .build(),
            )?;
            offsets.insert(clock.to_string(), offset);
        }
        linux = linux.time_offsets(offsets);
    }
    if let Some(policy) = &spec.seccomp {
        let deny = built(
            "linux.seccomp.syscalls",
            LinuxSyscallBuilder::default()
                .names(policy.deny.clone())
                .action(LinuxSeccompAction::ScmpActErrno)
                .errno_ret(isocheck_runtime::seccomp::DENY_ERRNO as u32)
                .build(),
        )?;
        // As our filter (runtime/src/seccomp.rs): clone3 gets ENOSYS (its
        // flags are out of seccomp's reach, so libc falls back to clone),
        // and without a user namespace in the spec, clone and unshare with
        // CLONE_NEWUSER get the deny errno (libseccomp's MASKED_EQ: value is
        // the mask, valueTwo the datum).
        let mut syscalls = vec![
            deny,
            built(
                "linux.seccomp.syscalls[clone3]",
                LinuxSyscallBuilder::default()
                    .names(vec!["clone3".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(libc::ENOSYS as u32)
                    .build(),
            )?,
        ];
        if !spec.namespaces.user {
            let newuser = libc::CLONE_NEWUSER as u64;
            let flag = built(
                "linux.seccomp.syscalls[].args",
                LinuxSeccompArgBuilder::default()
                    .index(0usize)
                    .value(newuser)
                    .value_two(newuser)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build(),
            )?;
            syscalls.push(built(
                "linux.seccomp.syscalls[clone,unshare]",
                LinuxSyscallBuilder::default()
                    .names(vec!["clone".to_string(), "unshare".to_string()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(isocheck_runtime::seccomp::DENY_ERRNO as u32)
                    .args(vec![flag])
                    .build(),
            )?);
        }
        let seccomp = built(
            "linux.seccomp",
            LinuxSeccompBuilder::default()
                .default_action(LinuxSeccompAction::ScmpActAllow)
                .syscalls(syscalls)
                .build(),
        )?;
        linux = linux.seccomp(seccomp);
    }
    let linux = built("linux", linux.build())?;

    let mut builder = SpecBuilder::default()
        .version("1.0.2")
        .root(root)
        .mounts(mounts(spec)?)
        .process(process(spec)?)
        .linux(linux);
    if let Some(name) = &spec.hostname {
        builder = builder.hostname(name.clone());
    }
    let mut config = built("config.json", builder.build())?;
    // The builder fills unset fields from oci-spec's defaults, whose
    // hostname is "youki": only the spec's own may be there.
    if spec.hostname.is_none() {
        config.set_hostname(None);
    }
    Ok(config)
}

fn namespaces(
    spec: &ContainerSpec,
    inputs: &BundleInputs,
) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, ConfigError> {
    let ns = &spec.namespaces;
    let wanted = [
        (ns.pid, LinuxNamespaceType::Pid),
        (ns.mount, LinuxNamespaceType::Mount),
        (ns.uts, LinuxNamespaceType::Uts),
        (ns.ipc, LinuxNamespaceType::Ipc),
        (ns.net, LinuxNamespaceType::Network),
        (ns.cgroup, LinuxNamespaceType::Cgroup),
        (ns.time, LinuxNamespaceType::Time),
        (ns.user, LinuxNamespaceType::User),
    ];
    let mut out = Vec::new();
    for (on, typ) in wanted {
        if !on {
            continue;
        }
        let mut b = LinuxNamespaceBuilder::default().typ(typ);
        if typ == LinuxNamespaceType::Network {
            if let Some(path) = &inputs.netns {
                b = b.path(path.clone());
            }
        }
        out.push(built("linux.namespaces", b.build())?);
    }
    Ok(out)
}

fn id_maps(maps: &[isocheck_runtime::spec::IdMap]) -> Result<Vec<LinuxIdMapping>, ConfigError> {
    maps.iter()
        .map(|m| {
            built(
                "linux.uidMappings/gidMappings",
                LinuxIdMappingBuilder::default()
                    .container_id(m.inside)
                    .host_id(m.outside)
                    .size(m.count)
                    .build(),
            )
        })
        .collect()
}

fn masked_paths(spec: &ContainerSpec) -> Vec<String> {
    if !spec.kernel_files.mask_proc_files {
        return Vec::new();
    }
    spec.masked_paths
        .iter()
        .map(|p| p.display().to_string())
        .collect()
}

fn readonly_paths(spec: &ContainerSpec) -> Vec<String> {
    let k = &spec.kernel_files;
    let mut out = Vec::new();
    if k.readonly_paths {
        out.extend(spec.readonly_paths.iter().map(|p| p.display().to_string()));
    }
    if k.proc_sys_readonly {
        out.push(PROC_SYS.to_string());
    }
    out
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, ConfigError> {
    built(
        "mounts",
        MountBuilder::default()
            .destination(PathBuf::from(dest))
            .typ(typ)
            .source(PathBuf::from(source))
            .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
            .build(),
    )
}

/// /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue, /sys, /tmp as runc's own
/// spec template has them (plus /tmp), then the spec's binds in order.
fn mounts(spec: &ContainerSpec) -> Result<Vec<Mount>, ConfigError> {
    let k = &spec.kernel_files;
    let h = &spec.hardening;
    // The flags of the writable mounts, each as its protection says.
    let with = |base: &[&'static str], flags: &[(bool, &'static str)]| {
        let mut o = base.to_vec();
        o.extend(flags.iter().filter(|(on, _)| *on).map(|(_, f)| *f));
        o
    };
    let (nosuid, noexec, nodev) = (
        (h.nosuid, "nosuid"),
        (h.noexec, "noexec"),
        (h.nodev, "nodev"),
    );
    let sys_mode = if k.sys_readonly { "ro" } else { "rw" };
    let mut out = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &with(
                &["strictatime", "mode=755", "size=65536k"],
                &[nosuid, noexec],
            ),
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &with(&["mode=1777", "size=65536k"], &[nosuid, noexec, nodev]),
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        )?,
        mount(
            "/tmp",
            "tmpfs",
            "tmpfs",
            &with(&["mode=1777", "size=65536k"], &[nosuid, nodev]),
        )?,
    ];
    if k.host_cgroupfs_rw {
        out.push(mount(
            "/sys/fs/cgroup",
            "bind",
            "/sys/fs/cgroup",
            &["rbind", "rw"],
        )?);
    }
    let h = &spec.hardening;
    for m in &spec.mounts {
        let mut options = vec![if h.recursive_binds { "rbind" } else { "bind" }];
        if m.readonly {
            options.push(if h.recursive_readonly { "rro" } else { "ro" });
        }
        out.push(mount(
            &m.destination.display().to_string(),
            "bind",
            &m.source.display().to_string(),
            &options,
        )?);
    }
    Ok(out)
}

fn capabilities(spec: &ContainerSpec) -> Result<Capabilities, ConfigError> {
    spec.capabilities
        .iter()
        .map(|name| {
            serde_json::from_value::<Capability>(serde_json::Value::String(name.clone())).map_err(
                |e| ConfigError::Capability {
                    name: name.clone(),
                    message: e.to_string(),
                },
            )
        })
        .collect()
}

fn process(spec: &ContainerSpec) -> Result<oci_spec::runtime::Process, ConfigError> {
    let caps = capabilities(spec)?;
    let caps = built(
        "process.capabilities",
        LinuxCapabilitiesBuilder::default()
            .bounding(caps.clone())
            .effective(caps.clone())
            .inheritable(caps.clone())
            .permitted(caps.clone())
            .ambient(caps)
            .build(),
    )?;
    let mut rlimits = Vec::new();
    for (limit, typ) in [
        (spec.limits.nofile, PosixRlimitType::RlimitNofile),
        (spec.limits.nproc, PosixRlimitType::RlimitNproc),
    ] {
        if let Some(v) = limit {
            rlimits.push(built(
                "process.rlimits",
                PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(v)
                    .hard(v)
                    .build(),
            )?);
        }
    }
    let user = built(
        "process.user",
        UserBuilder::default().uid(0u32).gid(0u32).build(),
    )?;
    let mut b = ProcessBuilder::default()
        .terminal(false)
        .user(user)
        .args(spec.command.clone())
        .env(spec.env.clone())
        .cwd(spec.cwd.clone())
        .capabilities(caps)
        .no_new_privileges(spec.no_new_privs)
        .rlimits(rlimits);
    if let Some(adj) = spec.limits.oom_score_adj {
        b = b.oom_score_adj(adj);
    }
    built("process", b.build())
}

/// `major:minor` of a block device node.
fn dev_numbers(path: &Path) -> Result<(i64, i64), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Device {
        path: path.to_path_buf(),
        source,
    })?;
    let rdev = meta.rdev();
    Ok((
        i64::from(nix::sys::stat::major(rdev) as u32),
        i64::from(nix::sys::stat::minor(rdev) as u32),
    ))
}

fn resources(spec: &ContainerSpec) -> Result<oci_spec::runtime::LinuxResources, ConfigError> {
    let l = &spec.limits;
    let mut r = LinuxResourcesBuilder::default();

    let devices = if spec.hardening.device_allowlist {
        let mut rules = vec![built(
            "linux.resources.devices",
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build(),
        )?];
        for d in ALLOWED {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(i64::from(d.major))
                .access("rwm");
            if let Some(minor) = d.minor {
                b = b.minor(i64::from(minor));
            }
            rules.push(built("linux.resources.devices", b.build())?);
        }
        rules
    } else {
        vec![built(
            "linux.resources.devices",
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .access("rwm")
                .build(),
        )?]
    };
    r = r.devices(devices);

    if let Some(limit) = l.memory_bytes {
        let memory = LinuxMemoryBuilder::default()
            .limit(limit as i64)
            .swap(limit.saturating_add(l.swap_bytes) as i64);
        r = r.memory(built("linux.resources.memory", memory.build())?);
    }
    let mut unified = HashMap::new();
    if let Some(high) = l.memory_high_bytes {
        unified.insert("memory.high".to_string(), high.to_string());
    }
    if l.oom_group {
        unified.insert("memory.oom.group".to_string(), "1".to_string());
    }
    if !unified.is_empty() {
        r = r.unified(unified);
    }
    if let Some(pids) = l.pids {
        r = r.pids(built(
            "linux.resources.pids",
            LinuxPidsBuilder::default().limit(pids as i64).build(),
        )?);
    }
    if l.cpu.is_some() || l.cpu_weight.is_some() || l.cpuset.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(q) = l.cpu {
            cpu = cpu.quota(q.quota_us as i64).period(q.period_us);
        }
        if let Some(w) = l.cpu_weight {
            cpu = cpu.shares(w * 1024 / 100);
        }
        if let Some(set) = &l.cpuset {
            cpu = cpu.cpus(set.cpus.clone());
            if let Some(mems) = &set.mems {
                cpu = cpu.mems(mems.clone());
            }
        }
        r = r.cpu(built("linux.resources.cpu", cpu.build())?);
    }
    if !l.io_write_bps.is_empty() {
        let mut throttles = Vec::new();
        for rate in &l.io_write_bps {
            let (major, minor) = dev_numbers(&rate.device)?;
            throttles.push(built(
                "linux.resources.blockIO",
                LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(rate.bytes_per_sec)
                    .build(),
            )?);
        }
        r = r.block_io(built(
            "linux.resources.blockIO",
            LinuxBlockIoBuilder::default()
                .throttle_write_bps_device(throttles)
                .build(),
        )?);
    }
    built("linux.resources", r.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use isocheck_runtime::spec::{BindMount, CpuQuota};
    use serde_json::Value;

    fn inputs() -> BundleInputs {
        BundleInputs {
            rootfs: "/run/bundle/rootfs".into(),
            netns: Some("/run/netns/isoc-1".into()),
            cgroups_path: "/isocheck/run-1".into(),
        }
    }

    /// A spec with every protection's field set, as a scenario run has it.
    fn full() -> ContainerSpec {
        let mut s = ContainerSpec {
            command: vec!["/probe".into(), "pids".into()],
            hostname: Some("isocheck".into()),
            capabilities: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            ..Default::default()
        };
        s.limits.memory_bytes = Some(32 << 20);
        s.limits.pids = Some(32);
        s.limits.cpu = Some(CpuQuota {
            quota_us: 20_000,
            period_us: 100_000,
        });
        s.limits.cpu_weight = Some(300);
        s.limits.nofile = Some(64);
        s.limits.oom_score_adj = Some(500);
        s.namespaces.time = true;
        s.time_offsets.monotonic_secs = 3600;
        s.mounts.push(BindMount {
            source: "/src".into(),
            destination: "/data".into(),
            readonly: true,
        });
        s
    }

    fn json(spec: &ContainerSpec) -> Value {
        serde_json::to_value(build_config(spec, &inputs()).expect("config")).expect("json")
    }

    /// Paths of `a` and `b` (leaves) whose values differ.
    fn diff(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                    let (va, vb) = (
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    );
                    diff(va, vb, &format!("{at}.{k}"), out);
                }
            }
            // Capability sets are HashSets: their order means nothing.
            (Value::Array(x), Value::Array(y)) => {
                let (mut x, mut y) = (x.clone(), y.clone());
                x.sort_by_key(|v| v.to_string());
                y.sort_by_key(|v| v.to_string());
                if x != y {
                    out.push(at.to_string());
                }
            }
            _ if a != b => out.push(at.to_string()),
            _ => {}
        }
    }

    #[test]
    fn the_run_carries_every_protection() {
        let c = json(&full());
        let ns: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            ns,
            ["pid", "mount", "uts", "ipc", "network", "cgroup", "time"]
        );
        assert_eq!(c["linux"]["namespaces"][4]["path"], "/run/netns/isoc-1");
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 32);
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 32 << 20);
        assert_eq!(c["linux"]["resources"]["memory"]["swap"], 32 << 20);
        assert_eq!(c["linux"]["resources"]["cpu"]["quota"], 20_000);
        assert_eq!(c["linux"]["resources"]["cpu"]["shares"], 3072);
        assert_eq!(c["linux"]["cgroupsPath"], "/isocheck/run-1");
        assert_eq!(c["linux"]["timeOffsets"]["monotonic"]["secs"], 3600);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["process"]["oomScoreAdj"], 500);
        for set in [
            "bounding",
            "effective",
            "inheritable",
            "permitted",
            "ambient",
        ] {
            let mut caps: Vec<&str> = c["process"]["capabilities"][set]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            caps.sort();
            assert_eq!(caps, ["CAP_CHOWN", "CAP_KILL"], "{set}");
        }
        let masked = c["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.contains(&Value::from("/proc/kcore")));
        let ro = c["linux"]["readonlyPaths"].as_array().unwrap();
        assert!(ro.contains(&Value::from("/proc/sys")));
        let bind = c["mounts"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(bind["destination"], "/data");
        assert_eq!(bind["options"], serde_json::json!(["rbind", "rro"]));
        let deny = &c["linux"]["seccomp"]["syscalls"][0];
        assert_eq!(deny["action"], "SCMP_ACT_ERRNO");
        assert!(deny["names"]
            .as_array()
            .unwrap()
            .contains(&Value::from("open_by_handle_at")));
        assert_eq!(c["linux"]["resources"]["devices"][0]["allow"], false);
    }

    /// Each expressible protection switched off changes config.json where
    /// `oci_meaning` says and nowhere else; the others are refused.
    #[test]
    fn a_control_changes_only_its_protections_part() {
        let run = json(&full());
        for p in Protection::all() {
            let mut spec = full();
            p.switch_off(&mut spec);
            match (oci_meaning(p), build_config(&spec, &inputs())) {
                (Ok(_), Ok(cfg)) => {
                    let control = serde_json::to_value(cfg).unwrap();
                    let mut changed = Vec::new();
                    diff(&run, &control, "", &mut changed);
                    let expected: &[&str] = match p {
                        Protection::PidNamespace
                        | Protection::MountNamespace
                        | Protection::IpcNamespace
                        | Protection::NetNamespace
                        | Protection::CgroupNamespace => &[".linux.namespaces"],
                        Protection::TimeNamespace => &[".linux.namespaces", ".linux.timeOffsets"],
                        Protection::UtsNamespace => &[".linux.namespaces", ".hostname"],
                        Protection::ReadonlyBinds
                        | Protection::RecursiveReadonly
                        | Protection::RecursiveBinds
                        | Protection::SysReadonly
                        | Protection::Nodev
                        | Protection::Nosuid
                        | Protection::Noexec
                        | Protection::HostCgroupfsHidden => &[".mounts"],
                        Protection::ProcSysReadonly | Protection::ReadonlyPaths => {
                            &[".linux.readonlyPaths"]
                        }
                        Protection::MaskedPaths => &[".linux.maskedPaths"],
                        Protection::CapabilityDrop => &[
                            ".process.capabilities.bounding",
                            ".process.capabilities.effective",
                            ".process.capabilities.inheritable",
                            ".process.capabilities.permitted",
                            ".process.capabilities.ambient",
                        ],
                        Protection::NoNewPrivs => &[".process.noNewPrivileges"],
                        Protection::Seccomp => &[".linux.seccomp"],
                        Protection::MemoryLimit => &[
                            ".linux.resources.memory.limit",
                            ".linux.resources.memory.swap",
                        ],
                        Protection::NoSwap => &[".linux.resources.memory.swap"],
                        Protection::PidsLimit => &[".linux.resources.pids.limit"],
                        Protection::CpuQuota => {
                            &[".linux.resources.cpu.quota", ".linux.resources.cpu.period"]
                        }
                        Protection::CpuWeight => &[".linux.resources.cpu.shares"],
                        Protection::NofileLimit => &[".process.rlimits"],
                        Protection::OomScoreAdj => &[".process.oomScoreAdj"],
                        Protection::DeviceAllowlist => &[".linux.resources.devices"],
                        // Not set in `full()`, or outside config.json.
                        _ => &[],
                    };
                    changed.sort();
                    let mut expected: Vec<String> =
                        expected.iter().map(|s| s.to_string()).collect();
                    expected.sort();
                    assert_eq!(changed, expected, "{p}");
                }
                (Err(_), Err(ConfigError::Unsupported(_))) => {}
                (Err(_), Ok(_))
                    if matches!(p, Protection::GroupFreeze | Protection::ExecJoinsNamespaces) => {}
                (meaning, built) => panic!("{p}: {meaning:?} but {built:?}"),
            }
        }
    }

    /// The harness's netns is the network entry's path and nothing else:
    /// without one the runtime makes its own, and only that path differs.
    #[test]
    fn the_netns_path_is_the_only_trace_of_the_harness_network() {
        let with = json(&full());
        let mut none = inputs();
        none.netns = None;
        let without =
            serde_json::to_value(build_config(&full(), &none).expect("config")).expect("json");
        let mut changed = Vec::new();
        diff(&with, &without, "", &mut changed);
        assert_eq!(changed, [".linux.namespaces"]);
        let net = |c: &Value| {
            c["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["type"] == "network")
                .cloned()
                .unwrap()
        };
        assert_eq!(
            net(&with),
            serde_json::json!({"type": "network", "path": "/run/netns/isoc-1"})
        );
        assert_eq!(net(&without), serde_json::json!({"type": "network"}));
    }

    /// The network protections live outside config.json (the veth, the
    /// masquerade, the DNAT): their controls leave it as the run's, while
    /// switching off the net namespace drops the entry with its path.
    #[test]
    fn the_network_controls_leave_config_json_alone() {
        use isocheck_runtime::spec::{BridgeAttachment, NetworkMode, PortForward};
        let bridged = || {
            let mut s = full();
            s.network = NetworkMode::Bridge(BridgeAttachment {
                bridge: "isoc-br1".into(),
                address: "10.89.0.2/24".into(),
                gateway: Some("10.89.0.1".into()),
                address6: None,
                gateway6: None,
                publish: vec![PortForward {
                    host_port: 8080,
                    container_port: 8000,
                }],
                detached: false,
            });
            s
        };
        let run = json(&bridged());
        for p in [
            Protection::BridgeAttachment,
            Protection::Masquerade,
            Protection::PortForward,
        ] {
            let mut spec = bridged();
            p.switch_off(&mut spec);
            // Masquerade is the testbed's NAT, not in the spec at all.
            if p != Protection::Masquerade {
                assert_ne!(spec, bridged(), "{p} changes the spec");
            }
            let mut changed = Vec::new();
            diff(&run, &json(&spec), "", &mut changed);
            assert!(changed.is_empty(), "{p}: {changed:?}");
        }
        let mut spec = bridged();
        Protection::NetNamespace.switch_off(&mut spec);
        let c = json(&spec);
        let types: Vec<&str> = c["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(!types.contains(&"network"), "{types:?}");
    }

    #[test]
    fn every_capability_name_of_ours_is_known_to_oci_spec() {
        let mut spec = full();
        spec.capabilities = isocheck_runtime::caps::all_names();
        if spec.capabilities.is_empty() {
            // No bounding set readable here: name a few by hand.
            spec.capabilities = vec!["CAP_SYS_ADMIN".into(), "CAP_MKNOD".into()];
        }
        build_config(&spec, &inputs()).expect("every capability parses");
    }
}

//! The closed list of every protection the runtime applies, and how a
//! [`ContainerSpec`] switches each one off alone.
//!
//! A proof of isolation needs a control: the same container with exactly one
//! protection removed, which must then show the violation. This module is
//! where "exactly one" is defined: [`Protection::switch_off`] weakens one
//! protection of a spec, and [`Protection::state`] projects the part of a
//! spec that protection owns, so [`changed_protections`] can tell which
//! protections two specs differ in (the harness refuses a control that
//! changes more than one).

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use strum::{EnumIter, EnumString, IntoEnumIterator, IntoStaticStr};

use crate::spec::{ContainerSpec, NetworkMode, RootEntry};

/// Every protection the runtime applies. Names are kebab-case in scenario
/// files, reports and the CLI (`pid-namespace`, `detach-old-root`...).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Protection {
    PidNamespace,
    MountNamespace,
    UtsNamespace,
    IpcNamespace,
    NetNamespace,
    CgroupNamespace,
    UserNamespace,
    TimeNamespace,
    /// pivot_root into the new root (chroot alone is escapable).
    PivotRoot,
    /// The old root unmounted (MNT_DETACH) after pivot_root.
    DetachOldRoot,
    /// `/` made rslave before the first mount, so nothing propagates out.
    RslaveRoot,
    /// The image under an overlay with a throw-away upper layer.
    Overlay,
    /// Binds the spec marks read-only are read-only.
    ReadonlyBinds,
    /// ... and so is every mount below them.
    RecursiveReadonly,
    /// Binds carry their submounts (MS_REC), so what the host hides under a
    /// submount stays hidden.
    RecursiveBinds,
    ProcSysReadonly,
    SysReadonly,
    /// Kernel files and directories that act on or leak the host (the
    /// spec's `masked_paths`): files bound over by /dev/null, directories by
    /// an empty read-only tmpfs.
    MaskedPaths,
    /// /proc/bus, /proc/fs, /proc/irq, /proc/sysrq-trigger (the spec's
    /// `readonly_paths`) read-only; /proc/sys is `ProcSysReadonly`.
    ReadonlyPaths,
    /// No cgroup filesystem of the host's inside.
    HostCgroupfsHidden,
    /// Only the kept capabilities, in all five sets.
    CapabilityDrop,
    NoNewPrivs,
    /// The seccomp filter (default deny list, or the spec's), installed
    /// right before execve.
    Seccomp,
    /// No fd above 2 of the runtime's survives exec.
    CloseHostFds,
    /// The container's processes drop the supplementary groups of the
    /// process that started them (setgroups with an empty list).
    ClearGroups,
    MemoryLimit,
    /// No swap beyond the memory limit (`limits.swap_bytes` 0).
    NoSwap,
    /// memory.high: throttled and reclaimed above it, not killed.
    MemoryHigh,
    /// memory.oom.group: an OOM kill takes the whole container.
    OomGroup,
    PidsLimit,
    CpuQuota,
    /// cpu.weight / cpu.shares: a share of contended CPU by weight.
    CpuWeight,
    Cpuset,
    /// Write bandwidth caps on block devices (io.max / blkio.throttle).
    IoLimit,
    /// RLIMIT_NOFILE of the first process.
    NofileLimit,
    /// RLIMIT_NPROC of the first process.
    NprocLimit,
    /// oom_score_adj of the first process.
    OomScoreAdj,
    /// `Container::kill` kills every task of the cgroup, not only PID 1.
    GroupKill,
    /// Only null, zero, full, random, urandom, tty, ptmx and pts can be
    /// opened (devices cgroup on v1, a device program on v2).
    DeviceAllowlist,
    /// /dev, /dev/shm and /tmp are nodev.
    Nodev,
    /// /dev, /dev/shm and /tmp are nosuid.
    Nosuid,
    /// /dev and /dev/shm are noexec.
    Noexec,
    /// `Container::pause` freezes every task of the cgroup (the freezer),
    /// not only PID 1 (SIGSTOP).
    GroupFreeze,
    /// `Container::exec` joins every namespace of PID 1.
    ExecJoinsNamespaces,
    /// In a user namespace the container's mounts are locked: a read-only
    /// mount stays read-only and a mask cannot be unmounted, whatever
    /// capabilities root keeps inside.
    LockedMounts,
    /// The container's veth is attached to its bridge.
    BridgeAttachment,
    /// The bridge's subnet is masqueraded out of the uplink (the harness's
    /// `network::Nat`, not part of a container's spec).
    Masquerade,
    /// Published ports are forwarded (DNAT) to the container.
    PortForward,
}

/// How much a control raises a limit instead of removing it: fork bombs and
/// allocators always run capped, in controls too.
pub const LIMIT_RAISE_FACTOR: u64 = 8;

impl Protection {
    /// Every protection, in declaration order.
    pub fn all() -> impl Iterator<Item = Protection> {
        Protection::iter()
    }

    /// The kebab-case name used in scenario files and reports.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether this protection is part of a container's spec (all but
    /// [`Protection::Masquerade`], which lives on the bridge).
    pub fn in_spec(self) -> bool {
        self != Protection::Masquerade
    }

    /// The part of `spec` this protection owns, as comparable text. Two specs
    /// with the same state apply the protection the same way.
    pub fn state(self, spec: &ContainerSpec) -> String {
        let ns = &spec.namespaces;
        let h = &spec.hardening;
        let k = &spec.kernel_files;
        let l = &spec.limits;
        let bridge = match &spec.network {
            NetworkMode::Bridge(b) => Some(b),
            NetworkMode::None => None,
        };
        match self {
            Protection::PidNamespace => format!("{}", ns.pid),
            Protection::MountNamespace => format!("{}", ns.mount),
            Protection::UtsNamespace => format!("{}", ns.uts),
            Protection::IpcNamespace => format!("{}", ns.ipc),
            Protection::NetNamespace => format!("{}", ns.net),
            Protection::CgroupNamespace => format!("{}", ns.cgroup),
            Protection::UserNamespace => format!("{} {:?}", ns.user, spec.user),
            Protection::TimeNamespace => format!("{} {:?}", ns.time, spec.time_offsets),
            Protection::PivotRoot => format!("{:?}", spec.rootfs.entry),
            Protection::DetachOldRoot => format!("{}", h.detach_old_root),
            Protection::RslaveRoot => format!("{}", h.rslave_root),
            Protection::Overlay => format!("{}", spec.rootfs.overlay),
            Protection::ReadonlyBinds => {
                format!(
                    "{:?}",
                    spec.mounts.iter().map(|m| m.readonly).collect::<Vec<_>>()
                )
            }
            Protection::RecursiveReadonly => format!("{}", h.recursive_readonly),
            Protection::RecursiveBinds => format!("{}", h.recursive_binds),
            Protection::ProcSysReadonly => format!("{}", k.proc_sys_readonly),
            Protection::SysReadonly => format!("{}", k.sys_readonly),
            Protection::MaskedPaths => format!("{} {:?}", k.mask_proc_files, spec.masked_paths),
            Protection::ReadonlyPaths => {
                format!("{} {:?}", k.readonly_paths, spec.readonly_paths)
            }
            Protection::HostCgroupfsHidden => format!("{}", !k.host_cgroupfs_rw),
            Protection::CapabilityDrop => {
                let kept: BTreeSet<&String> = spec.capabilities.iter().collect();
                format!("{kept:?}")
            }
            Protection::NoNewPrivs => format!("{}", spec.no_new_privs),
            Protection::Seccomp => format!("{:?}", spec.seccomp),
            Protection::CloseHostFds => format!("{}", h.close_host_fds),
            Protection::ClearGroups => format!("{}", h.clear_groups),
            Protection::MemoryLimit => format!("{:?}", l.memory_bytes),
            Protection::NoSwap => format!("{}", l.swap_bytes),
            Protection::MemoryHigh => format!("{:?}", l.memory_high_bytes),
            Protection::OomGroup => format!("{}", l.oom_group),
            Protection::PidsLimit => format!("{:?}", l.pids),
            Protection::CpuQuota => format!("{:?}", l.cpu),
            Protection::CpuWeight => format!("{:?}", l.cpu_weight),
            Protection::Cpuset => format!("{:?}", l.cpuset),
            Protection::IoLimit => format!("{:?}", l.io_write_bps),
            Protection::NofileLimit => format!("{:?}", l.nofile),
            Protection::NprocLimit => format!("{:?}", l.nproc),
            Protection::OomScoreAdj => format!("{:?}", l.oom_score_adj),
            Protection::GroupKill => format!("{}", h.group_kill),
            Protection::DeviceAllowlist => format!("{}", h.device_allowlist),
            Protection::Nodev => format!("{}", h.nodev),
            Protection::Nosuid => format!("{}", h.nosuid),
            Protection::Noexec => format!("{}", h.noexec),
            Protection::GroupFreeze => format!("{}", h.group_freeze),
            Protection::ExecJoinsNamespaces => format!("{}", h.exec_joins_namespaces),
            Protection::LockedMounts => format!("{}", h.locked_mounts),
            Protection::BridgeAttachment => format!("{:?}", bridge.map(|b| b.detached)),
            Protection::Masquerade => String::new(),
            Protection::PortForward => format!("{:?}", bridge.map(|b| &b.publish)),
        }
    }

    /// Weakens `spec` in this protection alone. Limits that cap a hog are
    /// raised by [`LIMIT_RAISE_FACTOR`] rather than removed (memory, pids,
    /// open files, processes; swap is allowed up to that factor times the
    /// memory limit); the CPU quota, weight, cpuset, memory.high, io caps and
    /// oom_score_adj go back to the kernel's defaults.
    pub fn switch_off(self, spec: &mut ContainerSpec) {
        let ns = &mut spec.namespaces;
        let h = &mut spec.hardening;
        let k = &mut spec.kernel_files;
        let l = &mut spec.limits;
        match self {
            Protection::PidNamespace => ns.pid = false,
            Protection::MountNamespace => ns.mount = false,
            Protection::UtsNamespace => {
                ns.uts = false;
                spec.hostname = None;
            }
            Protection::IpcNamespace => ns.ipc = false,
            Protection::NetNamespace => ns.net = false,
            Protection::CgroupNamespace => ns.cgroup = false,
            Protection::UserNamespace => {
                ns.user = false;
                spec.user = None;
            }
            Protection::TimeNamespace => {
                ns.time = false;
                spec.time_offsets = Default::default();
            }
            Protection::PivotRoot => spec.rootfs.entry = RootEntry::ChrootOnly,
            Protection::DetachOldRoot => h.detach_old_root = false,
            Protection::RslaveRoot => h.rslave_root = false,
            Protection::Overlay => spec.rootfs.overlay = false,
            Protection::ReadonlyBinds => spec.mounts.iter_mut().for_each(|m| m.readonly = false),
            Protection::RecursiveReadonly => h.recursive_readonly = false,
            Protection::RecursiveBinds => h.recursive_binds = false,
            Protection::ProcSysReadonly => k.proc_sys_readonly = false,
            Protection::SysReadonly => k.sys_readonly = false,
            Protection::MaskedPaths => k.mask_proc_files = false,
            Protection::ReadonlyPaths => k.readonly_paths = false,
            Protection::HostCgroupfsHidden => k.host_cgroupfs_rw = true,
            Protection::CapabilityDrop => {
                spec.capabilities = crate::caps::all_names();
            }
            Protection::NoNewPrivs => spec.no_new_privs = false,
            Protection::Seccomp => spec.seccomp = None,
            Protection::CloseHostFds => h.close_host_fds = false,
            Protection::ClearGroups => h.clear_groups = false,
            Protection::MemoryLimit => l.memory_bytes = raised(l.memory_bytes),
            Protection::NoSwap => {
                l.swap_bytes = l
                    .memory_bytes
                    .unwrap_or(SWAP_WITHOUT_LIMIT)
                    .saturating_mul(LIMIT_RAISE_FACTOR)
            }
            Protection::MemoryHigh => l.memory_high_bytes = None,
            Protection::OomGroup => l.oom_group = false,
            Protection::PidsLimit => l.pids = raised(l.pids),
            Protection::CpuQuota => l.cpu = None,
            Protection::CpuWeight => l.cpu_weight = None,
            Protection::Cpuset => l.cpuset = None,
            Protection::IoLimit => l.io_write_bps.clear(),
            Protection::NofileLimit => l.nofile = raised(l.nofile),
            Protection::NprocLimit => l.nproc = raised(l.nproc),
            Protection::OomScoreAdj => l.oom_score_adj = None,
            Protection::GroupKill => h.group_kill = false,
            Protection::DeviceAllowlist => h.device_allowlist = false,
            Protection::Nodev => h.nodev = false,
            Protection::Nosuid => h.nosuid = false,
            Protection::Noexec => h.noexec = false,
            Protection::GroupFreeze => h.group_freeze = false,
            Protection::ExecJoinsNamespaces => h.exec_joins_namespaces = false,
            Protection::LockedMounts => h.locked_mounts = false,
            Protection::BridgeAttachment => {
                if let NetworkMode::Bridge(b) = &mut spec.network {
                    b.detached = true;
                }
            }
            Protection::Masquerade => {}
            Protection::PortForward => {
                if let NetworkMode::Bridge(b) = &mut spec.network {
                    b.publish.clear();
                }
            }
        }
    }
}

/// Swap allowed (before [`LIMIT_RAISE_FACTOR`]) when a control switches
/// [`Protection::NoSwap`] off in a spec without a memory limit.
const SWAP_WITHOUT_LIMIT: u64 = 128 << 20;

fn raised(limit: Option<u64>) -> Option<u64> {
    limit.map(|v| v.saturating_mul(LIMIT_RAISE_FACTOR))
}

impl std::fmt::Display for Protection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The protections whose state differs between two specs.
pub fn changed_protections(a: &ContainerSpec, b: &ContainerSpec) -> BTreeSet<Protection> {
    Protection::all()
        .filter(|p| p.state(a) != p.state(b))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridged() -> ContainerSpec {
        let mut spec = ContainerSpec::default();
        spec.limits.memory_bytes = Some(64 << 20);
        spec.limits.pids = Some(32);
        spec.limits.cpu = Some(crate::spec::CpuQuota {
            quota_us: 20_000,
            period_us: 100_000,
        });
        spec.limits.cpuset = Some(crate::spec::CpuSet {
            cpus: "0".into(),
            mems: None,
        });
        spec.limits.memory_high_bytes = Some(32 << 20);
        spec.limits.oom_group = true;
        spec.limits.cpu_weight = Some(300);
        spec.limits.io_write_bps = vec![crate::spec::DeviceRate {
            device: "/dev/loop7".into(),
            bytes_per_sec: 4 << 20,
        }];
        spec.limits.nofile = Some(32);
        spec.limits.nproc = Some(16);
        spec.limits.oom_score_adj = Some(1000);
        spec.hostname = Some("c".into());
        spec.namespaces.time = true;
        spec.namespaces.user = true;
        spec.mounts.push(crate::spec::BindMount {
            source: "/src".into(),
            destination: "/dst".into(),
            readonly: true,
        });
        spec.network = NetworkMode::Bridge(crate::spec::BridgeAttachment {
            bridge: "isoc-br0".into(),
            address: "10.89.0.2/24".into(),
            gateway: None,
            address6: None,
            gateway6: None,
            publish: vec![crate::spec::PortForward {
                host_port: 8080,
                container_port: 8000,
            }],
            detached: false,
        });
        spec
    }

    #[test]
    fn switching_one_off_changes_that_one_alone() {
        for p in Protection::all().filter(|p| p.in_spec()) {
            let base = bridged();
            let mut weak = base.clone();
            p.switch_off(&mut weak);
            let changed = changed_protections(&base, &weak);
            assert_eq!(
                changed,
                BTreeSet::from([p]),
                "switching off {p} changed {changed:?}"
            );
        }
    }

    #[test]
    fn limits_are_raised_not_removed() {
        let mut spec = bridged();
        Protection::MemoryLimit.switch_off(&mut spec);
        Protection::PidsLimit.switch_off(&mut spec);
        Protection::NofileLimit.switch_off(&mut spec);
        Protection::NprocLimit.switch_off(&mut spec);
        assert_eq!(spec.limits.memory_bytes, Some(512 << 20));
        assert_eq!(spec.limits.pids, Some(256));
        assert_eq!(
            (spec.limits.nofile, spec.limits.nproc),
            (Some(256), Some(128))
        );
        Protection::NoSwap.switch_off(&mut spec);
        assert_eq!(
            spec.limits.swap_bytes,
            8 * (512 << 20),
            "8x the memory limit"
        );
    }

    #[test]
    fn names_round_trip() {
        for p in Protection::all() {
            let parsed: Protection = p.name().parse().expect("parses");
            assert_eq!(parsed, p);
            let json = serde_json::to_string(&p).expect("serializes");
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert_eq!(Protection::DetachOldRoot.name(), "detach-old-root");
    }
}

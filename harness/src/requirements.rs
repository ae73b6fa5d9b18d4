//! What a scenario needs from the host. Each is probed by looking at what the
//! kernel offers (not by version numbers); a missing one makes the verdict
//! "unsupported" with the reason, never a silent skip.

use std::path::Path;

/// A command that needs root, refused before it makes anything.
#[derive(Debug, thiserror::Error)]
#[error("`isocheck {0}` needs root: it creates namespaces, mounts and cgroups (run it with sudo)")]
pub struct NotRoot(pub &'static str);

/// `isocheck WHAT` goes on only as root.
pub fn require_root(what: &'static str) -> Result<(), NotRoot> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(NotRoot(what))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Running as root (uid 0 with CAP_SYS_ADMIN).
    Root,
    /// A cgroup controller we can use: memory, pids, cpu, cpuset.
    Controller(String),
    /// A namespace type: /proc/self/ns/NAME exists.
    Namespace(String),
    /// A filesystem type the kernel knows (overlay...).
    Filesystem(String),
    /// A program on PATH (nft...).
    Program(String),
    /// At least this many CPUs online (a cpuset control needs a second one).
    Cpus(usize),
    /// The kernel mounts overlayfs inside a user namespace (5.11 and later;
    /// probed by trying, see `Runner::new`).
    OverlayInUserns,
    /// At least one of these kernel paths exists (e.g. the masked files a
    /// scenario checks: a kernel without any leaves nothing to prove).
    AnyPath(Vec<String>),
    /// A memory-controller file only cgroup v2 has (memory.high,
    /// memory.oom.group): the memory controller must be on v2 here.
    CgroupV2File(String),
    /// Some swap is on (/proc/swaps lists a device or file).
    Swap,
    /// File pages a container writes can be reclaimed: its upper layer is
    /// on a disk-backed filesystem, or there is swap for tmpfs pages.
    ReclaimablePageCache,
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement, String> {
        let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
        let known_controllers = ["memory", "pids", "cpu", "cpuset", "io"];
        match (kind, arg) {
            ("root", "") => Ok(Requirement::Root),
            ("controller", c) if known_controllers.contains(&c) => {
                Ok(Requirement::Controller(c.into()))
            }
            ("namespace", n)
                if ["pid", "mnt", "uts", "ipc", "net", "cgroup", "time", "user"].contains(&n) =>
            {
                Ok(Requirement::Namespace(n.into()))
            }
            ("cpus", n) if n.parse::<usize>().is_ok_and(|n| n > 0) => {
                Ok(Requirement::Cpus(n.parse().unwrap_or(1)))
            }
            ("feature", "overlay-in-userns") => Ok(Requirement::OverlayInUserns),
            ("any-path", list)
                if !list.is_empty() && list.split(',').all(|p| p.starts_with('/')) =>
            {
                Ok(Requirement::AnyPath(list.split(',').map(str::to_owned).collect()))
            }
            ("feature", "reclaimable-page-cache") => Ok(Requirement::ReclaimablePageCache),
            ("swap", "") => Ok(Requirement::Swap),
            ("cgroup-v2", f) if f.starts_with("memory.") && !f.contains('/') => {
                Ok(Requirement::CgroupV2File(f.into()))
            }
            ("filesystem", f) if !f.is_empty() => Ok(Requirement::Filesystem(f.into())),
            ("program", p) if !p.is_empty() && !p.contains('/') => {
                Ok(Requirement::Program(p.into()))
            }
            _ => Err(format!(
                "{text:?} is not a requirement (root, controller:memory|pids|cpu|cpuset|io, namespace:NAME, filesystem:NAME, program:NAME, cpus:N, swap, cgroup-v2:memory.FILE, feature:overlay-in-userns|reclaimable-page-cache, any-path:/A,/B)"
            )),
        }
    }

    /// `None` when the host offers it, else the reason it does not.
    pub fn missing(&self, host: &HostFacts) -> Option<String> {
        match self {
            Requirement::Root => {
                (!host.root).then(|| "needs root (run as root or with sudo)".into())
            }
            Requirement::Controller(c) => (!host.controllers.iter().any(|x| x == c)).then(|| {
                format!(
                    "the {c} cgroup controller is not available on this host ({})",
                    host.cgroup_mode
                )
            }),
            Requirement::Namespace(n) => (!Path::new("/proc/self/ns").join(n).exists())
                .then(|| format!("this kernel has no {n} namespace (/proc/self/ns/{n} missing)")),
            Requirement::Filesystem(f) => (!host.filesystems.iter().any(|x| x == f)).then(|| {
                format!("this kernel does not offer the {f} filesystem (/proc/filesystems)")
            }),
            Requirement::Program(p) => {
                (!on_path(p)).then(|| format!("{p} is not installed (not on PATH)"))
            }
            Requirement::OverlayInUserns => host.overlay_in_userns.clone(),
            Requirement::AnyPath(paths) => (!paths.iter().any(|p| Path::new(p).exists()))
                .then(|| format!("this kernel has none of {}", paths.join(", "))),
            Requirement::Cpus(n) => {
                (host.cpus < *n).then(|| format!("needs {n} cpus; this host has {}", host.cpus))
            }
            Requirement::CgroupV2File(file) => (host.cgroup_mode != "v2").then(|| {
                format!(
                    "cgroup v1 has no {file} (the memory controller is on v1 here: {})",
                    host.cgroup_mode
                )
            }),
            Requirement::Swap => (host.swap_kib == 0)
                .then(|| "no swap on this host (/proc/swaps lists none)".to_string()),
            Requirement::ReclaimablePageCache => (host.tmp_on_ram && host.swap_kib == 0).then(|| {
                "the overlay's upper layer is on a RAM filesystem (set TMPDIR to a disk directory to change that) and there is no swap: written file pages cannot be reclaimed".to_string()
            }),
        }
    }
}

/// What the host offers, gathered once per run.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub root: bool,
    pub cgroup_mode: String,
    pub controllers: Vec<String>,
    pub filesystems: Vec<String>,
    pub cpus: usize,
    /// Why an overlay cannot be mounted in a user namespace here, if it
    /// cannot (filled in by the runner, which can start a container).
    pub overlay_in_userns: Option<String>,
    /// Swap on, in KiB (/proc/swaps).
    pub swap_kib: u64,
    /// Where containers' overlay uppers live (`rootfs::temp_base`: /dev/shm
    /// unless TMPDIR says otherwise) is tmpfs or ramfs.
    pub tmp_on_ram: bool,
}

impl HostFacts {
    pub fn gather() -> HostFacts {
        let filesystems = std::fs::read_to_string("/proc/filesystems")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_owned))
            .collect();
        let (cgroup_mode, controllers) = match isocheck_runtime::cgroups::CgroupManager::detect() {
            Ok(m) => (
                m.mode().to_string(),
                m.available_controllers()
                    .iter()
                    .map(|c| c.to_string())
                    .collect(),
            ),
            Err(e) => (format!("unknown ({e})"), Vec::new()),
        };
        HostFacts {
            root: nix::unistd::geteuid().is_root(),
            cgroup_mode,
            controllers,
            filesystems,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            overlay_in_userns: None,
            swap_kib: isocheck_runtime::cgroups::memory::swap_kib(
                &std::fs::read_to_string("/proc/swaps").unwrap_or_default(),
            ),
            tmp_on_ram: nix::sys::statfs::statfs(&isocheck_runtime::rootfs::temp_base()).is_ok_and(
                |st| {
                    let kind = st.filesystem_type();
                    // ramfs has no nix constant: its magic, from linux/magic.h.
                    kind == nix::sys::statfs::TMPFS_MAGIC || kind.0 as u64 == 0x8584_58f6
                },
            ),
        }
    }
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("root", Ok(Requirement::Root))]
    #[case("controller:memory", Ok(Requirement::Controller("memory".into())))]
    #[case("namespace:time", Ok(Requirement::Namespace("time".into())))]
    #[case("program:nft", Ok(Requirement::Program("nft".into())))]
    #[case("any-path:/proc/a,/sys/b", Ok(Requirement::AnyPath(vec!["/proc/a".into(), "/sys/b".into()])))]
    fn parses(#[case] text: &str, #[case] want: Result<Requirement, String>) {
        assert_eq!(Requirement::parse(text), want);
    }

    #[test]
    fn swap_and_cgroup_v2_files_give_their_reasons() {
        let mut host = HostFacts {
            root: true,
            cgroup_mode: "hybrid".into(),
            ..HostFacts::default()
        };
        let high = Requirement::parse("cgroup-v2:memory.high").expect("parses");
        assert_eq!(
            high.missing(&host).as_deref(),
            Some("cgroup v1 has no memory.high (the memory controller is on v1 here: hybrid)")
        );
        assert_eq!(
            Requirement::Swap.missing(&host).as_deref(),
            Some("no swap on this host (/proc/swaps lists none)")
        );
        assert_eq!(Requirement::ReclaimablePageCache.missing(&host), None);
        host.tmp_on_ram = true;
        assert!(Requirement::ReclaimablePageCache.missing(&host).is_some());
        host.swap_kib = isocheck_runtime::cgroups::memory::swap_kib(
            "Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition\t262140\t0\t100\n",
        );
        assert_eq!(host.swap_kib, 262_140);
        host.cgroup_mode = "v2".into();
        assert_eq!(high.missing(&host), None);
        assert_eq!(Requirement::Swap.missing(&host), None);
        assert_eq!(Requirement::ReclaimablePageCache.missing(&host), None);
    }

    #[rstest]
    #[case("cgroup-v2:cpu.weight")]
    #[case("controller:blkio")]
    #[case("namespace:")]
    #[case("program:/bin/sh")]
    #[case("magic")]
    #[case("any-path:proc/a")]
    fn refuses(#[case] text: &str) {
        let e = Requirement::parse(text).unwrap_err();
        assert!(e.contains(text), "{e}");
    }

    #[test]
    fn a_missing_controller_gives_the_reason() {
        let host = HostFacts {
            root: true,
            cgroup_mode: "v2".into(),
            controllers: vec!["pids".into()],
            filesystems: vec![],
            cpus: 1,
            overlay_in_userns: Some("refused".into()),
            ..HostFacts::default()
        };
        assert_eq!(
            Requirement::OverlayInUserns.missing(&host).as_deref(),
            Some("refused")
        );
        assert!(Requirement::Cpus(2).missing(&host).is_some());
        let none = Requirement::AnyPath(vec!["/surely/not/here".into()]);
        assert_eq!(
            none.missing(&host).as_deref(),
            Some("this kernel has none of /surely/not/here")
        );
        assert_eq!(
            Requirement::AnyPath(vec!["/surely/not".into(), "/".into()]).missing(&host),
            None
        );
        let why = Requirement::Controller("memory".into())
            .missing(&host)
            .unwrap();
        assert!(why.contains("memory") && why.contains("v2"), "{why}");
        assert_eq!(Requirement::Controller("pids".into()).missing(&host), None);
        assert!(Requirement::Program("surely-not-installed-xyz".into())
            .missing(&host)
            .is_some());
    }
}

//! What a scenario needs from the host. Each is probed by looking at what the
//! kernel offers (not by version numbers); a missing one makes the verdict
//! "unsupported" with the reason, never a silent skip.

use std::path::Path;

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
}

impl Requirement {
    pub fn parse(text: &str) -> Result<Requirement, String> {
        let (kind, arg) = text.split_once(':').unwrap_or((text, ""));
        let known_controllers = ["memory", "pids", "cpu", "cpuset"];
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
            ("filesystem", f) if !f.is_empty() => Ok(Requirement::Filesystem(f.into())),
            ("program", p) if !p.is_empty() && !p.contains('/') => {
                Ok(Requirement::Program(p.into()))
            }
            _ => Err(format!(
                "{text:?} is not a requirement (root, controller:memory|pids|cpu|cpuset, namespace:NAME, filesystem:NAME, program:NAME, cpus:N, feature:overlay-in-userns, any-path:/A,/B)"
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

    #[rstest]
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

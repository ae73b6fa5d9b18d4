//! The legs of the kernel matrix: which Debian suite's kernel boots, and in
//! which cgroup mode the guest mounts its hierarchies.

use std::fmt;

/// How the guest lays out its cgroup hierarchies: the runtime's own modes
/// (v1 = one hierarchy per controller, v2 = `cgroup_no_v1=all` and one
/// cgroup2, hybrid = v1 controllers plus a controller-less cgroup2 at
/// /sys/fs/cgroup/unified).
pub use isocheck_runtime::cgroups::CgroupMode;

/// Where a leg runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegKind {
    /// This machine, no VM: the CLI runs the suite directly.
    Host,
    /// A qemu guest booting the suite's Debian kernel.
    Qemu,
}

/// One column of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leg {
    pub name: &'static str,
    /// Debian suite whose `linux-image-amd64` is booted; empty for `host`.
    pub suite: &'static str,
    /// Upstream series, for display and ordering ("5.10", "6.1", "6.12").
    pub kernel_series: &'static str,
    /// `None` for `host`: whatever the machine has.
    pub cgroup_mode: Option<CgroupMode>,
    pub kind: LegKind,
}

impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            LegKind::Host => write!(f, "{:<22} this machine, no VM", self.name),
            LegKind::Qemu => write!(
                f,
                "{:<22} Debian {} kernel {} cgroup {}",
                self.name,
                self.suite,
                self.kernel_series,
                self.cgroup_mode.map(CgroupMode::as_str).unwrap_or("-"),
            ),
        }
    }
}

const fn qemu(
    name: &'static str,
    suite: &'static str,
    kernel_series: &'static str,
    mode: CgroupMode,
) -> Leg {
    Leg {
        name,
        suite,
        kernel_series,
        cgroup_mode: Some(mode),
        kind: LegKind::Qemu,
    }
}

/// Every leg, qemu legs ordered by kernel, `host` last.
///
/// There is no 6.12 v1 leg: trixie's kernel is built without the v1 memory
/// and cpuset controllers (CONFIG_MEMCG_V1, CONFIG_CPUSETS_V1 off).
pub fn list_legs() -> Vec<Leg> {
    vec![
        qemu("bullseye-5.10-v1", "bullseye", "5.10", CgroupMode::V1),
        qemu("bookworm-6.1-v1", "bookworm", "6.1", CgroupMode::V1),
        qemu("bookworm-6.1-v2", "bookworm", "6.1", CgroupMode::V2),
        qemu("bookworm-6.1-hybrid", "bookworm", "6.1", CgroupMode::Hybrid),
        qemu("trixie-6.12-v2", "trixie", "6.12", CgroupMode::V2),
        // Whatever unstable serves today (7.x), so the matrix has an old, a
        // middle and the newest kernel.
        qemu("sid-newest-v2", "sid", "newest", CgroupMode::V2),
        Leg {
            name: "host",
            suite: "",
            kernel_series: "",
            cgroup_mode: None,
            kind: LegKind::Host,
        },
    ]
}

/// `isocheck vm list`: one leg a line.
pub fn print_list() {
    for leg in list_legs() {
        println!("{leg}");
    }
}

/// The leg called `name`, if there is one.
pub fn find_leg(name: &str) -> Option<Leg> {
    list_legs().into_iter().find(|leg| leg.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leg_names_are_the_agreed_ones() {
        let names: Vec<_> = list_legs().iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            [
                "bullseye-5.10-v1",
                "bookworm-6.1-v1",
                "bookworm-6.1-v2",
                "bookworm-6.1-hybrid",
                "trixie-6.12-v2",
                "sid-newest-v2",
                "host"
            ]
        );
    }

    #[test]
    fn every_qemu_leg_name_matches_its_fields() {
        for leg in list_legs().iter().filter(|l| l.kind == LegKind::Qemu) {
            let mode = leg.cgroup_mode.expect("qemu legs have a mode");
            assert_eq!(
                leg.name,
                format!("{}-{}-{}", leg.suite, leg.kernel_series, mode),
                "{leg:?}"
            );
        }
    }

    #[test]
    fn host_leg_has_no_suite_and_no_mode() {
        let host = find_leg("host").expect("host leg");
        assert_eq!(host.kind, LegKind::Host);
        assert_eq!(host.cgroup_mode, None);
        assert!(find_leg("trixie-6.12-v1").is_none());
    }

    #[test]
    fn display_names_suite_and_mode() {
        let leg = find_leg("bookworm-6.1-hybrid").expect("leg");
        assert_eq!(
            leg.to_string(),
            "bookworm-6.1-hybrid    Debian bookworm kernel 6.1 cgroup hybrid"
        );
    }
}

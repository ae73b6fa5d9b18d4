//! Finding and removing what a crashed run left behind. A run owns
//! `/tmp/isocheck-<run_id>` (with an `owner` pid file) and cgroups named
//! `isocheck/<run_id>-*`. Mounts, interfaces, the nft table and SysV objects
//! live in the run's stand-in namespaces and die with its processes; the
//! container processes die with the runner (parent-death signal) or are
//! killed with their cgroup here.

use crate::fixtures::{remove_tree, RUN_DIR_PREFIX};
use isocheck_runtime::cgroups::CgroupManager;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    RunDir(PathBuf),
    Cgroup(PathBuf),
    /// An `isoc-*` link or the `isocheck` nft table in the current netns.
    Network(String),
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::RunDir(p) => write!(f, "temp dir {}", p.display()),
            Leftover::Cgroup(p) => write!(f, "cgroup {}", p.display()),
            Leftover::Network(n) => write!(f, "network {n}"),
        }
    }
}

/// Run ids whose owner process is still alive (their resources are not leftovers).
fn live_runs(dirs: &[(PathBuf, Option<i32>)]) -> Vec<String> {
    dirs.iter()
        .filter(|(_, owner)| owner.is_some_and(pid_alive))
        .map(|(dir, _)| run_id_of(dir))
        .collect()
}

fn run_id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches(RUN_DIR_PREFIX)
                .to_string()
        })
        .unwrap_or_default()
}

/// Every `isocheck-*` directory in `tmp` with its owner pid, if readable.
fn run_dirs(tmp: &Path) -> Vec<(PathBuf, Option<i32>)> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(RUN_DIR_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let owner = std::fs::read_to_string(e.path().join("owner"))
                .ok()
                .and_then(|t| t.trim().parse().ok());
            (e.path(), owner)
        })
        .collect()
}

/// A container's own temp dir (`isocheck-<run_id>-<name>-*`, made by the
/// runtime) belongs to its run while that run lives.
fn belongs_to_live_run(dir: &Path, live: &[String]) -> bool {
    let name = run_id_of(dir);
    live.iter().any(|run| name.starts_with(&format!("{run}-")))
}

fn pid_alive(pid: i32) -> bool {
    pid > 0 && Path::new("/proc").join(pid.to_string()).exists()
}

/// Leftovers of dead runs (never those of a live run, nor our own).
pub fn find() -> Vec<Leftover> {
    let dirs = run_dirs(&std::env::temp_dir());
    // Run dirs and containers' temp dirs whose owner lives.
    let live = live_runs(&dirs);
    let mut found: Vec<Leftover> = dirs
        .into_iter()
        .filter(|(dir, owner)| !owner.is_some_and(pid_alive) && !belongs_to_live_run(dir, &live))
        .map(|(dir, _)| Leftover::RunDir(dir))
        .collect();
    // A cgroup `<run_id>-<name>` is in use while its run lives or while its
    // container's temp dir (`isocheck-<run_id>-<name>-*`) has a live owner.
    if let Ok(manager) = CgroupManager::detect() {
        for path in manager.leftovers() {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let in_use = live.iter().any(|run| name.starts_with(&format!("{run}-")))
                || live.iter().any(|d| d.starts_with(&format!("{name}-")));
            if !in_use {
                found.push(Leftover::Cgroup(path));
            }
        }
    }
    if let Ok(host) = isocheck_runtime::network::Netns::current() {
        found.extend(
            isocheck_runtime::network::leftovers(&host)
                .into_iter()
                .map(Leftover::Network),
        );
    }
    found
}

/// One line for people: how many of each kind, and where to look.
pub fn summary(leftovers: &[Leftover]) -> String {
    let count = |f: fn(&Leftover) -> bool| leftovers.iter().filter(|l| f(l)).count();
    let dirs = count(|l| matches!(l, Leftover::RunDir(_)));
    let cgroups = count(|l| matches!(l, Leftover::Cgroup(_)));
    let links = count(|l| matches!(l, Leftover::Network(_)));
    let first = leftovers
        .first()
        .map(|l| format!("; e.g. {l}"))
        .unwrap_or_default();
    format!("{dirs} temp dir(s), {cgroups} cgroup(s), {links} network object(s){first}")
}

/// Removes every leftover, going on past errors; returns the errors.
pub fn remove(leftovers: &[Leftover]) -> Vec<String> {
    let mut errors = Vec::new();
    let manager = CgroupManager::detect().ok();
    // Cgroups first: killing their tasks releases anything they hold.
    for l in leftovers {
        if let (Leftover::Cgroup(p), Some(m)) = (l, &manager) {
            if let Err(e) = m.remove_leftover(p) {
                errors.push(format!("{l}: {e}"));
            }
        }
    }
    if leftovers.iter().any(|l| matches!(l, Leftover::Network(_))) {
        match isocheck_runtime::network::Netns::current() {
            Ok(host) => {
                if let Err(e) = isocheck_runtime::network::cleanup(&host) {
                    errors.push(format!("network: {e}"));
                }
            }
            Err(e) => errors.push(format!("network: {e}")),
        }
    }
    for l in leftovers {
        if let Leftover::RunDir(p) = l {
            if let Err(e) = remove_tree(p) {
                errors.push(format!("{l}: {e}"));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_dirs_of_dead_owners_are_leftovers_and_live_ones_are_not() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("isocheck-dead1");
        let live = tmp.path().join("isocheck-live1");
        let other = tmp.path().join("not-ours");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        // pid 0x7fffffff cannot exist; our own pid does.
        std::fs::write(dead.join("owner"), "2147483647").unwrap();
        std::fs::write(live.join("owner"), std::process::id().to_string()).unwrap();
        let mut dirs = run_dirs(tmp.path());
        dirs.sort();
        assert_eq!(dirs.len(), 2);
        let live = live_runs(&run_dirs(tmp.path()));
        assert_eq!(live, vec!["live1".to_string()]);
        assert!(belongs_to_live_run(
            &tmp.path().join("isocheck-live1-ctr-x"),
            &live
        ));
        assert!(!belongs_to_live_run(
            &tmp.path().join("isocheck-dead1-ctr-x"),
            &live
        ));
    }

    #[test]
    fn summary_counts_each_kind() {
        let s = summary(&[
            Leftover::RunDir("/tmp/isocheck-a".into()),
            Leftover::Cgroup("/sys/fs/cgroup/pids/isocheck/a-x".into()),
            Leftover::Cgroup("/sys/fs/cgroup/memory/isocheck/a-x".into()),
        ]);
        assert_eq!(
            s,
            "1 temp dir(s), 2 cgroup(s), 0 network object(s); e.g. temp dir /tmp/isocheck-a"
        );
    }
}

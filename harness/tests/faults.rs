//! Kill -9 of the runner in the middle of each kind of scenario must leave
//! only what `isocheck cleanup` removes, and after the cleanup nothing at all:
//! no cgroup, no temp dir, no container or decoy process. (Mounts, links and
//! the nft table live in the run's stand-in namespaces and die with it.)
//! Needs root: runs only with `--features privileged`.

#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const ISOCHECK: &str = env!("CARGO_BIN_EXE_isocheck");

/// One scenario per kind, and how long after its first container appears
/// the plug is pulled (ms): during a fork bomb, an OOM, a networked run, an
/// overlay run, an escape.
const CASES: &[(&str, u64)] = &[
    ("pids-fork-bomb", 10),
    ("memory-oom-kill", 0),
    ("net-nat-outside", 20),
    ("overlay-image-untouched", 0),
    ("escape-ptrace-host", 0),
];

/// A container of the run exists: the runtime's temp dir
/// `isocheck-<run>-run-N-*` (the first half's container) has appeared.
fn container_started(before: &[PathBuf]) -> bool {
    run_dirs()
        .iter()
        .any(|d| !before.contains(d) && d.to_string_lossy().contains("-run-"))
}

fn run_dirs() -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("isocheck-"))
        })
        .collect()
}

fn our_cgroups() -> Vec<PathBuf> {
    // v1/hybrid: /sys/fs/cgroup/<hierarchy>/isocheck/*; v2: /sys/fs/cgroup/isocheck/*.
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup/isocheck")];
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        parents.push(hierarchy.path().join("isocheck"));
    }
    let mut found: Vec<PathBuf> = parents
        .iter()
        .filter_map(|p| std::fs::read_dir(p).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Processes whose executable is the probe (containers) or the decoy.
fn our_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| {
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            let comm = comm.trim();
            (comm == "probe" || comm == "isocheck-decoy" || comm == "isocheck-probe")
                .then(|| format!("{} {comm}", e.file_name().to_string_lossy()))
        })
        .collect()
}

const ATTEMPTS: usize = 10;

/// Starts `isocheck run --only id`, waits until its first container exists,
/// waits `delay_ms` more, and SIGKILLs the runner if it is still running.
/// True when the kill landed mid-run.
fn kill_mid_run(id: &str, delay_ms: u64, before: &[PathBuf]) -> bool {
    let mut child = Command::new(ISOCHECK)
        .args(["run", "--only", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !container_started(before) {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id}: no container within 20 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    if child.try_wait().unwrap().is_some() {
        return false;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

#[test]
fn kill_9_mid_run_then_cleanup_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let before_dirs = run_dirs();
    let before_cgroups = our_cgroups();
    for (id, delay_ms) in CASES {
        // A run can be over in tens of milliseconds: an attempt that did
        // not catch a container alive proves nothing and is made again.
        let killed = (0..ATTEMPTS).any(|_| kill_mid_run(id, *delay_ms, &before_dirs));
        assert!(
            killed,
            "{id}: no attempt of {ATTEMPTS} caught a container of the run alive"
        );
        // Container processes die with the runner (parent-death signal).
        let mut left = our_processes();
        for _ in 0..50 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = our_processes();
        }
        assert!(
            left.is_empty(),
            "{id}: processes outlived the runner: {left:?}"
        );

        let out = Command::new(ISOCHECK).arg("cleanup").output().unwrap();
        let removed = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("removing"))
            .count();
        eprintln!("{id}: killed {delay_ms} ms into its first container; cleanup removed {removed} leftover(s)");
        assert!(
            out.status.success(),
            "{id}: cleanup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let new_dirs: Vec<_> = run_dirs()
            .into_iter()
            .filter(|d| !before_dirs.contains(d))
            .collect();
        assert!(
            new_dirs.is_empty(),
            "{id}: temp dirs left after cleanup: {new_dirs:?}"
        );
        let new_cgroups: Vec<_> = our_cgroups()
            .into_iter()
            .filter(|c| !before_cgroups.contains(c))
            .collect();
        assert!(
            new_cgroups.is_empty(),
            "{id}: cgroups left after cleanup: {new_cgroups:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mounts.contains("isocheck"),
            "{id}: a mount of ours is in the real host's table"
        );
    }
}

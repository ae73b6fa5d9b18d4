//! Kill -9 of the runner in the middle of each kind of scenario must leave
//! only what `isocheck cleanup` removes, and after the cleanup nothing at all:
//! no cgroup, no temp dir, no container or decoy process, and no mount of the
//! run in any mount namespace on the machine (they live in the run's
//! stand-in namespaces and die with it). A foreign `/tmp/isocheck-*`
//! directory and a foreign cgroup under our parent, beside the leftovers,
//! must survive every cleanup: they carry no owner record.
//! Needs root: runs only with `--features privileged`.

#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{cgroup_parents, cgroups, mounts_under, resources_of};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

const ISOCHECK: &str = env!("CARGO_BIN_EXE_isocheck");

/// One scenario per kind, and how long after its first container appears
/// the plug is pulled (ms): during a fork bomb, an OOM, a networked run, an
/// overlay run, an escape, and a run with a tmpfs mounted in the stand-in
/// (the read-only bind's source), which the mount check must see while the
/// runner lives.
const CASES: &[(&str, u64)] = &[
    ("pids-fork-bomb", 10),
    ("memory-oom-kill", 0),
    ("net-nat-outside", 20),
    ("overlay-image-untouched", 0),
    ("escape-ptrace-host", 0),
    ("readonly-bind-mount", 0),
];
/// The scenario whose run has a mount of ours in the stand-in while it runs.
const MOUNTS_IN_STANDIN: &str = "readonly-bind-mount";

/// A container of the run exists: the runtime's temp dir
/// `isocheck-<run>-run-N-*` (the first half's container), made by the
/// runner `pid` (runs of others go on beside ours), has appeared.
fn container_started(pid: u32) -> bool {
    resources_of(pid)
        .iter()
        .any(|d| d.to_string_lossy().contains("-run-"))
}

/// A directory and a cgroup that look like ours and are not (no owner
/// record): cleanup must leave both alone. Removed when dropped.
struct Foreign {
    dir: PathBuf,
    cgroup: PathBuf,
}

impl Foreign {
    fn create() -> Foreign {
        let dir = std::env::temp_dir().join(format!("isocheck-notes-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "my notes\n").unwrap();
        // Our parent in the pids hierarchy (v1, hybrid) or the unified one (v2).
        let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let parent = cgroup_parents()
            .into_iter()
            .find(|p| {
                p.parent()
                    .is_some_and(|h| h.ends_with(if v2 { "cgroup" } else { "pids" }))
            })
            .unwrap();
        let cgroup = parent.join(format!("foreign-{}", std::process::id()));
        std::fs::create_dir_all(&cgroup).unwrap();
        Foreign { dir, cgroup }
    }

    fn assert_untouched(&self, id: &str, cleanup_said: &str) {
        assert_eq!(
            std::fs::read_to_string(self.dir.join("notes.txt"))
                .ok()
                .as_deref(),
            Some("my notes\n"),
            "{id}: cleanup touched the foreign directory {}",
            self.dir.display()
        );
        assert!(
            self.cgroup.is_dir(),
            "{id}: cleanup removed the foreign cgroup"
        );
        for p in [&self.dir, &self.cgroup] {
            assert!(
                cleanup_said.contains(&format!("not ours, left alone: {}", p.display())),
                "{id}: cleanup did not report {}: {cleanup_said}",
                p.display()
            );
        }
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir(&self.cgroup);
    }
}

/// (pid, start time) of the runner's descendants and of every task in its
/// cgroups: its containers and its decoy (runs of others go on beside ours).
fn processes_of(runner: u32, owned: &[PathBuf]) -> Vec<(u32, u64)> {
    let stat = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok();
    let ppid = |text: &str| -> Option<u32> {
        text[text.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    let all: Vec<(u32, String)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((pid, stat(pid)?))
        })
        .collect();
    let mut pids = vec![runner];
    // Descendants, to a fixed point.
    loop {
        let more: Vec<u32> = all
            .iter()
            .filter(|(pid, text)| {
                !pids.contains(pid) && ppid(text).is_some_and(|p| pids.contains(&p))
            })
            .map(|(pid, _)| *pid)
            .collect();
        if more.is_empty() {
            break;
        }
        pids.extend(more);
    }
    for dir in owned.iter().filter(|p| p.starts_with("/sys/fs/cgroup")) {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    pids.retain(|p| *p != runner);
    pids.sort();
    pids.dedup();
    pids.into_iter()
        .filter_map(|pid| Some((pid, isocheck_runtime::owner::start_time_of(&stat(pid)?)?)))
        .collect()
}

/// Those of `procs` still running (same pid and start time).
fn still_running(procs: &[(u32, u64)]) -> Vec<u32> {
    procs
        .iter()
        .filter(|(pid, start)| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|t| isocheck_runtime::owner::start_time_of(&t))
                == Some(*start)
        })
        .map(|(pid, _)| *pid)
        .collect()
}

const ATTEMPTS: usize = 10;

/// What a killed run owned just before the kill, and the mounts of its
/// dirs seen then.
struct Killed {
    pid: u32,
    owned: Vec<PathBuf>,
    mounts_before: Vec<String>,
    /// Its containers' and decoy's processes, (pid, start time).
    processes: Vec<(u32, u64)>,
    /// The run ids its temp dirs' records name.
    run_ids: Vec<String>,
}

/// Starts `isocheck run --only id`, waits until its first container exists,
/// waits `delay_ms` more, and SIGKILLs the runner if it is still running.
/// `Some` when the kill landed mid-run.
fn kill_mid_run(id: &str, delay_ms: u64) -> Option<Killed> {
    let mut child = Command::new(ISOCHECK)
        .args(["run", "--only", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !container_started(child.id()) {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id}: no container within 20 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(delay_ms));
    let owned = resources_of(child.id());
    let temp_bases = isocheck_runtime::rootfs::temp_bases();
    let dirs: Vec<PathBuf> = owned
        .iter()
        .filter(|p| temp_bases.iter().any(|b| p.starts_with(b)))
        .cloned()
        .collect();
    let mounts_before = mounts_under(&dirs);
    let processes = processes_of(child.id(), &owned);
    let mut run_ids: Vec<String> = dirs
        .iter()
        .filter_map(|d| isocheck_runtime::owner::dir_owner(d).ok())
        .map(|o| o.run_id)
        .collect();
    run_ids.sort();
    run_ids.dedup();
    if child.try_wait().unwrap().is_some() {
        return None;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    Some(Killed {
        pid: child.id(),
        owned,
        mounts_before,
        processes,
        run_ids,
    })
}

#[test]
fn kill_9_mid_run_then_cleanup_leaves_nothing() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let foreign = Foreign::create();
    for (id, delay_ms) in CASES {
        // A run can be over in tens of milliseconds: an attempt that did
        // not catch a container alive proves nothing and is made again.
        let killed = (0..ATTEMPTS)
            .find_map(|_| kill_mid_run(id, *delay_ms))
            .unwrap_or_else(|| {
                panic!("{id}: no attempt of {ATTEMPTS} caught a container of the run alive")
            });
        assert!(
            cgroups(&killed.owned) > 0,
            "{id}: the run owned no cgroup when killed: {:?}",
            killed.owned
        );
        if *id == MOUNTS_IN_STANDIN {
            // The check below can fail: the stand-in's mounts are seen
            // while the runner lives.
            assert!(
                !killed.mounts_before.is_empty(),
                "{id}: no mount of the run seen while it ran"
            );
        }
        // Container processes die with the runner (parent-death signal).
        assert!(
            !killed.processes.is_empty(),
            "{id}: the run had no process of its own"
        );
        // Up to 20 s: a SIGKILLed process on a loaded machine can take
        // seconds to be reaped; one that outlived its runner stays forever.
        let mut left = still_running(&killed.processes);
        for _ in 0..200 {
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            left = still_running(&killed.processes);
        }
        let described: Vec<String> = left
            .iter()
            .map(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                format!(
                    "{pid} {}",
                    stat.split(' ').take(3).collect::<Vec<_>>().join(" ")
                )
            })
            .collect();
        assert!(
            left.is_empty(),
            "{id}: processes outlived the runner: {described:?}"
        );
        // The stand-in's mounts went with its namespace: nowhere on the
        // machine is one of the run's dirs still a mount point.
        let temp_bases = isocheck_runtime::rootfs::temp_bases();
        let dirs: Vec<PathBuf> = killed
            .owned
            .iter()
            .filter(|p| temp_bases.iter().any(|b| p.starts_with(b)))
            .cloned()
            .collect();
        // A container started just before the kill may still be exiting
        // (its parent-death signal is on its way): its mount namespace goes
        // when it has. Bounded like the wait for processes above.
        let mut mounts = mounts_under(&dirs);
        for _ in 0..50 {
            if mounts.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            mounts = mounts_under(&dirs);
        }
        assert!(
            mounts.is_empty(),
            "{id}: mounts of the killed run outlived it by 5 s: {mounts:?}"
        );

        let out = Command::new(ISOCHECK).arg("cleanup").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        let removed = said.lines().filter(|l| l.starts_with("removing")).count();
        eprintln!(
            "{id}: killed {delay_ms} ms into its first container ({} mount(s) of it seen then); cleanup removed {removed} leftover(s)",
            killed.mounts_before.len()
        );
        assert!(
            out.status.success(),
            "{id}: cleanup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(removed > 0, "{id}: the killed run left nothing: {said}");
        let left: Vec<_> = killed.owned.iter().filter(|p| p.exists()).collect();
        assert!(left.is_empty(), "{id}: left after cleanup: {left:?}");
        let left = resources_of(killed.pid);
        assert!(left.is_empty(), "{id}: left after cleanup: {left:?}");
        // By name too: a temp dir the kill caught between its mkdir and its
        // owner record (or its record and its rmdir) carries no record.
        let left = named_after(&killed.run_ids);
        assert!(left.is_empty(), "{id}: left after cleanup: {left:?}");
        foreign.assert_untouched(id, &said);
    }
}

/// Every `isocheck-<run_id>` or `isocheck-<run_id>-*` entry of the temp
/// bases, for any of `run_ids`.
fn named_after(run_ids: &[String]) -> Vec<PathBuf> {
    isocheck_runtime::rootfs::temp_bases()
        .into_iter()
        .flat_map(|base| std::fs::read_dir(base).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            run_ids.iter().any(|id| {
                name == format!("isocheck-{id}") || name.starts_with(&format!("isocheck-{id}-"))
            })
        })
        .collect()
}

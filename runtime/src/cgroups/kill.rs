//! Killing a whole cgroup, strays included, and waiting until it is empty.
//!
//! Preferred: `cgroup.kill` (v2, 5.14+; on a hybrid host the node under the
//! unified hierarchy has it): the kernel kills every task, including ones
//! forking at that moment. Otherwise freeze (v1 freezer.state or v2
//! cgroup.freeze) so nothing can fork, SIGKILL every member, thaw so the
//! kills are delivered, and wait. Without either, SIGKILL members until the
//! group is empty. Every wait is bounded.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::freezer::{freeze, thaw};
use super::fs::{KILL_WAIT, POLL};
use super::{fs, CgroupError, Nodes};

pub(crate) fn kill_all(nodes: &Nodes) -> Result<(), CgroupError> {
    if let Some(node) = nodes
        .unified
        .as_deref()
        .filter(|n| n.join("cgroup.kill").exists())
    {
        fs::write(node, "cgroup.kill", "1")?;
        return wait_empty(&nodes.dirs);
    }
    if let Some(freezer) = &nodes.freezer {
        freeze(freezer)?;
        let killed = sigkill_members(&nodes.dirs);
        // Thaw even if a kill failed: SIGKILL is only acted on once thawed.
        let thawed = thaw(freezer);
        killed?;
        thawed?;
    }
    wait_empty(&nodes.dirs)
}

/// Kill what is left in a leftover cgroup tree of one hierarchy (`isocheck
/// cleanup`): cgroup.kill where present; a leftover v1 freezer may still be
/// FROZEN from a crashed kill, so it is thawed first.
pub(crate) fn kill_tree(dir: &Path) -> Result<(), CgroupError> {
    let dirs = vec![dir.to_path_buf()];
    if dir.join("cgroup.kill").exists() {
        fs::write(dir, "cgroup.kill", "1")?;
    } else {
        for sub in fs::subtree_deepest_first(dir)? {
            if sub.join("freezer.state").exists() {
                fs::write(&sub, "freezer.state", "THAWED")?;
            }
        }
    }
    wait_empty(&dirs)
}

/// Every pid in `dirs` and their sub-cgroups, deduplicated (the same task is
/// listed in each hierarchy).
pub(crate) fn members(dirs: &[PathBuf]) -> Result<Vec<i32>, CgroupError> {
    let mut pids = BTreeSet::new();
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        for sub in fs::subtree_deepest_first(dir)? {
            pids.extend(fs::read_procs(&sub)?);
        }
    }
    Ok(pids.into_iter().collect())
}

fn sigkill_members(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let own = std::process::id() as i32;
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        for sub in fs::subtree_deepest_first(dir)? {
            // Pids are only trusted from the kernel: a plain file (a fake
            // tree, a stray copy) never leads to a signal.
            if !fs::is_cgroupfs(&sub) {
                continue;
            }
            for pid in fs::read_procs(&sub)? {
                // Never 0, -1 or ourselves: kill(2) would reach far more
                // than this cgroup.
                if pid <= 1 || pid == own {
                    continue;
                }
                match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                    Ok(()) | Err(Errno::ESRCH) => {}
                    Err(source) => {
                        return Err(CgroupError::Signal {
                            pid,
                            path: sub.clone(),
                            source,
                        })
                    }
                }
            }
        }
    }
    Ok(())
}

/// Poll until no task is left. SIGKILL is re-sent on every round, which
/// catches a task that forked before a freezer-less kill reached it.
fn wait_empty(dirs: &[PathBuf]) -> Result<(), CgroupError> {
    let start = Instant::now();
    loop {
        let remaining = members(dirs)?;
        if remaining.is_empty() {
            return Ok(());
        }
        if start.elapsed() > KILL_WAIT {
            return Err(CgroupError::KillTimeout {
                path: dirs.first().cloned().unwrap_or_default(),
                remaining,
                waited_ms: start.elapsed().as_millis(),
            });
        }
        sigkill_members(dirs)?;
        sleep(POLL);
    }
}

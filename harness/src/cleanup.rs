//! Finding and removing what a crashed run left behind, and only that.
//!
//! Everything of ours carries an owner record (`isocheck_runtime::owner`):
//! the run dir `/tmp/isocheck-<run_id>` and each container's temp dir
//! `/tmp/isocheck-<run_id>-<name>-*` hold `.isocheck-owner`; each cgroup
//! `isocheck/<run_id>-<name>` has `/run/isocheck/cgroups/<name>`. A resource
//! is a leftover when its record vouches for it and its owner (pid *and*
//! start time) is dead; one whose owner lives is in use; one without a valid
//! record is not ours, whatever its name, and is reported and left alone,
//! with one exception: an empty `isocheck-<run_id>-*` dir of a run that
//! left dead records and no live one (a kill between a temp dir's mkdir and
//! its record, or its record and its rmdir).
//! Mounts, interfaces, the nft table and SysV objects of a run live in its
//! stand-in namespaces and die with its processes; the container processes
//! die with the runner (parent-death signal) or are killed with their cgroup
//! here.

use crate::fixtures::{remove_tree, RUN_DIR_PREFIX};
use crate::requirements::{require_root, NotRoot};
use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::owner;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    RunDir(PathBuf),
    Cgroup(PathBuf),
    /// A cgroup owner record whose cgroup is gone and whose owner is dead.
    OwnerRecord(PathBuf),
    /// An `isoc-*` link or the `isocheck` nft table in the current netns.
    Network(String),
}

impl std::fmt::Display for Leftover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Leftover::RunDir(p) => write!(f, "temp dir {}", p.display()),
            Leftover::Cgroup(p) => write!(f, "cgroup {}", p.display()),
            Leftover::OwnerRecord(p) => write!(f, "stale owner record {}", p.display()),
            Leftover::Network(n) => write!(f, "network {n}"),
        }
    }
}

/// Something with a name like ours that nothing proves ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotOurs {
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for NotOurs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.path.display(), self.why)
    }
}

/// What `find` saw: leftovers of dead runs of ours, and look-alikes.
#[derive(Debug, Default)]
pub struct Found {
    pub leftovers: Vec<Leftover>,
    pub not_ours: Vec<NotOurs>,
}

/// Where a resource with an owner record stands.
enum Standing {
    Leftover,
    InUse,
    NotOurs(String),
}

fn standing(record: Result<owner::Owner, owner::OwnerError>) -> Standing {
    match record {
        Ok(o) if o.alive() => Standing::InUse,
        Ok(_) => Standing::Leftover,
        Err(e) if unrecorded(&e) => Standing::NotOurs(NO_RECORD.into()),
        Err(e) => Standing::NotOurs(e.to_string()),
    }
}

const NO_RECORD: &str = "no owner record";

/// The resource has no record at all (rather than a bad one).
fn unrecorded(e: &owner::OwnerError) -> bool {
    matches!(e, owner::OwnerError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
}

/// The run ids the records seen in one pass name: of dead owners, and of
/// live ones.
#[derive(Default)]
struct RunIds {
    dead: std::collections::BTreeSet<String>,
    alive: std::collections::BTreeSet<String>,
}

impl RunIds {
    fn note(&mut self, record: &Result<owner::Owner, owner::OwnerError>) {
        if let Ok(o) = record {
            let ids = if o.alive() {
                &mut self.alive
            } else {
                &mut self.dead
            };
            ids.insert(o.run_id.clone());
        }
    }

    /// An empty `isocheck-<run_id>-*` dir without a record, of a run that
    /// left records of dead owners and none of a live one: a temp dir made
    /// or being removed when its run was killed, in the moment between the
    /// mkdir and the record (or the record and the rmdir). It holds
    /// nothing, and its run can no longer finish it.
    fn vouch_for_empty(&self, dir: &Path) -> bool {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let of_run = |id: &String| name.starts_with(&format!("{RUN_DIR_PREFIX}{id}-"));
        self.dead.iter().any(of_run)
            && !self.alive.iter().any(of_run)
            && std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
    }
}

impl Found {
    fn sort(
        &mut self,
        path: PathBuf,
        record: Result<owner::Owner, owner::OwnerError>,
        as_leftover: fn(PathBuf) -> Leftover,
    ) {
        match standing(record) {
            Standing::Leftover => self.leftovers.push(as_leftover(path)),
            Standing::InUse => {}
            Standing::NotOurs(why) => self.not_ours.push(NotOurs { path, why }),
        }
    }
}

/// Every `isocheck-*` directory in `tmp` (symlinks are not directories).
fn temp_dirs(tmp: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(RUN_DIR_PREFIX))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// The temp dirs of `tmp` and the cgroups of `manager`, sorted by their
/// owner records.
/// `tmps`: the directories our temp dirs may be in.
fn find_in(tmps: &[PathBuf], manager: Option<&CgroupManager>) -> Found {
    let mut found = Found::default();
    let mut runs = RunIds::default();
    let mut unrecorded_dirs = Vec::new();
    for dir in tmps.iter().flat_map(|tmp| temp_dirs(tmp)) {
        let record = owner::dir_owner(&dir);
        runs.note(&record);
        match record {
            Err(e) if unrecorded(&e) => unrecorded_dirs.push(dir),
            record => found.sort(dir, record, Leftover::RunDir),
        }
    }
    if let Some(manager) = manager {
        for path in manager.leftovers() {
            let record = manager.owner_of(&path);
            runs.note(&record);
            found.sort(path, record, Leftover::Cgroup);
        }
        found.leftovers.extend(
            manager
                .stale_records()
                .into_iter()
                .map(Leftover::OwnerRecord),
        );
    }
    // Once every record of the pass is known.
    for dir in unrecorded_dirs {
        if runs.vouch_for_empty(&dir) {
            found.leftovers.push(Leftover::RunDir(dir));
        } else {
            found.not_ours.push(NotOurs {
                path: dir,
                why: NO_RECORD.into(),
            });
        }
    }
    found
}

/// Leftovers of dead runs (never those of a live run, nor our own), and
/// what only looks like ours.
pub fn find() -> Found {
    let manager = CgroupManager::detect().ok();
    let mut found = find_in(&isocheck_runtime::rootfs::temp_bases(), manager.as_ref());
    if let Ok(host) = isocheck_runtime::network::Netns::current() {
        found.leftovers.extend(
            isocheck_runtime::network::leftovers(&host)
                .into_iter()
                .map(Leftover::Network),
        );
    }
    found
}

/// `isocheck cleanup`: says what it leaves alone and what it removes, then
/// removes it; fails when a removal did.
pub fn run() -> Result<ExitCode, NotRoot> {
    require_root("cleanup")?;
    let found = find();
    for n in &found.not_ours {
        println!("not ours, left alone: {n}");
    }
    if found.leftovers.is_empty() {
        println!("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    for l in &found.leftovers {
        println!("removing {l}");
    }
    let errors = remove(&found.leftovers);
    for e in &errors {
        eprintln!("isocheck: cleanup: {e}");
    }
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
        let done = match (l, &manager) {
            (Leftover::Cgroup(p), Some(m)) => m.remove_leftover(p),
            (Leftover::OwnerRecord(p), Some(m)) => m.remove_record(p),
            _ => Ok(()),
        };
        if let Err(e) = done {
            errors.push(format!("{l}: {e}"));
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

    /// A directory `name` made in `tmp`.
    fn mk(tmp: &tempfile::TempDir, name: &str) -> PathBuf {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    }

    /// `dir`'s record, of run `run_id`, naming an owner that is dead.
    fn mark_dead(dir: &Path, run_id: &str) {
        let name = dir.file_name().unwrap().to_string_lossy();
        let mut gone = owner::Owner::current(&name, run_id).unwrap();
        gone.pid = i32::MAX;
        gone.write(&dir.join(owner::MARKER_FILE)).unwrap();
    }

    #[test]
    fn only_marked_dirs_of_dead_owners_are_leftovers() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str| mk(&tmp, name);
        let dead = mk("isocheck-dead1");
        let live = mk("isocheck-live1-run-1-x");
        let notes = mk("isocheck-notes");
        let old_style = mk("isocheck-old1");
        let copied = mk("isocheck-copy1");
        mk("not-ours-at-all");
        std::fs::write(notes.join("notes.txt"), "mine").unwrap();
        // An old run's pid file proves nothing any more.
        std::fs::write(old_style.join("owner"), "2147483647").unwrap();
        owner::mark_dir(&live, "live1").unwrap();
        mark_dead(&dead, "dead1");
        // A dead owner's record copied into another directory.
        std::fs::copy(
            dead.join(owner::MARKER_FILE),
            copied.join(owner::MARKER_FILE),
        )
        .unwrap();

        let found = find_in(&[tmp.path().to_path_buf()], None);
        assert_eq!(found.leftovers, vec![Leftover::RunDir(dead)]);
        let not_ours: Vec<_> = found.not_ours.iter().map(|n| n.path.clone()).collect();
        assert_eq!(not_ours, vec![copied, notes, old_style]);
        assert!(
            found.not_ours[1].why.contains("no owner record"),
            "{:?}",
            found.not_ours
        );
    }

    #[test]
    fn an_empty_unrecorded_dir_of_a_dead_run_is_a_leftover() {
        let tmp = tempfile::tempdir().unwrap();
        let mk = |name: &str| mk(&tmp, name);
        let run_dir = mk("isocheck-dead2");
        mark_dead(&run_dir, "dead2");
        // Killed between the mkdir and the record.
        let empty = mk("isocheck-dead2-run-1-aB3dE9");
        // Not empty: something else may have put it there.
        let full = mk("isocheck-dead2-run-2-xY7zQ1");
        std::fs::write(full.join("notes.txt"), "mine").unwrap();
        // Empty, but no dead record names its run.
        let stranger = mk("isocheck-other3-run-1-kL4mN2");
        // Empty, of a run that also has a live record: it may be mid-mkdir.
        let live_dir = mk("isocheck-live4");
        owner::mark_dir(&live_dir, "live4").unwrap();
        let dead4 = mk("isocheck-live4-a-pQ8rS5");
        mark_dead(&dead4, "live4");
        let young = mk("isocheck-live4-b-tU6vW7");

        let found = find_in(&[tmp.path().to_path_buf()], None);
        assert_eq!(
            found.leftovers,
            vec![
                Leftover::RunDir(run_dir),
                Leftover::RunDir(dead4),
                Leftover::RunDir(empty)
            ]
        );
        let not_ours: Vec<_> = found.not_ours.iter().map(|n| n.path.clone()).collect();
        assert_eq!(not_ours, vec![full, young, stranger]);
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

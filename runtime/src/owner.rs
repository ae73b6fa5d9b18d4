//! Owner records: proof that a temp dir or a cgroup is ours, written when
//! it is made, so `isocheck cleanup` removes only what a dead run of ours
//! left and never a directory that merely has a name like ours.
//!
//! A record names the resource it marks (its directory or cgroup name), the
//! run id, the creating process and that process's start time (field 22 of
//! /proc/PID/stat, clock ticks after boot). The owner is alive while a
//! process with that pid *and* that start time exists: a recycled pid has
//! another start time. A record whose resource name differs from the name of
//! the thing it sits beside (a copied file) proves nothing.
//!
//! Where records live:
//! - a temp dir holds its own, `<dir>/.isocheck-owner`, written right after
//!   the directory is made;
//! - a cgroup cannot hold a file (cgroupfs allows only its own), so its record
//!   is `/run/isocheck/cgroups/<cgroup name>`, written *before* the cgroup
//!   is made and removed after it is gone: a crash in between leaves a
//!   record without a cgroup (harmless, removed by cleanup), never a cgroup
//!   without a record. /run is a tmpfs, emptied at boot like cgroupfs, so a
//!   record never outlives the boot its cgroup lived in.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The record's file name inside a temp dir.
pub const MARKER_FILE: &str = ".isocheck-owner";
/// The name that marks what isocheck made: the parent of our cgroups in
/// every hierarchy and the prefix of our resources' names.
pub const OURS: &str = "isocheck";

/// Where cgroup records live, under the filesystem root.
pub const CGROUP_RECORDS: &str = "run/isocheck/cgroups";

const HEADER: &str = "isocheck-owner v1";

/// Who made a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The directory or cgroup name the record vouches for.
    pub resource: String,
    pub run_id: String,
    pub pid: i32,
    /// Field 22 of /proc/PID/stat when the record was written.
    pub start_time: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    #[error("read {path}: {error}")]
    Read { path: PathBuf, error: io::Error },
    #[error("write {path}: {error}")]
    Write { path: PathBuf, error: io::Error },
    #[error("{path}: not an owner record ({why})")]
    Malformed { path: PathBuf, why: String },
}

impl Owner {
    /// This process, as the owner of `resource` in run `run_id`.
    pub fn current(resource: &str, run_id: &str) -> Result<Owner, OwnerError> {
        let pid = std::process::id() as i32;
        let path = PathBuf::from("/proc/self/stat");
        let stat = fs::read_to_string(&path).map_err(|error| OwnerError::Read {
            path: path.clone(),
            error,
        })?;
        let start_time = start_time_of(&stat).ok_or_else(|| OwnerError::Malformed {
            path,
            why: "no start time in field 22".into(),
        })?;
        Ok(Owner {
            resource: resource.to_string(),
            run_id: run_id.to_string(),
            pid,
            start_time,
        })
    }

    /// Whether the owner still runs: a process with this pid and this start
    /// time, under `proc_root` (`/proc`).
    pub fn alive_under(&self, proc_root: &Path) -> bool {
        fs::read_to_string(proc_root.join(self.pid.to_string()).join("stat"))
            .ok()
            .and_then(|stat| start_time_of(&stat))
            == Some(self.start_time)
    }

    pub fn alive(&self) -> bool {
        self.alive_under(Path::new("/proc"))
    }

    /// Writes the record to `path` (made new: an existing file is an error,
    /// so a record is never taken over).
    pub fn write(&self, path: &Path) -> Result<(), OwnerError> {
        use std::io::Write;
        let werr = |error| OwnerError::Write {
            path: path.to_path_buf(),
            error,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(werr)?;
        file.write_all(self.to_string().as_bytes()).map_err(werr)
    }

    /// Reads a record, checking that it vouches for `resource`.
    pub fn read(path: &Path, resource: &str) -> Result<Owner, OwnerError> {
        let text = fs::read_to_string(path).map_err(|error| OwnerError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let bad = |why: String| OwnerError::Malformed {
            path: path.to_path_buf(),
            why,
        };
        let owner = parse(&text).map_err(|why| bad(why.to_string()))?;
        if owner.resource != resource {
            return Err(bad(format!(
                "it marks {:?}, not {resource:?}",
                owner.resource
            )));
        }
        if !resource
            .strip_prefix(OURS)
            .and_then(|r| r.strip_prefix('-'))
            .unwrap_or(resource)
            .starts_with(&owner.run_id)
        {
            return Err(bad(format!(
                "run id {:?} is not in the name {resource:?}",
                owner.run_id
            )));
        }
        Ok(owner)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}")?;
        writeln!(f, "resource {}", self.resource)?;
        writeln!(f, "run_id {}", self.run_id)?;
        writeln!(f, "pid {}", self.pid)?;
        writeln!(f, "start_time {}", self.start_time)
    }
}

fn parse(text: &str) -> Result<Owner, &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err("no header");
    }
    let mut field = |key: &str| -> Result<String, &'static str> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(key))
            .and_then(|v| v.strip_prefix(' '))
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or("a field is missing or out of order")
    };
    let resource = field("resource")?;
    let run_id = field("run_id")?;
    let pid = field("pid")?.parse().map_err(|_| "pid is not a number")?;
    let start_time = field("start_time")?
        .parse()
        .map_err(|_| "start_time is not a number")?;
    if pid <= 0 {
        return Err("pid is not positive");
    }
    Ok(Owner {
        resource,
        run_id,
        pid,
        start_time,
    })
}

/// Field 22 (starttime) of a /proc/PID/stat line. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after its
/// closing parenthesis, the last one in the line (field 3 comes next).
pub fn start_time_of(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Marks a temp dir this process just made as run `run_id`'s.
pub fn mark_dir(dir: &Path, run_id: &str) -> io::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Owner::current(&name, run_id)
        .and_then(|owner| owner.write(&dir.join(MARKER_FILE)))
        .map_err(|e| match e {
            OwnerError::Read { error, .. } | OwnerError::Write { error, .. } => error,
            other => io::Error::other(other.to_string()),
        })
}

/// A temp dir of ours, removed record-last (see [`remove_marked_dir`]) on
/// drop.
#[derive(Debug)]
pub struct MarkedDir {
    path: PathBuf,
}

impl MarkedDir {
    /// Takes over `dir` (made by `tempfile`, not yet marked) and writes its
    /// record; if that fails the dir is removed again.
    pub fn mark(dir: tempfile::TempDir, run_id: &str) -> io::Result<MarkedDir> {
        let marked = MarkedDir { path: dir.keep() };
        mark_dir(&marked.path, run_id)?;
        Ok(marked)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for MarkedDir {
    fn drop(&mut self) {
        if let Err(e) = remove_marked_dir(&self.path) {
            tracing::warn!(error = %e, dir = %self.path.display(), "removing the temp dir");
        }
    }
}

/// Removes a temp dir with its record last: everything else first, then
/// the record, then the dir. A removal cut short (a kill, a busy entry)
/// leaves a dir that still carries its record, so `isocheck cleanup` can
/// vouch for it and finish; removing in readdir order could take the record
/// first and leave an unvouched remainder that cleanup must not touch.
/// A busy entry (ENOTEMPTY, EBUSY: a dying container's overlay may still
/// write into its work dir) is retried a few times before giving up.
pub fn remove_marked_dir(dir: &Path) -> io::Result<()> {
    const TRIES: u32 = 5;
    let mut tries = 0;
    loop {
        match remove_entries_then_record(dir, remove_entry) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if is_busy(&e) && tries < TRIES => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 << tries));
            }
            other => return other,
        }
    }
}

fn is_busy(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::ResourceBusy
    )
}

fn remove_entry(path: &Path, is_dir: bool) -> io::Result<()> {
    if is_dir {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
}

fn remove_entries_then_record(
    dir: &Path,
    remove: impl Fn(&Path, bool) -> io::Result<()>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == MARKER_FILE {
            continue;
        }
        match remove(&entry.path(), entry.file_type()?.is_dir()) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match fs::remove_file(dir.join(MARKER_FILE)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    fs::remove_dir(dir)
}

/// The record of a temp dir, checked against the dir's name.
pub fn dir_owner(dir: &Path) -> Result<Owner, OwnerError> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Owner::read(&dir.join(MARKER_FILE), &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_dir_goes_record_last_and_a_missing_one_is_fine() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("isocheck-t-x");
        fs::create_dir_all(dir.join("work/work")).expect("mkdir");
        fs::write(dir.join("upper-file"), "x").expect("write");
        mark_dir(&dir, "t").expect("mark");
        remove_marked_dir(&dir).expect("remove");
        assert!(!dir.exists());
        remove_marked_dir(&dir).expect("a dir already gone is removed");
    }

    #[test]
    fn a_removal_cut_short_keeps_the_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("isocheck-t-y");
        for sub in ["a", "work", "z"] {
            fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        mark_dir(&dir, "t").expect("mark");
        let refuse_work = |path: &Path, is_dir: bool| {
            if path.ends_with("work") {
                Err(io::Error::from(io::ErrorKind::PermissionDenied))
            } else {
                remove_entry(path, is_dir)
            }
        };
        let err = remove_entries_then_record(&dir, refuse_work).expect_err("work refused");
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(dir.join("work").exists());
        assert_eq!(dir_owner(&dir).expect("record kept").run_id, "t");
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let stat =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        assert_eq!(start_time_of(stat), Some(987654));
        let own = fs::read_to_string("/proc/self/stat").unwrap();
        assert!(start_time_of(&own).is_some_and(|t| t > 0), "{own}");
        assert_eq!(start_time_of("garbage"), None);
    }

    #[test]
    fn a_record_round_trips_and_vouches_only_for_its_resource() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec");
        let me = Owner::current("isocheck-ab12-run-1-x", "ab12").unwrap();
        me.write(&path).unwrap();
        assert_eq!(Owner::read(&path, "isocheck-ab12-run-1-x").unwrap(), me);
        assert!(me.alive());
        // Copied beside something else, it proves nothing.
        let err = Owner::read(&path, "isocheck-notes").unwrap_err();
        assert!(err.to_string().contains("isocheck-notes"), "{err}");
        // Never overwritten.
        assert!(me.write(&path).is_err());
    }

    #[test]
    fn a_dead_or_recycled_owner_is_not_alive() {
        let mut me = Owner::current("ab12-x", "ab12").unwrap();
        me.start_time += 1;
        assert!(!me.alive(), "same pid, other start time: a recycled pid");
        me.pid = i32::MAX;
        assert!(!me.alive());
    }

    #[test]
    fn malformed_records_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec");
        for text in [
            "",
            "notes\n",
            "isocheck-owner v1\nresource x\n",
            "isocheck-owner v1\nresource ab-x\nrun_id ab\npid -3\nstart_time 1\n",
            "isocheck-owner v1\nresource ab-x\nrun_id zz\npid 3\nstart_time 1\n",
        ] {
            fs::write(&path, text).unwrap();
            assert!(Owner::read(&path, "ab-x").is_err(), "{text:?}");
        }
    }
}

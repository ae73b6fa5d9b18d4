//! File helpers for cgroup filesystems: every read and write names its path
//! (and value) in the error, and the parsers for the kernel's two file
//! shapes (a single value, and "key value" lines).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Write `value` to `dir/file` in one write(2), as the kernel expects. The
/// file must exist (a missing one means the controller is not there);
/// O_TRUNC is ignored by cgroupfs and keeps fake trees honest.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    let result = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    result.map_err(|source| CgroupError::Write {
        path,
        value: value.to_string(),
        source,
    })
}

pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|source| CgroupError::Read { path, source })
}

/// Read a file that may legitimately be absent (a controller file of an
/// older kernel, or one only present with an option): `Ok(None)` then.
pub(crate) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Read { path, source }),
    }
}

/// A file holding one number, or "max"/"-1" for unlimited (`None`).
pub(crate) fn read_single_u64(dir: &Path, file: &str) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(dir, file)? else {
        return Ok(None);
    };
    let word = text.trim();
    if word == "max" || word == "-1" {
        return Ok(None);
    }
    word.parse().map(Some).map_err(|_| CgroupError::Parse {
        path: dir.join(file),
        reason: format!("expected a number or max, found {word:?}"),
    })
}

/// The value of `key` in a file of "key value" lines (memory.events,
/// cpu.stat, pids.events, memory.oom_control). `None` when the file or the
/// key is absent.
pub(crate) fn read_keyed_u64(
    dir: &Path,
    file: &str,
    key: &str,
) -> Result<Option<u64>, CgroupError> {
    let Some(text) = read_optional(dir, file)? else {
        return Ok(None);
    };
    parse_keyed_u64(&text, key).map_err(|reason| CgroupError::Parse {
        path: dir.join(file),
        reason,
    })
}

pub(crate) fn parse_keyed_u64(text: &str, key: &str) -> Result<Option<u64>, String> {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some(key) {
            continue;
        }
        let value = words.next().unwrap_or_default();
        return value
            .parse()
            .map(Some)
            .map_err(|_| format!("key {key}: expected a number, found {value:?}"));
    }
    Ok(None)
}

/// The pids listed in `dir/cgroup.procs`.
pub(crate) fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = fs::read_to_string(&path).map_err(|source| CgroupError::Read {
        path: path.clone(),
        source,
    })?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim().parse().map_err(|_| CgroupError::Parse {
                path: path.clone(),
                reason: format!("expected a pid, found {l:?}"),
            })
        })
        .collect()
}

/// Make one cgroup directory; an existing one is an error (it is not ours).
pub(crate) fn create_dir(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir(path).map_err(|source| CgroupError::CreateDir {
        path: path.to_path_buf(),
        source,
    })?;
    #[cfg(test)]
    super::testing::populate_like_kernel(path);
    Ok(())
}

/// Make the shared `isocheck` parent unless it is there already. Returns
/// whether it was made now (v1 cpuset must then be seeded).
pub(crate) fn ensure_dir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => {
            #[cfg(test)]
            super::testing::populate_like_kernel(path);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(source) => Err(CgroupError::CreateDir {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Makes `path` (and its parents) readable by root alone, if missing: the
/// owner records' directory.
pub(crate) fn ensure_private_dir(path: &Path) -> Result<(), CgroupError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| CgroupError::CreateDir {
            path: path.to_path_buf(),
            source,
        })
}

/// Child cgroup directories of `dir` (cgroup files are not directories).
pub(crate) fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let entries = fs::read_dir(dir).map_err(|source| CgroupError::ListDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CgroupError::ListDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// `dir` and every cgroup below it, deepest first: the order rmdir needs.
pub(crate) fn subtree_deepest_first(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut out = Vec::new();
    for child in child_dirs(dir)? {
        out.extend(subtree_deepest_first(&child)?);
    }
    out.push(dir.to_path_buf());
    Ok(out)
}

/// rmdir a cgroup and its sub-cgroups (a container with a writable cgroupfs
/// may have made some). A cgroup directory with only kernel files in it is
/// removed by rmdir; a fake tree in a test holds real files, so those are
/// removed first there (see `remove_plain_files`).
pub(crate) fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    if !dir.exists() {
        return Ok(());
    }
    for path in subtree_deepest_first(dir)? {
        remove_plain_files(&path);
        remove_dir_when_unpopulated(&path)
            .map_err(|source| CgroupError::RemoveDir { path, source })?;
    }
    Ok(())
}

/// rmdir each of `dirs` in order, stopping at the first refusal: true
/// when every one is gone. The kernel refuses a cgroup that still has a
/// task (EBUSY) or a sub-cgroup (EBUSY on v1, ENOTEMPTY on v2), so this is
/// also the cheapest test that nothing is left in it. Plain directories
/// (a unit test's fake tree) are never taken this way.
pub(crate) fn remove_if_empty(dirs: &[PathBuf]) -> bool {
    dirs.iter().all(|dir| {
        is_cgroupfs(dir)
            && match fs::remove_dir(dir) {
                Ok(()) => true,
                Err(e) => e.kind() == std::io::ErrorKind::NotFound,
            }
    })
}

/// How long tasks get to exit after SIGKILL (exit of a large process frees
/// its memory first; a loaded machine may be slow): the bound of the kill's
/// wait for an empty cgroup and of rmdir's wait for an unpopulated one.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(10);
/// The interval of those waits.
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// rmdir, retried on EBUSY: a task that was SIGKILLed has left cgroup.procs
/// as soon as it started exiting, but on cgroup2 the cgroup stays populated
/// until its exit is done, and rmdir refuses until then (runc retries the
/// same way). Any other error, or EBUSY past the bound, is returned.
fn remove_dir_when_unpopulated(path: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        match fs::remove_dir(path) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(POLL);
            }
            done => return done,
        }
    }
}

/// On a real cgroupfs rmdir ignores the interface files; on the plain
/// directories of a unit test's fake tree they must go first. Deleting a
/// cgroupfs interface file fails harmlessly (EPERM), so this is skipped by
/// checking the filesystem type instead of trying.
fn remove_plain_files(dir: &Path) {
    if is_cgroupfs(dir) {
        return;
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// True on cgroup (v1) or cgroup2 filesystems.
pub(crate) fn is_cgroupfs(path: &Path) -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    match statfs(path) {
        Ok(st) => {
            let kind = st.filesystem_type();
            kind == CGROUP_SUPER_MAGIC || kind == CGROUP2_SUPER_MAGIC
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_keyed_parse_finds_key_and_rejects_garbage() {
        let text = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(parse_keyed_u64(text, "oom_kill"), Ok(Some(3)));
        assert_eq!(parse_keyed_u64(text, "missing"), Ok(None));
        assert!(parse_keyed_u64("oom_kill x\n", "oom_kill").is_err());
        // "oom" must not match "oom_kill" (memory.events has both).
        assert_eq!(parse_keyed_u64("oom_kill 5\noom 7\n", "oom"), Ok(Some(7)));
    }

    #[test]
    fn cgroup_single_value_reads_max_as_unlimited() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        fs::write(dir.path().join("pids.max"), "max\n").expect("write");
        fs::write(dir.path().join("memory.max"), "33554432\n").expect("write");
        fs::write(dir.path().join("cpu.cfs_quota_us"), "-1\n").expect("write");
        assert_eq!(read_single_u64(dir.path(), "pids.max").expect("read"), None);
        assert_eq!(
            read_single_u64(dir.path(), "memory.max").expect("read"),
            Some(33_554_432)
        );
        assert_eq!(
            read_single_u64(dir.path(), "cpu.cfs_quota_us").expect("read"),
            None
        );
        assert_eq!(read_single_u64(dir.path(), "absent").expect("read"), None);
    }

    #[test]
    fn cgroup_write_error_names_value_and_path() {
        let err = write(Path::new("/nonexistent-isocheck"), "pids.max", "12").expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("write 12 to /nonexistent-isocheck/pids.max: "),
            "{text}"
        );
    }
}

//! The benches' own cgroup subtree, `isocheck/bench-<pid>` in every
//! hierarchy, handed to the OCI peers as their cgroupsPath parent and
//! removed afterwards: the peers clean up their own leaves, this removes
//! what they leave (a crashed run's leaves, the parents they created).

use std::path::{Path, PathBuf};

/// The cgroup filesystem root on the machine.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// `isocheck/bench-<tag>` in each hierarchy under a cgroup root.
#[derive(Debug)]
pub struct BenchCgroups {
    root: PathBuf,
    /// Path relative to each hierarchy root, e.g. `isocheck/bench-1234`.
    relative: PathBuf,
    /// Hierarchies whose `isocheck` parent did not exist before we started:
    /// only those parents are ours to remove.
    parents_we_may_create: Vec<PathBuf>,
}

impl BenchCgroups {
    pub fn new(root: &Path, tag: &str) -> Self {
        let parents_we_may_create = hierarchies(root)
            .into_iter()
            .map(|h| h.join("isocheck"))
            .filter(|parent| !parent.exists())
            .collect();
        BenchCgroups {
            root: root.to_path_buf(),
            relative: Path::new("isocheck").join(format!("bench-{tag}")),
            parents_we_may_create,
        }
    }

    /// The OCI cgroupsPath for one peer: `/isocheck/bench-<tag>/<leaf>`.
    pub fn oci_path(&self, leaf: &str) -> String {
        format!("/{}/{leaf}", self.relative.display())
    }

    /// rmdir our subtree in every hierarchy (deepest first), then the
    /// `isocheck` parents we created if they are empty. Keeps going past
    /// errors and returns them all.
    pub fn remove(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for hierarchy in hierarchies(&self.root) {
            let ours = hierarchy.join(&self.relative);
            if ours.exists() {
                rmdir_tree(&ours, &mut errors);
            }
        }
        for parent in &self.parents_we_may_create {
            // Another run may have started using it since: then it is not
            // empty (EBUSY/ENOTEMPTY) and stays.
            let _ = std::fs::remove_dir(parent);
        }
        errors
    }

    /// Directories of ours still present, for the leftover check.
    pub fn leftovers(&self) -> Vec<PathBuf> {
        hierarchies(&self.root)
            .into_iter()
            .map(|h| h.join(&self.relative))
            .filter(|p| p.exists())
            .collect()
    }
}

/// Each mounted hierarchy directory under the cgroup root (cpu, memory,
/// unified...). Symlinks (cpu,cpuacct aliases) are skipped so nothing is
/// visited twice.
fn hierarchies(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// cgroup directories are removed with rmdir alone (their control files go
/// with them), children first.
fn rmdir_tree(dir: &Path, errors: &mut Vec<String>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&entry.path(), errors);
            }
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        errors.push(format!("rmdir {}: {e}", dir.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_our_subtree_everywhere_and_only_parents_we_created() {
        let root = tempfile::tempdir().expect("tempdir");
        let memory = root.path().join("memory");
        let pids = root.path().join("pids");
        std::fs::create_dir_all(memory.join("isocheck/someone-else")).expect("mkdir");
        std::fs::create_dir_all(&pids).expect("mkdir");

        let cgroups = BenchCgroups::new(root.path(), "42");
        assert_eq!(cgroups.oci_path("runc"), "/isocheck/bench-42/runc");
        // What runc would create under cgroupsPath in each hierarchy.
        std::fs::create_dir_all(memory.join("isocheck/bench-42/runc")).expect("mkdir");
        std::fs::create_dir_all(pids.join("isocheck/bench-42/runc")).expect("mkdir");
        assert_eq!(cgroups.leftovers().len(), 2);

        assert!(cgroups.remove().is_empty());
        assert!(cgroups.leftovers().is_empty());
        // memory/isocheck existed before and holds someone else's group.
        assert!(memory.join("isocheck/someone-else").is_dir());
        // pids/isocheck was created by "runc" during our run: removed.
        assert!(!pids.join("isocheck").exists());
    }
}

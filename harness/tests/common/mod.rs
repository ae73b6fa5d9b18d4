//! What the privileged CLI tests share: finding a run's resources by the
//! owner records its process wrote (runs of other people go on beside ours).
#![allow(dead_code)]

use isocheck_runtime::owner::{self, Owner};
use std::path::{Path, PathBuf};

/// The temp dirs and cgroups (every hierarchy) whose owner record names
/// `pid`, and the cgroup owner records themselves.
pub fn resources_of(pid: u32) -> Vec<PathBuf> {
    let pid = pid as i32;
    let mut found = Vec::new();
    let entries = isocheck_runtime::rootfs::temp_bases()
        .into_iter()
        .flat_map(|base| std::fs::read_dir(base).unwrap().flatten());
    for e in entries {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with("isocheck-")
            && owner::dir_owner(&p).is_ok_and(|o| o.pid == pid)
        {
            found.push(p);
        }
    }
    let records = Path::new("/").join(owner::CGROUP_RECORDS);
    let mut names = Vec::new();
    for e in std::fs::read_dir(&records).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if Owner::read(&e.path(), &name).is_ok_and(|o| o.pid == pid) {
            found.push(e.path());
            names.push(name);
        }
    }
    for parent in cgroup_parents() {
        for name in &names {
            let dir = parent.join(name);
            if dir.is_dir() {
                found.push(dir);
            }
        }
    }
    found
}

/// Our `isocheck` parent in every hierarchy (v2: /sys/fs/cgroup/isocheck).
pub fn cgroup_parents() -> Vec<PathBuf> {
    let mut parents = vec![PathBuf::from("/sys/fs/cgroup/isocheck")];
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        parents.push(h.path().join("isocheck"));
    }
    parents
}

/// Cgroup directories among `resources`.
pub fn cgroups(resources: &[PathBuf]) -> usize {
    resources
        .iter()
        .filter(|p| p.starts_with("/sys/fs/cgroup"))
        .count()
}

/// Mount points at or below any of `dirs`, in every mount namespace on the
/// machine (one process's view of each), with the pid they were seen from.
pub fn mounts_under(dirs: &[PathBuf]) -> Vec<String> {
    let mut seen_ns = std::collections::BTreeSet::new();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let Ok(ns) = std::fs::read_link(e.path().join("ns/mnt")) else {
            continue;
        };
        if !seen_ns.insert(ns) {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(e.path().join("mountinfo")) else {
            continue;
        };
        for point in info.lines().filter_map(|l| l.split(' ').nth(4)) {
            if dirs.iter().any(|d| Path::new(point).starts_with(d)) {
                found.push(format!("{point} (seen from pid {name})"));
            }
        }
    }
    found
}

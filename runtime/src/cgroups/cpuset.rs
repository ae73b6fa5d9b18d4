//! cpuset controller: pin tasks to cpus and memory nodes.
//!
//! v1 quirk: a new cpuset cgroup starts with empty cpuset.cpus and
//! cpuset.mems, and the kernel refuses tasks (ENOSPC) until both are set. So
//! every cpuset directory we make — the shared `isocheck` parent included —
//! is seeded from its parent first (`inherit_from_parent`), then the limit is
//! written. v2 cgroups inherit the parent's effective set, nothing to seed.

use std::path::Path;

use super::{fs, CgroupError, ControllerDir, Version};
use crate::spec::CpuSet;

const FILES: [&str; 2] = ["cpuset.cpus", "cpuset.mems"];

/// v1: copy cpus and mems from the parent directory where still empty.
pub(crate) fn inherit_from_parent(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in FILES {
        if !fs::read(dir, file)?.trim().is_empty() {
            continue;
        }
        let value = fs::read(parent, file)?;
        let value = value.trim();
        if !value.is_empty() {
            fs::write(dir, file, value)?;
        }
    }
    Ok(())
}

pub(crate) fn apply(dir: &ControllerDir, set: &CpuSet) -> Result<(), CgroupError> {
    if dir.version == Version::V1 {
        inherit_from_parent(&dir.path)?;
    }
    if let Some(mems) = &set.mems {
        fs::write(&dir.path, "cpuset.mems", mems)?;
    }
    fs::write(&dir.path, "cpuset.cpus", &set.cpus)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, write_files};
    use super::*;
    use std::fs::read_to_string;

    #[test]
    fn cgroup_cpuset_v1_seeds_mems_from_parent_then_writes_cpus() {
        let tmp = tempfile::Builder::new()
            .prefix("isocheck-")
            .tempdir()
            .expect("tempdir");
        write_files(
            tmp.path(),
            &[("cpuset.cpus", "0-1\n"), ("cpuset.mems", "0\n")],
        );
        let child = tmp.path().join("c");
        std::fs::create_dir(&child).expect("mkdir");
        write_files(&child, &[("cpuset.cpus", "\n"), ("cpuset.mems", "\n")]);
        let set = CpuSet {
            cpus: "1".into(),
            mems: None,
        };
        apply(
            &ControllerDir {
                path: child.clone(),
                version: Version::V1,
            },
            &set,
        )
        .expect("apply");
        assert_eq!(
            read_to_string(child.join("cpuset.cpus")).expect("read"),
            "1"
        );
        assert_eq!(
            read_to_string(child.join("cpuset.mems")).expect("read"),
            "0"
        );
    }

    #[test]
    fn cgroup_cpuset_v2_writes_cpus_and_mems_when_given() {
        let tmp = super::super::testing::fake_dir(&[("cpuset.cpus", ""), ("cpuset.mems", "")]);
        let set = CpuSet {
            cpus: "0".into(),
            mems: Some("0".into()),
        };
        apply(&dir_of(&tmp, Version::V2), &set).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("cpuset.cpus")).expect("read"),
            "0"
        );
        assert_eq!(
            read_to_string(tmp.path().join("cpuset.mems")).expect("read"),
            "0"
        );
    }
}

//! pids controller: a cap on tasks, and how often a fork hit it.
//!
//! Same files on v1 and v2: pids.max, pids.current, and pids.events `max`
//! (the number of forks refused at the limit; v1 has had pids.events since
//! 4.x — present on this 6.18 host).

use super::{fs, CgroupError, CgroupStats, ControllerDir};

pub(crate) fn apply(dir: &ControllerDir, max: u64) -> Result<(), CgroupError> {
    fs::write(&dir.path, "pids.max", &max.to_string())
}

pub(crate) fn stats(dir: &ControllerDir, out: &mut CgroupStats) -> Result<(), CgroupError> {
    out.pids_current = fs::read_single_u64(&dir.path, "pids.current")?;
    out.pids_limit_hits = fs::read_keyed_u64(&dir.path, "pids.events", "max")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::super::Version;
    use super::*;

    #[test]
    fn cgroup_pids_apply_and_stats_on_both_versions() {
        for version in [Version::V1, Version::V2] {
            let tmp = fake_dir(&[
                ("pids.max", "max\n"),
                ("pids.current", "16\n"),
                ("pids.events", "max 37\n"),
            ]);
            let dir = dir_of(&tmp, version);
            apply(&dir, 16).expect("apply");
            assert_eq!(
                std::fs::read_to_string(tmp.path().join("pids.max")).expect("read"),
                "16"
            );
            let mut s = CgroupStats::default();
            stats(&dir, &mut s).expect("stats");
            assert_eq!((s.pids_current, s.pids_limit_hits), (Some(16), Some(37)));
        }
    }
}

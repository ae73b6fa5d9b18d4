//! memory controller: a hard limit with swap switched off, and the evidence
//! (OOM kills, peak usage) read back.
//!
//! v2: memory.max, memory.swap.max = 0; memory.events `oom`/`oom_kill`,
//! memory.peak (6.2+). v1: memory.limit_in_bytes, then
//! memory.memsw.limit_in_bytes to the same value (memsw must never be below
//! the plain limit, so the plain limit goes first; the file is absent
//! without swap accounting), memory.swappiness = 0; memory.oom_control
//! `oom_kill` (4.13+), memory.max_usage_in_bytes.

use super::{fs, CgroupError, CgroupStats, ControllerDir, Version};

/// v1 reports "unlimited" as the page counter's maximum (close to 2^63).
const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

pub(crate) fn apply(dir: &ControllerDir, limit_bytes: u64) -> Result<(), CgroupError> {
    let value = limit_bytes.to_string();
    match dir.version {
        Version::V2 => {
            fs::write(&dir.path, "memory.max", &value)?;
            if dir.path.join("memory.swap.max").exists() {
                fs::write(&dir.path, "memory.swap.max", "0")?;
            }
        }
        Version::V1 => {
            fs::write(&dir.path, "memory.limit_in_bytes", &value)?;
            if dir.path.join("memory.memsw.limit_in_bytes").exists() {
                fs::write(&dir.path, "memory.memsw.limit_in_bytes", &value)?;
            }
            if dir.path.join("memory.swappiness").exists() {
                fs::write(&dir.path, "memory.swappiness", "0")?;
            }
        }
    }
    Ok(())
}

pub(crate) fn stats(dir: &ControllerDir, out: &mut CgroupStats) -> Result<(), CgroupError> {
    let path = &dir.path;
    match dir.version {
        Version::V2 => {
            out.oom_kills = fs::read_keyed_u64(path, "memory.events", "oom_kill")?;
            out.oom_events = fs::read_keyed_u64(path, "memory.events", "oom")?;
            out.memory_peak_bytes = fs::read_single_u64(path, "memory.peak")?;
            out.memory_limit_bytes = fs::read_single_u64(path, "memory.max")?;
        }
        Version::V1 => {
            out.oom_kills = fs::read_keyed_u64(path, "memory.oom_control", "oom_kill")?;
            // v1 has no count of OOM events apart from the kills.
            out.oom_events = None;
            out.memory_peak_bytes = fs::read_single_u64(path, "memory.max_usage_in_bytes")?;
            out.memory_limit_bytes = fs::read_single_u64(path, "memory.limit_in_bytes")?
                .filter(|&v| v < V1_UNLIMITED_FLOOR);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::*;
    use std::fs::read_to_string;

    #[test]
    fn cgroup_memory_v2_apply_writes_max_and_no_swap() {
        let tmp = fake_dir(&[("memory.max", "max\n"), ("memory.swap.max", "max\n")]);
        let dir = dir_of(&tmp, Version::V2);
        apply(&dir, 32 << 20).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("memory.max")).expect("read"),
            "33554432"
        );
        assert_eq!(
            read_to_string(tmp.path().join("memory.swap.max")).expect("read"),
            "0"
        );
    }

    #[test]
    fn cgroup_memory_v1_apply_writes_limit_memsw_and_swappiness() {
        let tmp = fake_dir(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
        ]);
        let dir = dir_of(&tmp, Version::V1);
        apply(&dir, 64 << 20).expect("apply");
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            assert_eq!(
                read_to_string(tmp.path().join(file)).expect("read"),
                "67108864"
            );
        }
        assert_eq!(
            read_to_string(tmp.path().join("memory.swappiness")).expect("read"),
            "0"
        );
    }

    #[test]
    fn cgroup_memory_v1_apply_without_swap_accounting_skips_memsw() {
        let tmp = fake_dir(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        apply(&dir_of(&tmp, Version::V1), 4096).expect("apply");
        assert!(!tmp.path().join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn cgroup_memory_v2_stats_parse_real_formats() {
        let tmp = fake_dir(&[
            (
                "memory.events",
                "low 0\nhigh 0\nmax 112\noom 2\noom_kill 1\noom_group_kill 0\n",
            ),
            ("memory.peak", "33554432\n"),
            ("memory.max", "33554432\n"),
        ]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V2), &mut s).expect("stats");
        assert_eq!(s.oom_kills, Some(1));
        assert_eq!(s.oom_events, Some(2));
        assert_eq!(s.memory_peak_bytes, Some(33_554_432));
        assert_eq!(s.memory_limit_bytes, Some(33_554_432));
    }

    #[test]
    fn cgroup_memory_v1_stats_parse_real_formats() {
        let tmp = fake_dir(&[
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
            ),
            ("memory.max_usage_in_bytes", "33505280\n"),
            ("memory.limit_in_bytes", "9223372036854771712\n"),
        ]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V1), &mut s).expect("stats");
        assert_eq!(s.oom_kills, Some(4));
        assert_eq!(s.oom_events, None);
        assert_eq!(s.memory_peak_bytes, Some(33_505_280));
        assert_eq!(s.memory_limit_bytes, None, "v1 unlimited reads as None");
    }
}

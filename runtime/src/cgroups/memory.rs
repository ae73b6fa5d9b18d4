//! memory controller: a hard limit, swap beside it (none by default),
//! memory.high and group OOM on v2, and the evidence read back.
//!
//! v2: memory.max, memory.swap.max (absent without swap accounting),
//! memory.high, memory.oom.group; memory.events `high`/`oom`/`oom_kill`/
//! `oom_group_kill`, memory.current, memory.peak (6.2+), memory.swap.current
//! and memory.swap.peak (6.5+). v1: memory.limit_in_bytes, then
//! memory.memsw.limit_in_bytes = limit + swap (memsw must never be below the
//! plain limit, so the plain limit goes first; the file is absent without
//! swap accounting, and only then memory.swappiness = 0 forbids swap);
//! memory.oom_control `oom_kill` (4.13+), memory.max_usage_in_bytes,
//! memory.usage_in_bytes, memory.stat `swap`. v1 has no memory.high and no
//! group OOM: asking for either there is refused, never silently dropped.

use super::{fs, CgroupError, CgroupStats, ControllerDir, Version};
use crate::spec::Limits;

/// v1 reports "unlimited" as the page counter's maximum (close to 2^63).
const V1_UNLIMITED_FLOOR: u64 = 1 << 62;

/// Whether `limits` asks anything of the memory controller.
pub(crate) fn wanted(limits: &Limits) -> bool {
    limits.memory_bytes.is_some() || limits.memory_high_bytes.is_some() || limits.oom_group
}

pub(crate) fn apply(dir: &ControllerDir, limits: &Limits) -> Result<(), CgroupError> {
    match dir.version {
        Version::V2 => apply_v2(dir, limits),
        Version::V1 => apply_v1(dir, limits, swap_on()),
    }
}

fn apply_v2(dir: &ControllerDir, limits: &Limits) -> Result<(), CgroupError> {
    let path = &dir.path;
    if let Some(max) = limits.memory_bytes {
        fs::write(path, "memory.max", &max.to_string())?;
        if path.join("memory.swap.max").exists() {
            fs::write(path, "memory.swap.max", &limits.swap_bytes.to_string())?;
        }
    }
    if let Some(high) = limits.memory_high_bytes {
        fs::write(path, "memory.high", &high.to_string())?;
    }
    if limits.oom_group {
        fs::write(path, "memory.oom.group", "1")?;
    }
    Ok(())
}

/// `swap_on`: whether any swap is on now (memsw is written only then).
fn apply_v1(dir: &ControllerDir, limits: &Limits, swap_on: bool) -> Result<(), CgroupError> {
    let path = &dir.path;
    if limits.memory_high_bytes.is_some() {
        return Err(v1_lacks("memory.high", "limits.memory_high_bytes"));
    }
    if limits.oom_group {
        return Err(v1_lacks("memory.oom.group", "limits.oom_group"));
    }
    let Some(max) = limits.memory_bytes else {
        return Ok(());
    };
    fs::write(path, "memory.limit_in_bytes", &max.to_string())?;
    // One mechanism per host, so each is the one that holds (and a removed
    // one shows): memsw where swap is accounted and some swap is on;
    // otherwise swappiness 0, which stops memcg reclaim from swapping anon
    // pages but cannot cap an amount (swap allowed is then unlimited). With
    // no swap on, memsw would only be a second memory limit at the same
    // value, hit first (the kernel charges memsw before memory), so the
    // memory limit itself could be gone and nothing would show it.
    if path.join("memory.memsw.limit_in_bytes").exists() && swap_on {
        let memsw = max.saturating_add(limits.swap_bytes);
        fs::write(path, "memory.memsw.limit_in_bytes", &memsw.to_string())?;
    } else if limits.swap_bytes == 0 && path.join("memory.swappiness").exists() {
        fs::write(path, "memory.swappiness", "0")?;
    }
    Ok(())
}

/// Total size of the swap areas listed in /proc/swaps text, in KiB.
pub fn swap_kib(proc_swaps: &str) -> u64 {
    proc_swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum()
}

/// Whether any swap is on now (an unreadable /proc/swaps counts as some,
/// so the swap cap is kept).
fn swap_on() -> bool {
    std::fs::read_to_string("/proc/swaps").map_or(true, |t| swap_kib(&t) > 0)
}

fn v1_lacks(file: &'static str, needed_for: &'static str) -> CgroupError {
    CgroupError::NotInV1 { file, needed_for }
}

pub(crate) fn stats(dir: &ControllerDir, out: &mut CgroupStats) -> Result<(), CgroupError> {
    let path = &dir.path;
    match dir.version {
        Version::V2 => {
            out.oom_kills = fs::read_keyed_u64(path, "memory.events", "oom_kill")?;
            out.oom_events = fs::read_keyed_u64(path, "memory.events", "oom")?;
            out.oom_group_kills = fs::read_keyed_u64(path, "memory.events", "oom_group_kill")?;
            out.memory_high_events = fs::read_keyed_u64(path, "memory.events", "high")?;
            out.memory_current_bytes = fs::read_single_u64(path, "memory.current")?;
            out.memory_peak_bytes = fs::read_single_u64(path, "memory.peak")?;
            out.memory_limit_bytes = fs::read_single_u64(path, "memory.max")?;
            out.memory_high_bytes = fs::read_single_u64(path, "memory.high")?;
            out.swap_bytes = fs::read_single_u64(path, "memory.swap.current")?;
            out.swap_peak_bytes = fs::read_single_u64(path, "memory.swap.peak")?;
        }
        Version::V1 => {
            out.oom_kills = fs::read_keyed_u64(path, "memory.oom_control", "oom_kill")?;
            // v1 has no count of OOM events apart from the kills, no
            // memory.high and no group OOM.
            out.oom_events = None;
            out.memory_current_bytes = fs::read_single_u64(path, "memory.usage_in_bytes")?;
            out.memory_peak_bytes = fs::read_single_u64(path, "memory.max_usage_in_bytes")?;
            out.memory_limit_bytes = fs::read_single_u64(path, "memory.limit_in_bytes")?
                .filter(|&v| v < V1_UNLIMITED_FLOOR);
            // Present only with swap accounting.
            out.swap_bytes = fs::read_keyed_u64(path, "memory.stat", "swap")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::*;
    use std::fs::read_to_string;

    fn max(bytes: u64) -> Limits {
        Limits {
            memory_bytes: Some(bytes),
            ..Limits::default()
        }
    }

    #[test]
    fn cgroup_memory_v2_apply_writes_swap_high_and_oom_group() {
        let tmp = fake_dir(&[
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.oom.group", "0\n"),
        ]);
        let limits = Limits {
            swap_bytes: 16 << 20,
            memory_high_bytes: Some(8 << 20),
            oom_group: true,
            ..max(32 << 20)
        };
        apply(&dir_of(&tmp, Version::V2), &limits).expect("apply");
        for (file, want) in [
            ("memory.max", "33554432"),
            ("memory.swap.max", "16777216"),
            ("memory.high", "8388608"),
            ("memory.oom.group", "1"),
        ] {
            assert_eq!(
                read_to_string(tmp.path().join(file)).expect("read"),
                want,
                "{file}"
            );
        }
    }

    #[test]
    fn cgroup_memory_v2_defaults_leave_high_and_oom_group_alone() {
        let tmp = fake_dir(&[
            ("memory.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.oom.group", "0\n"),
        ]);
        apply(&dir_of(&tmp, Version::V2), &max(1 << 20)).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("memory.high")).expect("read"),
            "max\n"
        );
        assert_eq!(
            read_to_string(tmp.path().join("memory.oom.group")).expect("read"),
            "0\n"
        );
    }

    #[test]
    fn cgroup_memory_v1_refuses_high_and_oom_group_by_name() {
        let tmp = fake_dir(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        let high = Limits {
            memory_high_bytes: Some(1 << 20),
            ..max(4 << 20)
        };
        let e = apply(&dir_of(&tmp, Version::V1), &high).expect_err("v1 has none");
        assert_eq!(
            e.to_string(),
            "cgroup v1 has no memory.high (needed for limits.memory_high_bytes)"
        );
        let group = Limits {
            oom_group: true,
            ..max(4 << 20)
        };
        let e = apply(&dir_of(&tmp, Version::V1), &group).expect_err("v1 has none");
        assert!(e.to_string().contains("memory.oom.group"), "{e}");
    }

    #[test]
    fn cgroup_memory_v1_swap_allowed_raises_memsw_and_keeps_swappiness() {
        let tmp = fake_dir(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
        ]);
        let limits = Limits {
            swap_bytes: 8 << 20,
            ..max(32 << 20)
        };
        apply_v1(&dir_of(&tmp, Version::V1), &limits, true).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("memory.memsw.limit_in_bytes")).expect("read"),
            (40u64 << 20).to_string()
        );
        assert_eq!(
            read_to_string(tmp.path().join("memory.swappiness")).expect("read"),
            "60\n"
        );
    }

    #[test]
    fn cgroup_memory_v2_apply_writes_max_and_no_swap() {
        let tmp = fake_dir(&[("memory.max", "max\n"), ("memory.swap.max", "max\n")]);
        let dir = dir_of(&tmp, Version::V2);
        apply(&dir, &max(32 << 20)).expect("apply");
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
    fn cgroup_memory_v1_without_swap_accounting_falls_back_to_swappiness() {
        let tmp = fake_dir(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
        ]);
        apply(&dir_of(&tmp, Version::V1), &max(64 << 20)).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("memory.swappiness")).expect("read"),
            "0"
        );
    }

    #[test]
    fn cgroup_memory_v1_apply_writes_limit_and_memsw_only() {
        let tmp = fake_dir(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
        ]);
        let dir = dir_of(&tmp, Version::V1);
        apply_v1(&dir, &max(64 << 20), true).expect("apply");
        for file in ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"] {
            assert_eq!(
                read_to_string(tmp.path().join(file)).expect("read"),
                "67108864"
            );
        }
        assert_eq!(
            read_to_string(tmp.path().join("memory.swappiness")).expect("read"),
            "60\n",
            "memsw holds swap at 0; swappiness is the fallback only"
        );
    }

    #[test]
    fn cgroup_memory_v1_with_no_swap_on_leaves_memsw_and_uses_swappiness() {
        let tmp = fake_dir(&[
            ("memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory.memsw.limit_in_bytes", "9223372036854771712\n"),
            ("memory.swappiness", "60\n"),
        ]);
        apply_v1(&dir_of(&tmp, Version::V1), &max(64 << 20), false).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("memory.memsw.limit_in_bytes")).expect("read"),
            "9223372036854771712\n",
            "no second memory limit beside limit_in_bytes"
        );
        assert_eq!(
            read_to_string(tmp.path().join("memory.swappiness")).expect("read"),
            "0"
        );
    }

    #[test]
    fn swap_kib_sums_the_areas_of_proc_swaps() {
        let text = "Filename\tType\tSize\tUsed\tPriority\n/dev/zram0 partition 262140 0 -2\n/swapfile file 1024 0 -3\n";
        assert_eq!(swap_kib(text), 263_164);
        assert_eq!(swap_kib("Filename\tType\tSize\tUsed\tPriority\n"), 0);
    }

    #[test]
    fn cgroup_memory_v1_apply_without_swap_accounting_skips_memsw() {
        let tmp = fake_dir(&[("memory.limit_in_bytes", "9223372036854771712\n")]);
        apply(&dir_of(&tmp, Version::V1), &max(4096)).expect("apply");
        assert!(!tmp.path().join("memory.memsw.limit_in_bytes").exists());
    }

    #[test]
    fn cgroup_memory_v2_stats_parse_real_formats() {
        let tmp = fake_dir(&[
            (
                "memory.events",
                "low 0\nhigh 17\nmax 112\noom 2\noom_kill 1\noom_group_kill 3\n",
            ),
            ("memory.peak", "33554432\n"),
            ("memory.max", "33554432\n"),
            ("memory.high", "8388608\n"),
            ("memory.current", "8400000\n"),
            ("memory.swap.current", "0\n"),
        ]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V2), &mut s).expect("stats");
        assert_eq!(s.memory_high_events, Some(17));
        assert_eq!(s.oom_group_kills, Some(3));
        assert_eq!(s.memory_current_bytes, Some(8_400_000));
        assert_eq!(s.memory_high_bytes, Some(8 << 20));
        assert_eq!(
            (s.swap_bytes, s.swap_peak_bytes),
            (Some(0), None),
            "no swap.peak before 6.5"
        );
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
            ("memory.usage_in_bytes", "1232896\n"),
            ("memory.stat", "cache 0\nrss 1232896\nswap 4096\n"),
        ]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V1), &mut s).expect("stats");
        assert_eq!(s.memory_current_bytes, Some(1_232_896));
        assert_eq!(s.swap_bytes, Some(4096));
        assert_eq!((s.memory_high_events, s.oom_group_kills), (None, None));
        assert_eq!(s.oom_kills, Some(4));
        assert_eq!(s.oom_events, None);
        assert_eq!(s.memory_peak_bytes, Some(33_505_280));
        assert_eq!(s.memory_limit_bytes, None, "v1 unlimited reads as None");
    }
}

//! cpu controller: a CFS bandwidth quota, a weight, and the evidence
//! (throttled periods and time, usage).
//!
//! Weight: v2 cpu.weight (1..=10000, default 100); v1 cpu.shares (default
//! 1024), mapped as weight * 1024 / 100 so the default is the default and
//! ratios between weights are kept (100:300 → 1024:3072).
//!
//! v2: cpu.max "quota period"; cpu.stat nr_periods, nr_throttled,
//! throttled_usec, usage_usec (usage_usec is there even without the cpu
//! controller enabled). v1: cpu.cfs_period_us then cpu.cfs_quota_us; cpu.stat
//! nr_periods, nr_throttled, throttled_time (ns); usage from cpuacct.usage
//! (ns) in the cpuacct hierarchy, which is either its own mount or co-mounted
//! with cpu ("cpu,cpuacct") — the caller passes whichever directory it is.

use std::path::Path;

use super::{fs, CgroupError, CgroupStats, ControllerDir, Version};
use crate::spec::CpuQuota;

pub(crate) fn apply(dir: &ControllerDir, quota: &CpuQuota) -> Result<(), CgroupError> {
    match dir.version {
        Version::V2 => fs::write(
            &dir.path,
            "cpu.max",
            &format!("{} {}", quota.quota_us, quota.period_us),
        ),
        Version::V1 => {
            // The period first: the kernel checks the quota against it.
            fs::write(&dir.path, "cpu.cfs_period_us", &quota.period_us.to_string())?;
            fs::write(&dir.path, "cpu.cfs_quota_us", &quota.quota_us.to_string())
        }
    }
}

/// v1 cpu.shares for a v2 weight: 1024 per 100, at least the kernel's 2.
pub(crate) fn shares_of_weight(weight: u64) -> u64 {
    (weight.saturating_mul(1024) / 100).max(2)
}

pub(crate) fn apply_weight(dir: &ControllerDir, weight: u64) -> Result<(), CgroupError> {
    match dir.version {
        Version::V2 => fs::write(&dir.path, "cpu.weight", &weight.to_string()),
        Version::V1 => fs::write(
            &dir.path,
            "cpu.shares",
            &shares_of_weight(weight).to_string(),
        ),
    }
}

/// `cpuacct` is the v1 cpuacct directory (may equal `dir.path`); unused on v2.
pub(crate) fn stats(
    dir: &ControllerDir,
    cpuacct: Option<&Path>,
    out: &mut CgroupStats,
) -> Result<(), CgroupError> {
    let path = &dir.path;
    out.nr_periods = fs::read_keyed_u64(path, "cpu.stat", "nr_periods")?;
    out.nr_throttled = fs::read_keyed_u64(path, "cpu.stat", "nr_throttled")?;
    match dir.version {
        Version::V2 => {
            out.throttled_usec = fs::read_keyed_u64(path, "cpu.stat", "throttled_usec")?;
            out.cpu_usage_usec = fs::read_keyed_u64(path, "cpu.stat", "usage_usec")?;
        }
        Version::V1 => {
            out.throttled_usec =
                fs::read_keyed_u64(path, "cpu.stat", "throttled_time")?.map(|ns| ns / 1000);
            out.cpu_usage_usec = match cpuacct {
                Some(acct) => fs::read_single_u64(acct, "cpuacct.usage")?.map(|ns| ns / 1000),
                None => None,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::*;
    use std::fs::read_to_string;

    const QUOTA: CpuQuota = CpuQuota {
        quota_us: 20_000,
        period_us: 100_000,
    };

    #[test]
    fn cgroup_cpu_v2_apply_writes_quota_and_period() {
        let tmp = fake_dir(&[("cpu.max", "max 100000\n")]);
        apply(&dir_of(&tmp, Version::V2), &QUOTA).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("cpu.max")).expect("read"),
            "20000 100000"
        );
    }

    #[test]
    fn cgroup_cpu_v1_apply_writes_period_and_quota() {
        let tmp = fake_dir(&[
            ("cpu.cfs_period_us", "100000\n"),
            ("cpu.cfs_quota_us", "-1\n"),
        ]);
        apply(&dir_of(&tmp, Version::V1), &QUOTA).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("cpu.cfs_period_us")).expect("read"),
            "100000"
        );
        assert_eq!(
            read_to_string(tmp.path().join("cpu.cfs_quota_us")).expect("read"),
            "20000"
        );
    }

    #[test]
    fn cgroup_cpu_weight_v2_and_v1_shares() {
        let tmp = fake_dir(&[("cpu.weight", "100\n"), ("cpu.shares", "1024\n")]);
        apply_weight(&dir_of(&tmp, Version::V2), 300).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("cpu.weight")).expect("read"),
            "300"
        );
        apply_weight(&dir_of(&tmp, Version::V1), 300).expect("apply");
        assert_eq!(
            read_to_string(tmp.path().join("cpu.shares")).expect("read"),
            "3072"
        );
        assert_eq!(
            shares_of_weight(100),
            1024,
            "the default maps to the default"
        );
        assert_eq!(shares_of_weight(1), 10);
        assert_eq!(shares_of_weight(10_000), 102_400);
    }

    #[test]
    fn cgroup_cpu_v2_stats_parse_real_format() {
        let tmp = fake_dir(&[(
            "cpu.stat",
            "usage_usec 412345\nuser_usec 400000\nsystem_usec 12345\nnice_usec 0\n\
             core_sched.force_idle_usec 0\nnr_periods 21\nnr_throttled 19\n\
             throttled_usec 1601234\nnr_bursts 0\nburst_usec 0\n",
        )]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V2), None, &mut s).expect("stats");
        assert_eq!(s.cpu_usage_usec, Some(412_345));
        assert_eq!((s.nr_periods, s.nr_throttled), (Some(21), Some(19)));
        assert_eq!(s.throttled_usec, Some(1_601_234));
    }

    #[test]
    fn cgroup_cpu_v2_stats_without_cpu_controller_has_usage_only() {
        // The unified hierarchy of this host: no cpu controller enabled.
        let tmp = fake_dir(&[(
            "cpu.stat",
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnice_usec 0\n",
        )]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&tmp, Version::V2), None, &mut s).expect("stats");
        assert_eq!(s.cpu_usage_usec, Some(1500));
        assert_eq!(
            (s.nr_periods, s.nr_throttled, s.throttled_usec),
            (None, None, None)
        );
    }

    #[test]
    fn cgroup_cpu_v1_stats_convert_nanoseconds() {
        let cpu = fake_dir(&[(
            "cpu.stat",
            "nr_periods 20\nnr_throttled 18\nthrottled_time 1598765432\nnr_bursts 0\nburst_time 0\n",
        )]);
        let acct = fake_dir(&[("cpuacct.usage", "401234567\n")]);
        let mut s = CgroupStats::default();
        stats(&dir_of(&cpu, Version::V1), Some(acct.path()), &mut s).expect("stats");
        assert_eq!((s.nr_periods, s.nr_throttled), (Some(20), Some(18)));
        assert_eq!(s.throttled_usec, Some(1_598_765));
        assert_eq!(s.cpu_usage_usec, Some(401_234));
    }
}

//! Waiting for the kernel to finish what earlier benches left it before
//! the next group is timed. Namespaces, veths, cgroups and mounts are torn
//! down partly in the background (network namespaces by a workqueue, memory
//! cgroups offlined later, RCU callbacks), and on two cores that work ran
//! into whatever came next: `start/full` measured 3.6 ms alone and 10 to
//! 14 ms after the groups before it in one run. Every group, the floor's
//! included, starts on an idle machine instead.

use std::time::{Duration, Instant};

/// Busy and total jiffies of all CPUs, from /proc/stat's `cpu` line
/// (idle and iowait count as idle).
pub fn cpu_times(proc_stat: &str) -> Option<(u64, u64)> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = fields.iter().sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn sample() -> Option<(u64, u64)> {
    cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Share of CPU time busy between two samples.
pub fn busy_share(before: (u64, u64), after: (u64, u64)) -> f64 {
    let total = after.1.saturating_sub(before.1);
    if total == 0 {
        return 0.0;
    }
    after.0.saturating_sub(before.0) as f64 / total as f64
}

/// Returns once a 250 ms window has the CPUs at most 5 % busy, or after
/// `max` (then `Err` with the last window's busy share).
pub fn settle(max: Duration) -> Result<Duration, f64> {
    let start = Instant::now();
    let mut before = sample().ok_or(1.0)?;
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let after = sample().ok_or(1.0)?;
        let busy = busy_share(before, after);
        if busy <= 0.05 {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= max {
            return Err(busy);
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_times_counts_idle_and_iowait_as_idle() {
        let stat = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 50 0 25 400 25 0 0 0 0 0\n";
        assert_eq!(cpu_times(stat), Some((150, 1000)));
        assert_eq!(cpu_times("intr 1 2\n"), None);
    }

    #[test]
    fn busy_share_is_the_busy_part_of_the_window() {
        assert_eq!(busy_share((150, 1000), (200, 1100)), 0.5);
        assert_eq!(busy_share((150, 1000), (150, 1000)), 0.0);
    }
}

//! Measurements of a running container from the host side, over windows of
//! wall-clock time, for the interactions that need them (pause/resume, CPU
//! weight). Only the kernel's own counters are used (the cgroup's CPU
//! usage); a counter that cannot be read is an error, never a zero.

use isocheck_runtime::Container;
use serde_json::{json, Map, Value};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    #[error("the container's cgroup CPU usage could not be read")]
    NoUsage,
    #[error("{step}: {source}")]
    Container {
        step: &'static str,
        source: isocheck_runtime::Error,
    },
    #[error("{step}: {message}")]
    Runtime { step: &'static str, message: String },
    #[error("the twin used no CPU in the window (this one {0} ms)")]
    IdleTwin(f64),
}

/// Length of each pause/resume window. Two burners use about 2 CPU-ms per
/// ms running and 0 frozen, against thresholds of 50 ms and 5 ms: 250 ms
/// keeps both verdicts an order of magnitude clear (`--repeat` margins in
/// the commit that set it).
pub const WINDOW: Duration = Duration::from_millis(250);
/// The window over which two burners' usage is compared (`usage_ratio`):
/// long enough for the scheduler's shares to average out well inside the
/// 15% tolerance.
pub const RATIO_WINDOW: Duration = Duration::from_millis(600);
/// Time given to burners to be running before the first reading.
const SETTLE: Duration = Duration::from_millis(100);
/// Time a burner under a CPU quota runs before the first reading: the quota
/// of the period it starts in, fresh after its idle wait, is spent by then.
const QUOTA_SETTLE: Duration = Duration::from_millis(300);
/// The window over which a burner's rate under a quota is measured: 20 of
/// the runtime's 100 ms periods.
const QUOTA_WINDOW: Duration = Duration::from_secs(2);

/// The cgroup's CPU usage so far, in µs.
fn usage_us(container: &Container) -> Result<u64, MeasureError> {
    container
        .cgroup_stats()
        .and_then(|s| s.cpu_usage_usec)
        .ok_or(MeasureError::NoUsage)
}

fn ms(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64 / 1000.0
}

/// Usage over a window while running, while paused, then after resume:
/// `usage_running_ms`, `usage_paused_ms`, `usage_resumed_ms`.
pub fn pause_resume(
    container: &Container,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    let step = |step| move |source| MeasureError::Container { step, source };
    pause_resume_of(
        || usage_us(container),
        || container.pause().map_err(step("pause")),
        || container.resume().map_err(step("resume")),
        host,
    )
}

/// [`pause_resume`] with any usage counter and pause/resume commands (an
/// OCI runtime's `pause` and `resume`).
pub fn pause_resume_of(
    usage: impl Fn() -> Result<u64, MeasureError>,
    pause: impl FnOnce() -> Result<(), MeasureError>,
    resume: impl FnOnce() -> Result<(), MeasureError>,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    sleep(SETTLE);
    let u0 = usage()?;
    sleep(WINDOW);
    let u1 = usage()?;
    pause()?;
    let u2 = usage()?;
    sleep(WINDOW);
    let u3 = usage()?;
    resume()?;
    sleep(WINDOW);
    let u4 = usage()?;
    host.insert("usage_running_ms".into(), json!(ms(u0, u1)));
    host.insert("usage_paused_ms".into(), json!(ms(u2, u3)));
    host.insert("usage_resumed_ms".into(), json!(ms(u3, u4)));
    Ok(())
}

/// The rate of a running burner's usage in its steady state:
/// `usage_usec_before` and `usage_usec_after` read `QUOTA_WINDOW` apart,
/// `window_s` the time between the two reads, and `usage_cpus`.
///
/// Both reads fall while the burners spin. A window that starts at the
/// burn's start gets the first period's fresh quota on top, and one that
/// ends after the burner's exit gets the exit and the last period's unpaid
/// overrun: under an emulator (TCG) these read as much as 18 % over the
/// quota the kernel kept in every whole period (0.2368 for 0.2).
pub fn usage_rate(
    container: &Container,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    usage_rate_of(|| usage_us(container), host)
}

/// [`usage_rate`] of any usage counter in µs.
pub fn usage_rate_of(
    usage: impl Fn() -> Result<u64, MeasureError>,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    sleep(QUOTA_SETTLE);
    let (t0, u0) = (Instant::now(), usage()?);
    sleep(QUOTA_WINDOW);
    let (t1, u1) = (Instant::now(), usage()?);
    let window_s = (t1 - t0).as_secs_f64();
    host.insert("usage_usec_before".into(), json!(u0));
    host.insert("usage_usec_after".into(), json!(u1));
    host.insert("window_s".into(), json!(window_s));
    host.insert(
        "usage_cpus".into(),
        json!(u1.saturating_sub(u0) as f64 / 1e6 / window_s),
    );
    Ok(())
}

/// Usage of `a` and of `b` over the same two windows: `usage_ms`,
/// `twin_usage_ms`, and `usage_ratio` (a over b).
pub fn usage_ratio(
    a: &Container,
    b: &Container,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    usage_ratio_of(
        || a.cgroup_stats().and_then(|s| s.cpu_usage_usec),
        || b.cgroup_stats().and_then(|s| s.cpu_usage_usec),
        host,
    )
}

/// [`usage_ratio`] of any two CPU usage counters in µs (`None`: unreadable),
/// such as the cgroups of an OCI runtime's containers.
pub fn usage_ratio_of(
    a: impl Fn() -> Option<u64>,
    b: impl Fn() -> Option<u64>,
    host: &mut Map<String, Value>,
) -> Result<(), MeasureError> {
    let read = |f: &dyn Fn() -> Option<u64>| f().ok_or(MeasureError::NoUsage);
    sleep(SETTLE);
    let (a0, b0) = (read(&a)?, read(&b)?);
    sleep(RATIO_WINDOW);
    let (a1, b1) = (read(&a)?, read(&b)?);
    let (ua, ub) = (ms(a0, a1), ms(b0, b1));
    host.insert("usage_ms".into(), json!(ua));
    host.insert("twin_usage_ms".into(), json!(ub));
    if ub <= 0.0 {
        return Err(MeasureError::IdleTwin(ua));
    }
    host.insert("usage_ratio".into(), json!(ua / ub));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that spent `burst_us` at once (a start-up, a fresh
    /// period's quota) and then runs at `cpus` from `start`.
    fn counter(start: Instant, burst_us: u64, cpus: f64) -> impl Fn() -> Result<u64, MeasureError> {
        move || Ok(burst_us + (start.elapsed().as_secs_f64() * cpus * 1e6) as u64)
    }

    #[test]
    fn usage_rate_is_the_steady_rate_whatever_came_before_the_window() {
        let mut host = Map::new();
        usage_rate_of(counter(Instant::now(), 500_000, 0.2), &mut host).unwrap();
        let rate = host["usage_cpus"].as_f64().unwrap();
        assert!((rate - 0.2).abs() < 0.002, "{host:?}");
        let window = host["window_s"].as_f64().unwrap();
        assert!(window >= QUOTA_WINDOW.as_secs_f64(), "{host:?}");
        assert!(host["usage_usec_before"].as_u64().unwrap() >= 500_000);
    }

    #[test]
    fn an_unreadable_counter_is_an_error_not_a_rate() {
        let mut host = Map::new();
        let err = usage_rate_of(|| Err(MeasureError::NoUsage), &mut host).unwrap_err();
        assert!(matches!(err, MeasureError::NoUsage));
        assert!(!host.contains_key("usage_cpus"));
    }
}

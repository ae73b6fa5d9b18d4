//! Resource pressure whose limits the harness checks: memory (alloc), pids
//! (forkbomb) and CPU time (burn). The harness runs each only inside a
//! cgroup with pids and memory caps and under a timeout.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::time::{Duration, Instant};

use nix::sched::{sched_getaffinity, sched_getcpu, CpuSet};
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::time::TimeVal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Pid};
use serde_json::Value;

use crate::args::{Args, UsageError};
use crate::output::{self, Afterwards, Observation};
use crate::proc_actions::{exit_child, sleep_in_child};
use crate::ProbeError;

const MIB: usize = 1 << 20;
/// The smallest page size Linux uses on x86_64: touching one byte per 4 KiB
/// makes every page resident whatever the real page size.
const PAGE: usize = 4096;
/// How often a burner thread notes which CPU it is on.
const CPU_SAMPLE_EVERY: Duration = Duration::from_millis(1);
/// Upper bounds so a typo in a scenario cannot ask for something absurd.
const MAX_ALLOC_MIB: u64 = 64 * 1024;
const MAX_FORKS: u32 = 100_000;
const MAX_THREADS: usize = 1024;

fn bounded<T: PartialOrd + std::fmt::Display>(
    key: &'static str,
    value: T,
    max: T,
) -> Result<T, UsageError> {
    if value > max {
        return Err(UsageError::Invalid {
            key,
            value: value.to_string(),
            why: format!("must be at most {max}"),
        });
    }
    Ok(value)
}

/// Allocates one MiB and writes to every page of it, so it is charged to
/// the memory cgroup rather than merely reserved.
fn touched_mib() -> Vec<u8> {
    let mut chunk = vec![0u8; MIB];
    for offset in (0..MIB).step_by(PAGE) {
        // SAFETY: `offset` < MIB = chunk.len(), so the pointer is in bounds
        // of the live vector. Volatile, so the store is not optimised away.
        unsafe { std::ptr::write_volatile(chunk.as_mut_ptr().add(offset), 0xa5) };
    }
    chunk
}

pub fn alloc(mut args: Args) -> Result<Observation, ProbeError> {
    let mib: u64 = args.required("mib")?;
    let mib = bounded("mib", mib, MAX_ALLOC_MIB)?;
    args.finish()?;
    let mut held = Vec::new();
    for _ in 0..mib {
        held.push(touched_mib());
    }
    black_box(&held);
    Ok(Observation::new().with("touched_mib", mib))
}

pub fn forkbomb(mut args: Args) -> Result<Observation, ProbeError> {
    let max: u32 = args.required("max")?;
    let max = bounded("max", max, MAX_FORKS)?;
    let hold = args.seconds("hold-seconds")?;
    args.finish()?;
    let mut forks_ok: u32 = 0;
    let mut first_errno = Value::Null;
    while forks_ok < max {
        // SAFETY: the probe is single-threaded here, and the child calls
        // only async-signal-safe functions (nanosleep, _exit).
        match unsafe { unistd::fork() } {
            Ok(ForkResult::Child) => {
                sleep_in_child(hold);
                exit_child(0);
            }
            Ok(ForkResult::Parent { .. }) => forks_ok += 1,
            Err(errno) => {
                first_errno = output::errno_name(errno).into();
                break;
            }
        }
    }
    Ok(Observation::new()
        .with("forks_ok", forks_ok)
        .with("first_errno", first_errno)
        .with("tasks_peak", forks_ok + 1)
        .then(Afterwards::SleepThenReap(hold)))
}

/// Collects the children that have already exited, without blocking.
pub fn reap_exited_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Spins until `deadline`, returning the CPUs it ran on.
fn spin_until(deadline: Instant) -> BTreeSet<usize> {
    let mut cpus = BTreeSet::new();
    let mut next_sample = Instant::now();
    let mut work: u64 = 1;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return cpus;
        }
        if now >= next_sample {
            if let Ok(cpu) = sched_getcpu() {
                cpus.insert(cpu);
            }
            next_sample = now + CPU_SAMPLE_EVERY;
        }
        for _ in 0..1000 {
            work = black_box(work.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

fn timeval_seconds(tv: TimeVal) -> f64 {
    tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6
}

fn affinity() -> Result<Vec<usize>, ProbeError> {
    let set = sched_getaffinity(Pid::from_raw(0))
        .map_err(|e| ProbeError::internal("sched_getaffinity", e))?;
    Ok((0..CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .collect())
}

pub fn burn(mut args: Args) -> Result<Observation, ProbeError> {
    let threads: usize = args.required("threads")?;
    let threads = bounded("threads", threads, MAX_THREADS)?;
    let seconds = args.seconds("seconds")?;
    // `go`: say ready and burn only once the harness says go, so it can read
    // the cgroup's usage counter just before the window opens.
    let on_go = match args.optional::<String>("start")?.as_deref() {
        None | Some("now") => false,
        Some("go") => true,
        Some(other) => {
            return Err(UsageError::Invalid {
                key: "start",
                value: other.to_owned(),
                why: "must be now or go".into(),
            }
            .into())
        }
    };
    args.finish()?;
    if on_go {
        output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
        output::wait_for_go();
    }
    let start = Instant::now();
    let deadline = start + seconds;
    let burners: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || spin_until(deadline)))
        .collect();
    let mut cpus_seen = BTreeSet::new();
    for burner in burners {
        let seen = burner
            .join()
            .map_err(|_| ProbeError::internal("join a burner thread", "it panicked"))?;
        cpus_seen.extend(seen);
    }
    if cpus_seen.is_empty() {
        return Err(ProbeError::internal(
            "sched_getcpu",
            "no burner thread could tell which CPU it ran on",
        ));
    }
    let wall_s = start.elapsed().as_secs_f64();
    let usage =
        getrusage(UsageWho::RUSAGE_SELF).map_err(|e| ProbeError::internal("getrusage", e))?;
    let cpu_s = timeval_seconds(usage.user_time()) + timeval_seconds(usage.system_time());
    let usage_cpus = if wall_s > 0.0 { cpu_s / wall_s } else { 0.0 };
    Ok(Observation::new()
        .with("wall_s", wall_s)
        .with("cpu_s", cpu_s)
        .with("usage_cpus", usage_cpus)
        .with("cpus_seen", cpus_seen.into_iter().collect::<Vec<_>>())
        .with("affinity", affinity()?))
}

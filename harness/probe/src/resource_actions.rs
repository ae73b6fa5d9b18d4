//! Resource pressure whose limits the harness checks: memory (alloc,
//! alloc-swap, fill, oom-pick, oom-group), tasks (forkbomb, nproc), open
//! files (nofile), CPU time (burn, burn-procs) and block I/O (write-direct).
//! The harness runs each only inside a cgroup with pids and memory caps and
//! under a timeout.

use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
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
    let bomb = forkbomb_loop(max, hold);
    Ok(Observation::new()
        .with("forks_ok", bomb.forks_ok)
        .with("first_errno", bomb.first_errno)
        .with("tasks_peak", bomb.forks_ok + 1)
        .with("fork_loop_ms", bomb.loop_ms)
        .then(Afterwards::SleepThenReap(hold)))
}

struct Bomb {
    forks_ok: u32,
    first_errno: Value,
    /// How long the forking took: the children must outlive it (`hold`),
    /// or the peak would undercount.
    loop_ms: f64,
}

/// Forks children that sleep `hold`, until a fork fails or `max` did.
fn forkbomb_loop(max: u32, hold: Duration) -> Bomb {
    let mut forks_ok: u32 = 0;
    let mut first_errno = Value::Null;
    let started = Instant::now();
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
    Bomb {
        forks_ok,
        first_errno,
        loop_ms: started.elapsed().as_secs_f64() * 1e3,
    }
}

/// Collects the children that have already exited, without blocking.
pub fn reap_exited_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Spins until `deadline` or until `stop` is set, returning the CPUs it
/// ran on and whether `stop` ended it (not the deadline).
fn spin_until(deadline: Instant, stop: &AtomicBool) -> (BTreeSet<usize>, bool) {
    let mut cpus = BTreeSet::new();
    let mut next_sample = Instant::now();
    let mut work: u64 = 1;
    loop {
        if stop.load(Ordering::Relaxed) {
            return (cpus, true);
        }
        let now = Instant::now();
        if now >= deadline {
            return (cpus, false);
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
    // `go`: say ready and burn only once the harness says go, then until it
    // says go again (or closes stdin), `seconds` being only a cap: the
    // harness reads the cgroup's usage counter twice while the burners spin,
    // in their steady state, and stops them after its second read.
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
    // Static: the stdin watcher may still be blocked on its read when the
    // burn ends at the cap, and the process exits under it.
    static STOP: AtomicBool = AtomicBool::new(false);
    if on_go {
        std::thread::spawn(|| {
            output::wait_for_go();
            STOP.store(true, Ordering::Relaxed);
        });
    }
    let burners: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || spin_until(deadline, &STOP)))
        .collect();
    let mut cpus_seen = BTreeSet::new();
    // Told to stop by the harness only if every burner was: one that hit
    // the cap first ended the window early, whatever came after.
    let mut stopped_by_harness = true;
    for burner in burners {
        let (seen, stopped) = burner
            .join()
            .map_err(|_| ProbeError::internal("join a burner thread", "it panicked"))?;
        cpus_seen.extend(seen);
        stopped_by_harness &= stopped;
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
        .with(
            "stopped_by",
            if stopped_by_harness { "harness" } else { "cap" },
        )
        .with("cpu_s", cpu_s)
        .with("usage_cpus", usage_cpus)
        .with("cpus_seen", cpus_seen.into_iter().collect::<Vec<_>>())
        .with("affinity", affinity()?))
}

/// This process's swapped-out memory, from /proc/self/status (kB).
fn vm_swap_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        l.strip_prefix("VmSwap:")
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

/// Like `alloc`, but prints a progress line every `report-every-mib` with
/// this process's VmSwap, so the last line before an OOM kill still tells
/// whether anything had gone to swap; the observation adds VmSwap at the end.
pub fn alloc_swap(mut args: Args) -> Result<Observation, ProbeError> {
    let mib: u64 = args.required("mib")?;
    let mib = bounded("mib", mib, MAX_ALLOC_MIB)?;
    let every: u64 = args.required("report-every-mib")?;
    args.finish()?;
    let mut held = Vec::new();
    for i in 1..=mib {
        held.push(touched_mib());
        if every > 0 && i % every == 0 && i < mib {
            let line = Observation::new()
                .with("touched_mib", i)
                .with("vm_swap_kib", vm_swap_kib())
                .to_line("alloc-swap");
            output::print_line(&line).map_err(|e| ProbeError::internal("print progress", e))?;
        }
    }
    black_box(&held);
    Ok(Observation::new()
        .with("touched_mib", mib)
        .with("vm_swap_kib", vm_swap_kib()))
}

/// Writes `mib` MiB to a file in 1 MiB writes: page cache charged to the
/// container's memory cgroup, reclaimable once written back (on a disk-
/// backed upper layer) or swapped (tmpfs, with swap). Holds afterwards so
/// the harness can read the cgroup's usage while the file's pages exist.
pub fn fill(mut args: Args) -> Result<Observation, ProbeError> {
    use std::io::Write;
    let mib: u64 = args.required("mib")?;
    let mib = bounded("mib", mib, MAX_ALLOC_MIB)?;
    let path: String = args.required("path")?;
    let hold = args.seconds("hold-seconds")?;
    args.finish()?;
    let start = Instant::now();
    let mut file = std::fs::File::create(&path)
        .map_err(|e| ProbeError::internal("create the fill file", e))?;
    let chunk = vec![0x5au8; MIB];
    let mut written: u64 = 0;
    let mut errno = Value::Null;
    for _ in 0..mib {
        match file.write_all(&chunk) {
            Ok(()) => written += 1,
            Err(e) => {
                errno = output::errno_name(output::io_errno(&e)).into();
                break;
            }
        }
    }
    Ok(Observation::new()
        .with("written_mib", written)
        .with("errno", errno)
        .with("seconds", start.elapsed().as_secs_f64())
        .then(Afterwards::SleepThenReap(hold)))
}

/// Opens /dev/null until the kernel refuses (at most `max` times): the
/// RLIMIT_NOFILE it runs under, the errno and how many fds it then had.
pub fn nofile(mut args: Args) -> Result<Observation, ProbeError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::resource::{getrlimit, Resource};
    use nix::sys::stat::Mode;
    let max: u32 = args.required("max")?;
    let max = bounded("max", max, MAX_FORKS)?;
    args.finish()?;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| ProbeError::internal("getrlimit", e))?;
    let mut held = Vec::new();
    let mut first_errno = Value::Null;
    let mut highest_fd = Value::Null;
    while held.len() < max as usize {
        match open(
            "/dev/null",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => {
                highest_fd = std::os::fd::AsRawFd::as_raw_fd(&fd).into();
                held.push(fd);
            }
            Err(errno) => {
                first_errno = output::errno_name(errno).into();
                break;
            }
        }
    }
    Ok(Observation::new()
        .with("rlimit_soft", soft)
        .with("rlimit_hard", hard)
        .with("opened", held.len())
        .with("highest_fd", highest_fd)
        .with("first_errno", first_errno))
}

/// `forkbomb` as another uid: RLIMIT_NPROC counts the tasks of a real uid
/// and root is exempt, so the probe first becomes `uid` (needs CAP_SETUID
/// and CAP_SETGID) and then forks until refused (at most `max`).
pub fn nproc(mut args: Args) -> Result<Observation, ProbeError> {
    use nix::sys::resource::{getrlimit, Resource};
    use nix::unistd::{setresgid, setresuid, Gid, Uid};
    let uid: u32 = args.required("uid")?;
    let max: u32 = args.required("max")?;
    let max = bounded("max", max, MAX_FORKS)?;
    let hold = args.seconds("hold-seconds")?;
    args.finish()?;
    let (soft, hard) =
        getrlimit(Resource::RLIMIT_NPROC).map_err(|e| ProbeError::internal("getrlimit", e))?;
    let gid = Gid::from_raw(uid);
    setresgid(gid, gid, gid).map_err(|e| ProbeError::internal("setresgid", e))?;
    let id = Uid::from_raw(uid);
    setresuid(id, id, id).map_err(|e| ProbeError::internal("setresuid", e))?;
    let bomb = forkbomb_loop(max, hold);
    Ok(Observation::new()
        .with("uid", unistd::getuid().as_raw())
        .with("rlimit_soft", soft)
        .with("rlimit_hard", hard)
        .with("forks_ok", bomb.forks_ok)
        .with("first_errno", bomb.first_errno)
        .with("tasks_peak", bomb.forks_ok + 1)
        .with("fork_loop_ms", bomb.loop_ms)
        .then(Afterwards::SleepThenReap(hold)))
}

/// A child's wait status in words: "alive", "SIGKILL", "exit 0"...
fn fate(status: nix::Result<WaitStatus>) -> String {
    match status {
        Ok(WaitStatus::StillAlive) => "alive".into(),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("{sig:?}"),
        Ok(WaitStatus::Exited(_, code)) => format!("exit {code}"),
        Ok(other) => format!("{other:?}"),
        Err(errno) => output::errno_name(errno),
    }
}

/// PID 1's view of a child now, without waiting (an OOM kill among them).
fn child_fate(pid: Pid) -> String {
    fate(waitpid(pid, Some(WaitPidFlag::WNOHANG)))
}

/// `mib` MiB touched and held.
fn touched(mib: u64) -> Vec<Vec<u8>> {
    (0..mib).map(|_| touched_mib()).collect()
}

/// Forks a child that runs `body` then exits 0.
fn fork_child(body: impl FnOnce()) -> Result<Pid, ProbeError> {
    // SAFETY: the probe is single-threaded when it forks, so the child may
    // allocate; it only runs `body` and exits.
    match unsafe { unistd::fork() }.map_err(|e| ProbeError::internal("fork", e))? {
        ForkResult::Child => {
            body();
            exit_child(0)
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

fn read_oom_score_adj(pid: &str) -> Value {
    std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
        .ok()
        .and_then(|t| t.trim().parse::<i64>().ok())
        .map_or(Value::Null, Value::from)
}

/// Two tasks, one OOM. First child `raised` sets its own oom_score_adj to
/// `raised-adj` (raising needs no privilege; where the runtime set the
/// spec's value with CAP_SYS_RESOURCE that value is also a floor the
/// container cannot go below, and the write is refused) and holds
/// `raised-mib`. Then child `spec`, keeping the oom_score_adj inherited
/// from PID 1 (the spec's), touches `spec-mib`, past the memory limit.
/// Which of the two the OOM killer took is the observation.
pub fn oom_pick(mut args: Args) -> Result<Observation, ProbeError> {
    let raised_mib: u64 = args.required("raised-mib")?;
    let raised_mib = bounded("raised-mib", raised_mib, MAX_ALLOC_MIB)?;
    let raised_adj: i32 = args.required("raised-adj")?;
    let spec_mib: u64 = args.required("spec-mib")?;
    let spec_mib = bounded("spec-mib", spec_mib, MAX_ALLOC_MIB)?;
    let hold = args.seconds("hold-seconds")?;
    args.finish()?;
    // The raised child reports the adj the kernel holds once it has its
    // memory, then sleeps.
    let (ready_r, ready_w) = unistd::pipe().map_err(|e| ProbeError::internal("pipe", e))?;
    let raised_child = fork_child(|| {
        let _ = std::fs::write("/proc/self/oom_score_adj", raised_adj.to_string());
        let held = touched(raised_mib);
        let adj = read_oom_score_adj("self").to_string();
        let _ = unistd::write(&ready_w, adj.as_bytes());
        sleep_in_child(hold);
        black_box(&held);
    })?;
    drop(ready_w);
    let mut adj_text = [0u8; 16];
    let n = unistd::read(&ready_r, &mut adj_text).unwrap_or(0);
    let raised_child_adj: Value = std::str::from_utf8(&adj_text[..n])
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .map_or(Value::Null, Value::from);
    let spec_child = fork_child(|| {
        black_box(touched(spec_mib));
    })?;
    let spec_child_adj = read_oom_score_adj(&spec_child.to_string());
    let spec_fate = fate(waitpid(spec_child, None));
    // The OOM kill of the other child may take a moment to be reaped.
    std::thread::sleep(Duration::from_millis(200));
    let raised_fate = child_fate(raised_child);
    let victim = match (spec_fate.as_str(), raised_fate.as_str()) {
        ("SIGKILL", "SIGKILL") => "both",
        ("SIGKILL", _) => "spec",
        (_, "SIGKILL") => "raised",
        _ => "none",
    };
    let _ = nix::sys::signal::kill(raised_child, nix::sys::signal::Signal::SIGKILL);
    let _ = waitpid(raised_child, None);
    Ok(Observation::new()
        .with("oom_score_adj", read_oom_score_adj("self"))
        .with("spec_child_adj", spec_child_adj)
        .with("raised_child_adj", raised_child_adj)
        .with("spec_child", spec_fate)
        .with("raised_child", raised_fate)
        .with("victim", victim))
}

/// `sleepers` children sleep; one more touches `mib` MiB, past the memory
/// limit. With a group OOM every task dies (PID 1 too, so nothing is
/// printed); without, PID 1 reports how many sleepers survived.
pub fn oom_group(mut args: Args) -> Result<Observation, ProbeError> {
    let sleepers: u32 = args.required("sleepers")?;
    let sleepers = bounded("sleepers", sleepers, 64)?;
    let mib: u64 = args.required("mib")?;
    let mib = bounded("mib", mib, MAX_ALLOC_MIB)?;
    let hold = args.seconds("hold-seconds")?;
    args.finish()?;
    let mut sleeping = Vec::new();
    for _ in 0..sleepers {
        sleeping.push(fork_child(|| sleep_in_child(hold))?);
    }
    let allocator = fork_child(|| {
        let held = touched(mib);
        black_box(&held);
    })?;
    let allocator_fate = fate(waitpid(allocator, None));
    std::thread::sleep(Duration::from_millis(200));
    let survivors = sleeping
        .iter()
        .filter(|pid| child_fate(**pid) == "alive")
        .count();
    for pid in &sleeping {
        let _ = nix::sys::signal::kill(*pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(*pid, None);
    }
    Ok(Observation::new()
        .with("sleepers", sleepers)
        .with("allocator", allocator_fate)
        .with("survivors", survivors))
}

/// `procs` child processes spin for `seconds` (wall clock); PID 1 says
/// ready once they run, then waits for them and reports their CPU time.
pub fn burn_procs(mut args: Args) -> Result<Observation, ProbeError> {
    let procs: u32 = args.required("procs")?;
    let procs = bounded("procs", procs, 64)?;
    let seconds = args.seconds("seconds")?;
    args.finish()?;
    let start = Instant::now();
    let deadline = start + seconds;
    let mut children = Vec::new();
    for _ in 0..procs {
        children.push(fork_child(|| {
            black_box(spin_until(deadline, &AtomicBool::new(false)));
        })?);
    }
    output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
    for child in children {
        let _ = waitpid(child, None);
    }
    let usage =
        getrusage(UsageWho::RUSAGE_CHILDREN).map_err(|e| ProbeError::internal("getrusage", e))?;
    Ok(Observation::new()
        .with("procs", procs)
        .with("wall_s", start.elapsed().as_secs_f64())
        .with(
            "children_cpu_s",
            timeval_seconds(usage.user_time()) + timeval_seconds(usage.system_time()),
        ))
}

/// O_DIRECT writes of `mib` MiB in `block-kib` blocks to `path` (a block
/// device bound in), from its start: the rate the kernel let through.
pub fn write_direct(mut args: Args) -> Result<Observation, ProbeError> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    const ALIGN: usize = 4096;
    let path: String = args.required("path")?;
    let mib: u64 = args.required("mib")?;
    let mib = bounded("mib", mib, 256)?;
    let block_kib: usize = args.required("block-kib")?;
    let block_kib = bounded("block-kib", block_kib, 4096)?;
    args.finish()?;
    let block = block_kib * 1024;
    if block == 0 || !block.is_multiple_of(ALIGN) || !(mib as usize * MIB).is_multiple_of(block) {
        return Err(UsageError::Invalid {
            key: "block-kib",
            value: block_kib.to_string(),
            why: "must be a multiple of 4 that divides the total".into(),
        }
        .into());
    }
    let fd = open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_DIRECT | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let fd = match fd {
        Ok(fd) => fd,
        Err(errno) => {
            return Ok(Observation::new()
                .with("open_errno", output::errno_name(errno))
                .with("written_bytes", 0))
        }
    };
    // O_DIRECT needs an aligned buffer: take the aligned window of a
    // larger one.
    let mut raw = vec![0xc3u8; block + ALIGN];
    let offset = raw.as_ptr().align_offset(ALIGN);
    let buf = &mut raw[offset..offset + block];
    let blocks = mib as usize * MIB / block;
    let start = Instant::now();
    let mut written: u64 = 0;
    let mut errno = Value::Null;
    for _ in 0..blocks {
        match unistd::write(&fd, buf) {
            Ok(n) if n == block => written += n as u64,
            Ok(n) => {
                written += n as u64;
                errno = "short write".into();
                break;
            }
            Err(e) => {
                errno = output::errno_name(e).into();
                break;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Observation::new()
        .with("open_errno", Value::Null)
        .with("written_bytes", written)
        .with("errno", errno)
        .with("seconds", seconds)
        .with(
            "rate_bps",
            if seconds > 0.0 {
                written as f64 / seconds
            } else {
                0.0
            },
        ))
}

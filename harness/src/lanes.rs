//! Where each scenario of `isocheck run` runs: alone, in the network lane,
//! or in a general lane; the network lane and the general lanes run side
//! by side.
//!
//! - **Alone**: nothing else runs beside it. Every scenario whose verdict
//!   rests on a measurement or a wait (CPU, memory, IO, pids, rlimits, a
//!   kill's grace period: kind `resource` and the measuring interactions),
//!   and the fixtures that are process-wide (a descriptor open without
//!   O_CLOEXEC is inherited by whatever else is spawned meanwhile; a loop
//!   device).
//! - **Network lane**: the run's own process, one scenario at a time, on
//!   the one network testbed (bridges, the `inet isocheck` nft table, the
//!   outside world).
//! - **General lanes**: the rest (when there are at least [`LANE_MIN`];
//!   fewer run in the run's own process after the network ones), each lane
//!   a process of its own
//!   (`isocheck lane`, hidden) in a stand-in host of its own nested in the
//!   run's: its own network, mount, UTS and IPC namespaces, run dir,
//!   image, decoy process, SysV segment and escape cgroup. A control that
//!   changes a hostname, mounts in its host or looks at its decoys cannot
//!   reach another lane.
//!
//! Lanes are processes, not threads: each needs a stand-in host of its
//! own, entered with unshare, which a process does before it has other
//! threads. (Threads also hung once: a container's first process, forked
//! by clone3 while another thread of the caller was starting or ending,
//! waited forever in glibc's setgroups/set*id wrappers, which signal every
//! thread the parent had. The runtime makes those calls as raw syscalls
//! now.)
//!
//! A lane prints each result as one JSON line on its stdout; the run
//! prints the progress lines and keeps the report in the selection's
//! order. The run's signal goes to its lanes (their own process group, so
//! a terminal's Ctrl-C reaches them once, through the run): they stop,
//! tear down and exit; if the run dies, its parent-death signal kills them
//! and `isocheck cleanup` finds what they left, by its owner records.

use crate::fixtures;
use crate::report::{ScenarioResult, Verdict};
use crate::requirements::require_root;
use crate::runner::Runner;
use crate::scenario::{self, Fixture, Interaction, Scenario};
use crate::signals::{self, Interrupt};
use crate::standin;
use crate::suite::SuiteError;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

/// Where a scenario may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// With nothing else running.
    Alone,
    /// In the network lane, on the shared testbed.
    Network,
    /// In any general lane.
    Any,
}

/// Where `s` may run (see the module docs).
pub fn place(s: &Scenario) -> Place {
    let measures = s.kind == "resource"
        || matches!(
            s.interaction,
            Interaction::KillAfterOutput
                | Interaction::UsageWindow
                | Interaction::PauseResume
                | Interaction::CpuTwin
        );
    let process_wide = s
        .fixtures
        .iter()
        .any(|f| matches!(f, Fixture::LeakedHostFd | Fixture::LoopDevice));
    if measures || process_wide {
        Place::Alone
    } else if s.needs_network() {
        Place::Network
    } else {
        Place::Any
    }
}

/// What only lanes can fail at; the rest is `isocheck run`'s own.
#[derive(Debug, thiserror::Error)]
pub enum LaneError {
    #[error("start a lane process: {0}")]
    Spawn(std::io::Error),
    #[error("lane: write a result: {0}")]
    Write(std::io::Error),
}

/// `isocheck lane`: a general lane's process (started by `isocheck run`,
/// never by hand).
#[derive(clap::Args, Debug)]
pub struct LaneArgs {
    /// Directory of scenario TOML files.
    #[arg(long)]
    pub scenarios: PathBuf,
    /// The scenario ids to run, in this order.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// A general lane: its own stand-in host and runner, the scenarios in
/// order, each result one JSON line on stdout as it finishes; stops when
/// signalled (the run forwards its own signal), tears down and exits as
/// `isocheck run` would.
pub fn lane_main(args: &LaneArgs) -> Result<ExitCode, SuiteError> {
    let all = scenario::load_dir(&args.scenarios)?;
    let mut selected = Vec::new();
    for id in &args.only {
        let s = all.iter().find(|s| &s.id == id);
        selected.push(s.ok_or_else(|| SuiteError::UnknownId(id.clone()))?);
    }
    require_root("lane")?;
    signals::block(&signals::STOPPING)?;
    standin::enter()?;
    let interrupt = Interrupt::watch_quietly()?;
    let mut runner = Runner::new()?;
    runner.set_interrupt(interrupt.clone());
    let mut out = std::io::stdout().lock();
    for s in selected {
        if interrupt.is_set() {
            break;
        }
        let result = runner.run_scenario(s);
        if interrupt.is_set() {
            // Stopped part way: its verdict would be noise.
            break;
        }
        let line = serde_json::to_string(&result).map_err(std::io::Error::other);
        line.and_then(|l| writeln!(out, "{l}"))
            .and_then(|()| out.flush())
            .map_err(LaneError::Write)?;
    }
    drop(runner);
    Ok(match interrupt.signal() {
        Some(sig) => ExitCode::from(signals::exit_code(sig)),
        None => ExitCode::SUCCESS,
    })
}

/// The progress lines on stderr, one per finished scenario; on a terminal
/// a status line names the run's own scenario in flight.
#[derive(Debug)]
pub struct Progress {
    total: usize,
    done: usize,
    tty: bool,
}

impl Progress {
    pub fn new(total: usize) -> Progress {
        Progress {
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn clear(&self) -> &'static str {
        if self.tty {
            "\r\x1b[K"
        } else {
            ""
        }
    }

    fn started(&self, id: &str) {
        if self.tty {
            eprint!(
                "{}[{}/{}] {id} ...",
                self.clear(),
                self.done + 1,
                self.total
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn finished(&mut self, result: &ScenarioResult) {
        self.done += 1;
        eprintln!(
            "{}[{}/{}] {}",
            self.clear(),
            self.done,
            self.total,
            progress_line(result)
        );
    }

    fn interrupted(&self, id: &str) {
        eprintln!(
            "{}[{}/{}] {id:<32} interrupted",
            self.clear(),
            self.done + 1,
            self.total
        );
    }
}

/// A finished scenario as its progress line shows it (after `[n/total] `).
pub fn progress_line(result: &ScenarioResult) -> String {
    format!(
        "{:<32} {:<11} control {:<8} {:>6} ms",
        result.id,
        result.verdict.label(),
        if result.control_violation_observed {
            "seen"
        } else {
            "NOT seen"
        },
        result.duration_ms
    )
}

/// Runs `indices` (into `selected`) one after another on `runner` until
/// done or interrupted, reading the lanes' results after each.
fn run_here(
    runner: &mut Runner,
    selected: &[Scenario],
    indices: &[usize],
    lanes: &mut [LaneChild],
    round: &mut Round<'_>,
) {
    for &i in indices {
        if round.interrupt.is_set() {
            return;
        }
        let s = &selected[i];
        round.progress.started(&s.id);
        let result = runner.run_scenario(s);
        if round.interrupt.is_set() {
            round.progress.interrupted(&s.id);
            return;
        }
        round.progress.finished(&result);
        round.done.push((i, result));
        read_lanes(lanes, selected, round, Duration::ZERO);
    }
}

/// What a round gathers, and what it reports to.
struct Round<'a> {
    progress: &'a mut Progress,
    interrupt: &'a Interrupt,
    done: Vec<(usize, ScenarioResult)>,
}

/// One round of `selected`. First the scenarios that run alone, one by one
/// on `runner`; then `general` lane processes start with the general
/// scenarios dealt among them, while the network lane runs here on
/// `runner`. With no general lanes everything runs here, in order. Gives
/// `(index, result)` of each scenario that finished, in `selected`'s order.
pub fn run_round(
    runner: &mut Runner,
    general: usize,
    dir: &Path,
    selected: &[Scenario],
    progress: &mut Progress,
    interrupt: &Interrupt,
) -> Result<Vec<(usize, ScenarioResult)>, LaneError> {
    let mut round = Round {
        progress,
        interrupt,
        done: Vec::new(),
    };
    let all: Vec<usize> = (0..selected.len()).collect();
    if general == 0 {
        run_here(runner, selected, &all, &mut [], &mut round);
        return Ok(round.done);
    }
    let of = |p: Place| -> Vec<usize> {
        all.iter()
            .copied()
            .filter(|&i| place(&selected[i]) == p)
            .collect()
    };
    let (alone, network, any) = (of(Place::Alone), of(Place::Network), of(Place::Any));
    run_here(runner, selected, &alone, &mut [], &mut round);
    let (network, any) = if any.len() < LANE_MIN {
        // Too few to pay for lane processes: here, after the network ones.
        ([network, any].concat(), Vec::new())
    } else {
        (network, any)
    };
    let mut lanes = Vec::new();
    if !interrupt.is_set() {
        // Dealt round-robin: the lanes get alike shares in file order.
        for lane in 0..general.min(any.len()) {
            let share: Vec<usize> = any.iter().copied().skip(lane).step_by(general).collect();
            lanes.push(LaneChild::spawn(dir, selected, share)?);
        }
        run_here(runner, selected, &network, &mut lanes, &mut round);
    }
    while lanes.iter().any(|l| l.out.is_some()) {
        read_lanes(&mut lanes, selected, &mut round, POLL);
    }
    for lane in &mut lanes {
        lane.finish(selected, &mut round);
    }
    let mut done = round.done;
    done.sort_by_key(|(i, _)| *i);
    Ok(done)
}

/// The fewest general scenarios worth lane processes: one starts in about
/// 60 ms (exec, its stand-in, its runner), two or three scenarios' time.
const LANE_MIN: usize = 8;

/// How long one wait for the lanes' output lasts before the interrupt is
/// looked at again.
const POLL: Duration = Duration::from_millis(100);

/// A general lane's process, its share and what it reported so far.
struct LaneChild {
    child: Child,
    /// Its stdout, until EOF.
    out: Option<File>,
    buf: Vec<u8>,
    share: Vec<usize>,
    reported: Vec<usize>,
    /// The signal forwarded to it, once.
    signalled: bool,
}

impl LaneChild {
    fn spawn(dir: &Path, selected: &[Scenario], share: Vec<usize>) -> Result<LaneChild, LaneError> {
        let exe = std::env::current_exe().map_err(LaneError::Spawn)?;
        let ids: Vec<&str> = share.iter().map(|&i| selected[i].id.as_str()).collect();
        let mut cmd = Command::new(exe);
        cmd.arg("lane")
            .arg("--scenarios")
            .arg(dir)
            .arg("--only")
            .arg(ids.join(","))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // The run forwards its signal; a terminal's would come twice.
            .process_group(0);
        fixtures::die_with_parent(&mut cmd);
        let mut child = cmd.spawn().map_err(LaneError::Spawn)?;
        let out = child
            .stdout
            .take()
            .map(|o| File::from(OwnedFd::from(o)))
            .ok_or_else(|| LaneError::Spawn(std::io::Error::other("no stdout pipe")))?;
        // Room for every line it may write while the network lane keeps
        // this thread busy (best effort: the default 64 KiB only slows it).
        let _ = nix::fcntl::fcntl(&out, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20));
        Ok(LaneChild {
            child,
            out: Some(out),
            buf: Vec::new(),
            share,
            reported: Vec::new(),
            signalled: false,
        })
    }

    /// Takes what its stdout holds now (`readable`), or notes EOF.
    fn read(&mut self, selected: &[Scenario], round: &mut Round<'_>) {
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 16 * 1024];
        match out.read(&mut chunk) {
            Ok(0) | Err(_) => self.out = None,
            Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
        }
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let Ok(result) = serde_json::from_slice::<ScenarioResult>(&line) else {
                continue;
            };
            let Some(&i) = self.share.iter().find(|&&i| selected[i].id == result.id) else {
                continue;
            };
            round.progress.finished(&result);
            self.reported.push(i);
            round.done.push((i, result));
        }
    }

    /// Waits for its exit. A lane that ended without reporting its whole
    /// share, when nobody asked it to stop, fails each scenario it left:
    /// never silently missing.
    fn finish(&mut self, selected: &[Scenario], round: &mut Round<'_>) {
        let status = self.child.wait();
        if round.interrupt.is_set() {
            return;
        }
        for &i in &self.share {
            if self.reported.contains(&i) {
                continue;
            }
            let s = &selected[i];
            let result = ScenarioResult {
                id: s.id.clone(),
                guarantee: s.guarantee.clone(),
                protection: s.control.switch_off.name().to_string(),
                verdict: Verdict::Fail,
                control_violation_observed: false,
                observed: serde_json::json!({}),
                expected: serde_json::json!({}),
                duration_ms: 0,
                reason: Some(format!(
                    "the lane process running it ended ({status:?}) before reporting it; its stderr is above"
                )),
            };
            round.progress.finished(&result);
            round.done.push((i, result));
        }
    }
}

/// Reads whatever the lanes have written, waiting up to `wait` for the
/// first of them; forwards the run's stop signal to each once.
fn read_lanes(
    lanes: &mut [LaneChild],
    selected: &[Scenario],
    round: &mut Round<'_>,
    wait: Duration,
) {
    if let Some(sig) = round.interrupt.signal() {
        for lane in lanes.iter_mut().filter(|l| !l.signalled) {
            let pid = nix::unistd::Pid::from_raw(lane.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
            lane.signalled = true;
        }
    }
    let open: Vec<usize> = (0..lanes.len())
        .filter(|&n| lanes[n].out.is_some())
        .collect();
    let ready: Vec<usize> = {
        let mut fds: Vec<PollFd> = open
            .iter()
            .filter_map(|&n| lanes[n].out.as_ref())
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => open
                .iter()
                .zip(&fds)
                .filter(|(_, fd)| fd.any().unwrap_or(false))
                .map(|(&n, _)| n)
                .collect(),
            _ => Vec::new(),
        }
    };
    for n in ready {
        lanes[n].read(selected, round);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<Scenario> {
        crate::scenario::load_dir(&crate::scenario::default_dir()).unwrap()
    }

    fn place_of(id: &str) -> Place {
        let all = shipped();
        place(all.iter().find(|s| s.id == id).expect(id))
    }

    /// Every scenario that measures CPU, memory, IO, pids or a wait runs
    /// alone; none of them may slip into a lane.
    #[test]
    fn measuring_scenarios_run_alone() {
        for id in [
            "cpu-quota-throttle",
            "cpu-weight",
            "cpuset-pinning",
            "io-write-limit",
            "memory-oom-kill",
            "memory-high-throttles",
            "memory-no-swap",
            "oom-group-kill",
            "oom-score-adj",
            "pause-freezes-all",
            "pids-fork-bomb",
            "rlimit-nproc",
            "rlimit-nofile",
            "cgroup-kill-all",
            "pid-namespace-kills-strays",
            // process-wide fixtures
            "escape-leaked-fd",
            "exec-no-leaked-fd",
        ] {
            assert_eq!(place_of(id), Place::Alone, "{id}");
        }
        for s in shipped() {
            if s.kind == "resource" {
                assert_eq!(place(&s), Place::Alone, "{}", s.id);
            }
        }
    }

    #[test]
    fn network_scenarios_share_one_lane_and_the_rest_any() {
        for id in [
            "net-nat-outside",
            "net-port-forward",
            "net-container-to-container",
            "net-none-loopback-only",
        ] {
            assert_eq!(place_of(id), Place::Network, "{id}");
        }
        for id in [
            "uts-hostname",
            "capabilities-dropped",
            "mount-namespace-private",
        ] {
            assert_eq!(place_of(id), Place::Any, "{id}");
        }
    }
}

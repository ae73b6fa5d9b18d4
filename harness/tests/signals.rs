//! Each signal, sent in the middle of a run, to `isocheck container run` and
//! to `isocheck run`: the exit status says what happened, and nothing of the
//! run is left (no temp dir, no cgroup in any hierarchy, no owner record),
//! except after a second SIGINT, which exits at once and leaves the rest
//! to `isocheck cleanup`. A run's resources are told apart from those of
//! runs going on beside it by their owner records (the creating pid).
//! Needs root: runs only with `--features privileged`.

#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

mod common;

use common::{cgroups, resources_of};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const ISOCHECK: &str = env!("CARGO_BIN_EXE_isocheck");
/// One run at a time: the machine is shared and loaded enough.
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits until the runner has started a scenario's container (its temp dir
/// `isocheck-<run>-run-N-*`, and a cgroup) and returns what it owns then.
fn wait_for_a_scenario_container(child: &mut Child) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = resources_of(child.id());
        if cgroups(&found) > 0 && found.iter().any(|p| p.to_string_lossy().contains("-run-")) {
            return found;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its first container appeared"
        );
        assert!(Instant::now() < deadline, "no container within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: Signal) {
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
}

fn wait_exit(child: &mut Child) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status
                .code()
                .unwrap_or_else(|| panic!("killed: {status:?}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("still running 60 s after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `isocheck container run -- /probe ACTION` with stdout piped; returns once
/// the probe said ready (it is PID 1 in its container by then).
fn container_run(extra: &[&str], action: &str) -> (Child, Vec<PathBuf>) {
    let mut child = Command::new(ISOCHECK)
        .args(["container", "run"])
        .args(extra)
        .args(["--", "/probe", action])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("ready"), "the probe said {line:?}");
    let owned = resources_of(child.id());
    // Keep reading so the probe's last line never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, owned)
}

fn assert_nothing_left(pid: u32, seen: &[PathBuf], what: &str) {
    let bases = isocheck_runtime::rootfs::temp_bases();
    assert!(
        cgroups(seen) > 0 && seen.iter().any(|p| bases.iter().any(|b| p.starts_with(b))),
        "{what}: saw no cgroup or temp dir of the run while it ran: {seen:?}"
    );
    let left: Vec<_> = seen.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "{what}: left behind: {left:?}");
    let left = resources_of(pid);
    assert!(left.is_empty(), "{what}: left behind: {left:?}");
}

#[test]
fn container_run_forwards_each_signal_to_pid_1_and_exits_with_its_status() {
    let _g = SERIAL.lock();
    for sig in isocheck_harness::signals::FORWARDED {
        // `trap` waits for the signal and exits 128 + its number.
        let (mut child, seen) = container_run(&[], "trap");
        signal(&child, sig);
        let code = wait_exit(&mut child);
        assert_eq!(code, 128 + sig as i32, "{sig}");
        assert_nothing_left(child.id(), &seen, sig.as_str());
        eprintln!("container run, {sig}: exit {code}, nothing left");
    }
}

#[test]
fn container_run_kills_a_pid_1_that_ignores_stop_signals() {
    let _g = SERIAL.lock();
    // `wait` has no handler: as PID 1 of its pid namespace it never gets
    // SIGTERM. The second SIGTERM kills the container.
    let (mut child, seen) = container_run(&[], "wait");
    signal(&child, Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "PID 1 got SIGTERM");
    signal(&child, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut child), 128 + Signal::SIGKILL as i32);
    assert_nothing_left(child.id(), &seen, "second SIGTERM");
    // And without a second signal, after --stop-timeout.
    let (mut child, seen) = container_run(&["--stop-timeout", "1"], "wait");
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_exit(&mut child), 128 + Signal::SIGKILL as i32);
    assert_nothing_left(child.id(), &seen, "--stop-timeout");
}

/// `isocheck run --only cpu-quota-throttle` (seconds of CPU burning per
/// half), stopped by `sigs` once its first container runs.
fn interrupted_run(sigs: &[Signal]) -> (Child, Vec<PathBuf>, PathBuf, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("r.json");
    let mut child = Command::new(ISOCHECK)
        .args(["run", "--only", "cpu-quota-throttle", "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = wait_for_a_scenario_container(&mut child);
    for sig in sigs {
        signal(&child, *sig);
    }
    (child, seen, json, out)
}

#[test]
fn run_stops_tears_down_and_writes_a_partial_report_on_each_signal() {
    let _g = SERIAL.lock();
    for (sig, want) in [
        (Signal::SIGINT, 130),
        (Signal::SIGTERM, 143),
        (Signal::SIGHUP, 129),
    ] {
        let (mut child, seen, json, _out) = interrupted_run(&[sig]);
        assert_eq!(wait_exit(&mut child), want, "{sig}");
        assert_nothing_left(child.id(), &seen, sig.as_str());
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(report["interrupted"], true, "{sig}: {report}");
        assert_eq!(report["results"], serde_json::json!([]), "{sig}: {report}");
        eprintln!("run, {sig}: exit {want}, partial report, nothing left");
    }
}

#[test]
fn a_second_sigint_exits_at_once_and_cleanup_finds_the_rest() {
    let _g = SERIAL.lock();
    // Two SIGINTs sent together are one pending signal: the second goes a
    // moment after the first, while the runner tears down. An attempt where
    // the teardown won the race (the partial report got written) proves
    // nothing and is made again.
    for attempt in 1..=5 {
        let (mut child, seen, json, _out) = interrupted_run(&[Signal::SIGINT]);
        std::thread::sleep(Duration::from_millis(10 * attempt));
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        assert_eq!(wait_exit(&mut child), 130);
        if json.exists() {
            eprintln!("attempt {attempt}: the teardown finished before the second SIGINT");
            continue;
        }
        // Its containers died with it (parent-death signal); what they lived
        // in is cleanup's.
        let out = Command::new(ISOCHECK).arg("cleanup").output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "cleanup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let removed: Vec<&str> = said.lines().filter(|l| l.starts_with("removing")).collect();
        eprintln!("second SIGINT: exit 130, no report; cleanup: {removed:?}");
        assert!(
            !removed.is_empty(),
            "the aborted run left nothing to clean: {said}"
        );
        assert_nothing_left(child.id(), &seen, "second SIGINT, then cleanup");
        return;
    }
    panic!("in 5 attempts the second SIGINT never landed before the teardown ended");
}

/// The `isocheck lane` processes of the run `pid`, as they are now.
fn lanes_of(pid: u32) -> Vec<u32> {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children
        .split_whitespace()
        .filter_map(|c| c.parse::<u32>().ok())
        .filter(|c| {
            std::fs::read(format!("/proc/{c}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == b"lane"))
        })
        .collect()
}

/// A run of every general scenario (the lanes' share) and one of the
/// network lane's, caught once a lane has a container of its own: the
/// run, its lanes, what the lanes owned then, the number of ids, and the
/// report's path (in the temp dir, kept alive by the last item).
fn run_with_lanes_at_work() -> (
    Child,
    Vec<u32>,
    Vec<PathBuf>,
    usize,
    PathBuf,
    tempfile::TempDir,
) {
    use isocheck_harness::lanes::{place, Place};
    let all =
        isocheck_harness::scenario::load_dir(&isocheck_harness::scenario::default_dir()).unwrap();
    let mut ids: Vec<&str> = all
        .iter()
        .filter(|s| place(s) == Place::Any)
        .map(|s| s.id.as_str())
        .collect();
    ids.push("net-container-to-container");
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("r.json");
    let mut child = Command::new(ISOCHECK)
        .args(["run", "--only", &ids.join(","), "--json"])
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lanes = lanes_of(child.id());
        let seen: Vec<PathBuf> = lanes.iter().flat_map(|&l| resources_of(l)).collect();
        if seen.iter().any(|p| p.to_string_lossy().contains("-run-")) {
            return (child, lanes, seen, ids.len(), json, out);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before a lane's container appeared"
        );
        assert!(Instant::now() < deadline, "no lane container within 60 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits (up to 20 s: a killed process on a loaded machine can take that
/// long to go) until none of `pids` is left.
fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while pids
        .iter()
        .any(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "{pids:?} outlived the run by 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_stops_its_lanes_too_and_nothing_of_theirs_is_left() {
    let _g = SERIAL.lock();
    let (mut child, lanes, seen, n_ids, json, _out) = run_with_lanes_at_work();
    let main_seen = resources_of(child.id());
    signal(&child, Signal::SIGINT);
    assert_eq!(wait_exit(&mut child), 130);
    assert_nothing_left(child.id(), &main_seen, "SIGINT, the run");
    for lane in &lanes {
        assert!(
            !std::path::Path::new(&format!("/proc/{lane}")).exists(),
            "lane {lane} outlived the run"
        );
        let left = resources_of(*lane);
        assert!(left.is_empty(), "lane {lane} left behind: {left:?}");
    }
    let left: Vec<_> = seen.iter().filter(|p| p.exists()).collect();
    assert!(left.is_empty(), "the lanes left behind: {left:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true, "{report}");
    // The lanes stopped part way (the run passed its signal on) rather
    // than running their whole share out.
    let kept = report["results"].as_array().map_or(0, |r| r.len());
    assert!(
        kept < n_ids - 1,
        "{kept} of {n_ids} results: the lanes ran to the end"
    );
    eprintln!(
        "run with {} lanes, SIGINT: exit 130, {kept} results kept, nothing left",
        lanes.len()
    );
}

#[test]
fn a_second_sigint_kills_the_lanes_too_and_cleanup_finds_what_they_left() {
    let _g = SERIAL.lock();
    for attempt in 1..=5 {
        let (mut child, lanes, seen, _, json, _out) = run_with_lanes_at_work();
        let main_seen = resources_of(child.id());
        signal(&child, Signal::SIGINT);
        std::thread::sleep(Duration::from_millis(5 * attempt));
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
        assert_eq!(wait_exit(&mut child), 130);
        if json.exists() {
            eprintln!("attempt {attempt}: the teardown finished before the second SIGINT");
            continue;
        }
        // The lanes die with the run (parent-death signal), without their
        // teardown: their run dirs are still there for cleanup (a lane
        // that lived on would have removed its own).
        wait_gone(&lanes);
        let before: Vec<_> = seen.iter().filter(|p| p.exists()).collect();
        assert!(
            !before.is_empty(),
            "the lanes left nothing: did they outlive the run and tear down?"
        );
        let out = Command::new(ISOCHECK).arg("cleanup").output().unwrap();
        assert!(
            out.status.success(),
            "cleanup: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let left: Vec<_> = seen.iter().filter(|p| p.exists()).collect();
        assert!(left.is_empty(), "the lanes left, after cleanup: {left:?}");
        for lane in &lanes {
            let left = resources_of(*lane);
            assert!(left.is_empty(), "lane {lane} left, after cleanup: {left:?}");
        }
        assert_nothing_left(child.id(), &main_seen, "second SIGINT, then cleanup");
        return;
    }
    panic!("in 5 attempts the second SIGINT never landed before the teardown ended");
}

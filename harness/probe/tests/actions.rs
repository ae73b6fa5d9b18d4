//! Runs the built probe binary and checks its observations. Everything here
//! runs without root; root-only checks are under the `privileged` feature.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value;

const PROBE: &str = env!("CARGO_BIN_EXE_isocheck-probe");

/// Runs the probe to completion with stdin closed.
fn run(args: &[&str]) -> Output {
    Command::new(PROBE)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the probe runs")
}

/// Runs the probe, expects exit 0, and parses its one line of JSON.
fn observe(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "probe {args:?} failed: {:?}, stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line expected: {stdout:?}");
    let value: Value = serde_json::from_str(lines[0]).expect("valid JSON");
    assert_eq!(value["action"], args[0], "{value}");
    value
}

fn clock_now(clock: nix::time::ClockId) -> f64 {
    let now = nix::time::clock_gettime(clock).expect("clock");
    now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9
}

#[test]
fn noop_prints_only_the_action() {
    assert_eq!(observe(&["noop"]), serde_json::json!({"action": "noop"}));
}

#[test]
fn pids_sees_itself_and_its_parent() {
    let obs = observe(&["pids", "--decoy-comm", "isocheck-no-such-process"]);
    let pid = obs["pid"].as_i64().expect("pid");
    assert!(pid > 1, "{obs}");
    assert_eq!(
        obs["ppid"].as_i64(),
        Some(i64::from(std::process::id() as i32))
    );
    let visible: Vec<i64> = obs["visible_pids"]
        .as_array()
        .expect("visible_pids")
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(visible.contains(&pid), "{obs}");
    assert_eq!(obs["sees_decoy"], false);
}

#[test]
fn pids_finds_a_decoy_by_its_comm() {
    // This test binary is a decoy the probe can see: its comm is our name,
    // truncated by the kernel to 15 bytes.
    let comm = std::fs::read_to_string("/proc/self/comm").expect("own comm");
    let obs = observe(&["pids", "--decoy-comm", comm.trim_end()]);
    assert_eq!(obs["sees_decoy"], true, "{obs}");
}

#[test]
fn write_reports_errno_per_path() {
    let dir = tempfile::Builder::new()
        .prefix("isocheck-probe-test")
        .tempdir()
        .expect("tempdir");
    let good = dir.path().join("written");
    let bad = dir.path().join("missing-dir").join("file");
    let obs = observe(&[
        "write",
        "--path",
        good.to_str().expect("utf-8"),
        "--path",
        bad.to_str().expect("utf-8"),
    ]);
    let writes = obs["writes"].as_array().expect("writes");
    assert_eq!(writes.len(), 2, "{obs}");
    assert_eq!(writes[0]["errno"], Value::Null, "{obs}");
    assert_eq!(writes[1]["errno"], "ENOENT", "{obs}");
    assert_eq!(std::fs::read(&good).expect("file"), b"isocheck\n");
}

#[test]
fn cgroup_lists_own_membership() {
    let obs = observe(&["cgroup"]);
    let lines = obs["lines"].as_array().expect("lines");
    assert!(!lines.is_empty(), "{obs}");
    assert!(obs["shows_isocheck"].is_boolean());
}

#[test]
fn clocks_match_the_host_without_a_time_namespace() {
    let monotonic = clock_now(nix::time::ClockId::CLOCK_MONOTONIC).to_string();
    let boottime = clock_now(nix::time::ClockId::CLOCK_BOOTTIME).to_string();
    let obs = observe(&[
        "clocks",
        "--host-monotonic",
        &monotonic,
        "--host-boottime",
        &boottime,
    ]);
    for field in ["monotonic_offset_s", "boottime_offset_s"] {
        let offset = obs[field].as_f64().expect(field);
        assert!((-5.0..=5.0).contains(&offset), "{field}: {obs}");
    }
}

#[test]
fn burn_uses_about_one_cpu_per_thread() {
    let obs = observe(&["burn", "--threads", "1", "--seconds", "0.3"]);
    let usage = obs["usage_cpus"].as_f64().expect("usage_cpus");
    assert!((0.3..=1.3).contains(&usage), "{obs}");
    assert!(!obs["cpus_seen"].as_array().expect("cpus_seen").is_empty());
    assert!(!obs["affinity"].as_array().expect("affinity").is_empty());
}

#[test]
fn links_include_loopback() {
    let obs = observe(&["links"]);
    let links = obs["links"].as_array().expect("links");
    assert!(links.iter().any(|l| l["name"] == "lo"), "{obs}");
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

/// Reads one JSON line from a running probe's stdout.
fn read_json_line(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("read a line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

fn spawn_piped(args: &[&str]) -> Child {
    Command::new(PROBE)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the probe")
}

#[test]
fn tcp_serve_echoes_to_tcp_connect() {
    let port = free_port().to_string();
    let mut server = spawn_piped(&[
        "tcp-serve",
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--count",
        "1",
        "--timeout-ms",
        "5000",
    ]);
    let mut server_out = BufReader::new(server.stdout.take().expect("stdout"));
    assert_eq!(read_json_line(&mut server_out)["phase"], "ready");

    let addr = format!("127.0.0.1:{port}");
    let client = observe(&[
        "tcp-connect",
        "--addr",
        &addr,
        "--timeout-ms",
        "3000",
        "--send",
        "hello isocheck",
    ]);
    assert_eq!(client["connected"], true, "{client}");
    assert_eq!(client["echoed"], "hello isocheck", "{client}");
    assert_eq!(client["errno"], Value::Null, "{client}");

    let served = read_json_line(&mut server_out);
    assert!(server.wait().expect("server exits").success());
    assert_eq!(served["accepted"], 1, "{served}");
    let peers = served["peers"].as_array().expect("peers");
    assert_eq!(peers.len(), 1, "{served}");
    assert_eq!(peers[0], client["local_addr"], "{served} vs {client}");
    assert_eq!(served["errno"], Value::Null, "{served}");
}

#[test]
fn tcp_connect_to_a_closed_port_is_refused() {
    let addr = format!("127.0.0.1:{}", free_port());
    let obs = observe(&["tcp-connect", "--addr", &addr, "--timeout-ms", "2000"]);
    assert_eq!(obs["connected"], false, "{obs}");
    assert_eq!(obs["errno"], "ECONNREFUSED", "{obs}");
    assert_eq!(obs["echoed"], Value::Null, "{obs}");
}

#[test]
fn two_phase_action_waits_for_go() {
    let mut probe = spawn_piped(&["wait"]);
    let mut out = BufReader::new(probe.stdout.take().expect("stdout"));
    assert_eq!(read_json_line(&mut out)["phase"], "ready");
    // Still waiting: it has not exited before we say go.
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(probe.try_wait().expect("try_wait").is_none());
    let mut stdin = probe.stdin.take().expect("stdin");
    stdin.write_all(b"go\n").expect("say go");
    assert_eq!(read_json_line(&mut out)["action"], "wait");
    assert!(probe.wait().expect("exits").success());
}

#[test]
fn burn_on_go_spins_until_a_second_go() {
    let mut probe = spawn_piped(&["burn", "--threads", "1", "--seconds", "10", "--start", "go"]);
    let mut out = BufReader::new(probe.stdout.take().expect("stdout"));
    let mut stdin = probe.stdin.take().expect("stdin");
    assert_eq!(read_json_line(&mut out)["phase"], "ready");
    stdin.write_all(b"go\n").expect("say go");
    std::thread::sleep(std::time::Duration::from_millis(200));
    stdin.write_all(b"go\n").expect("say stop");
    let obs = read_json_line(&mut out);
    assert_eq!(obs["stopped_by"], "harness", "{obs}");
    // Stopped by the second go, long before the 10 s cap. About 0.2 s: the
    // burn starts once the probe has read the first go, a moment after the
    // 200 ms here began, so a little under is right too.
    let wall = obs["wall_s"].as_f64().expect("wall_s");
    assert!((0.1..2.0).contains(&wall), "{obs}");
    assert!(probe.wait().expect("exits").success());
}

#[test]
fn burn_on_go_stops_at_its_cap_without_a_second_go() {
    let mut probe = spawn_piped(&[
        "burn",
        "--threads",
        "1",
        "--seconds",
        "0.2",
        "--start",
        "go",
    ]);
    let mut out = BufReader::new(probe.stdout.take().expect("stdout"));
    let mut stdin = probe.stdin.take().expect("stdin");
    assert_eq!(read_json_line(&mut out)["phase"], "ready");
    stdin.write_all(b"go\n").expect("say go");
    let obs = read_json_line(&mut out);
    assert_eq!(obs["stopped_by"], "cap", "{obs}");
    assert!(probe.wait().expect("exits").success());
}

#[test]
fn trap_reports_the_signal_and_exits_128_plus_it() {
    use nix::sys::signal::{kill, Signal};
    for sig in [Signal::SIGTERM, Signal::SIGUSR2] {
        let mut probe = spawn_piped(&["trap"]);
        let mut out = BufReader::new(probe.stdout.take().expect("stdout"));
        assert_eq!(read_json_line(&mut out)["phase"], "ready");
        kill(nix::unistd::Pid::from_raw(probe.id() as i32), sig).expect("signal the probe");
        let obs = read_json_line(&mut out);
        assert_eq!(obs["signal"], sig.as_str(), "{obs}");
        assert_eq!(obs["signo"], sig as i32, "{obs}");
        let status = probe.wait().expect("exits");
        assert_eq!(status.code(), Some(128 + sig as i32), "{status:?}");
    }
}

#[test]
fn ls_lists_sorted_names_or_the_errno() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["b", "a"] {
        std::fs::write(dir.path().join(name), "").expect("write");
    }
    let path = dir.path().display().to_string();
    let obs = observe(&["ls", "--path", &path, "--path", "/no/such/dir"]);
    assert_eq!(
        obs["listings"],
        serde_json::json!([
            {"path": path, "errno": null, "names": ["a", "b"]},
            {"path": "/no/such/dir", "errno": "ENOENT", "names": null},
        ])
    );
}

#[test]
fn mounts_lists_proc_with_its_type() {
    let obs = observe(&["mounts", "--under", "/proc"]);
    let mounts = obs["mounts"].as_array().expect("mounts");
    assert!(
        mounts
            .iter()
            .any(|m| m["point"] == "/proc" && m["fstype"] == "proc"),
        "{obs}"
    );
    assert!(
        mounts
            .iter()
            .all(|m| m["point"].as_str().is_some_and(|p| p.starts_with("/proc"))),
        "{obs}"
    );
}

#[test]
fn daemon_detaches_and_the_probe_exits_on_eof() {
    let started = Instant::now();
    // The grandchild sleeps 3 s: if it kept our stdout pipe open, `output()`
    // would wait for it.
    let out = run(&["daemon", "--seconds", "3"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let obs: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(obs["daemon_forked"], true, "{obs}");
    let waited = started.elapsed().as_secs_f64();
    assert!(waited < 2.0, "the daemon held the pipe for {waited} s");
}

fn assert_usage_error(args: &[&str], named: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty(), "no observation on a usage error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(named),
        "{args:?}: stderr {stderr:?} should name {named}"
    );
}

#[test]
fn bad_arguments_exit_2_naming_the_argument() {
    assert_usage_error(&["kill", "--pid", "abc"], "--pid");
    assert_usage_error(&["kill", "--pid", "-1"], "--pid");
    assert_usage_error(&["kill"], "--pid");
    assert_usage_error(&["noop", "--extra", "1"], "--extra");
    assert_usage_error(&["burn", "--threads", "1"], "--seconds");
    assert_usage_error(
        &[
            "ping",
            "--addr",
            "localhost",
            "--count",
            "1",
            "--timeout-ms",
            "1",
        ],
        "--addr",
    );
    assert_usage_error(&["write", "--path"], "--path");
}

#[test]
fn unknown_action_exits_2() {
    assert_usage_error(&["teleport"], "teleport");
    assert_usage_error(&[], "no action");
}

/// The probe must run in a rootfs holding nothing but itself: no dynamic
/// loader, so no PT_INTERP program header.
#[test]
fn binary_is_statically_linked() {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(PROBE).expect("read the binary");
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "64-bit ELF expected");
    assert_eq!(elf[5], 1, "little-endian ELF expected");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]);
    let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().expect("8 bytes")) as usize;
    let phentsize = usize::from(u16_at(0x36));
    let phnum = usize::from(u16_at(0x38));
    assert!(phnum > 0, "no program headers");
    let types: Vec<u32> = (0..phnum)
        .map(|i| {
            let at = phoff + i * phentsize;
            u32::from_le_bytes(elf[at..at + 4].try_into().expect("4 bytes"))
        })
        .collect();
    assert!(
        !types.contains(&PT_INTERP),
        "the probe has an interpreter: {types:?}"
    );
}

#[cfg(feature = "privileged")]
mod privileged {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// Brings `lo` up in the current network namespace (SIOCSIFFLAGS).
    fn loopback_up() -> std::io::Result<()> {
        // SAFETY: plain socket(2); the descriptor is closed below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: `req` is a live ifreq naming "lo"; the ioctls read and
        // write only that struct.
        let result = unsafe {
            if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            }
        };
        // SAFETY: closing the socket opened above.
        unsafe { libc::close(sock) };
        result
    }

    #[test]
    fn ping_loopback_in_a_fresh_netns() {
        let mut cmd = Command::new(PROBE);
        cmd.args([
            "ping",
            "--addr",
            "127.0.0.1",
            "--count",
            "3",
            "--timeout-ms",
            "1000",
        ]);
        // SAFETY: between fork and exec the child only calls unshare, socket,
        // ioctl and close, none of which allocate or take locks.
        unsafe {
            cmd.pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
                loopback_up()
            });
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run the probe");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let obs: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(obs["sent"], 3, "{obs}");
        assert_eq!(obs["received"], 3, "{obs}");
        assert_eq!(obs["errno"], Value::Null, "{obs}");
        assert_eq!(obs["rtt_ms"].as_array().map(Vec::len), Some(3), "{obs}");
    }

    #[test]
    fn mknod_of_a_loop_device_as_root() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-probe-test")
            .tempdir()
            .expect("tempdir");
        let node = dir.path().join("loop0");
        let obs = observe(&[
            "mknod",
            "--path",
            node.to_str().expect("utf-8"),
            "--major",
            "7",
            "--minor",
            "0",
        ]);
        assert_eq!(obs["mknod_errno"], Value::Null, "{obs}");
        assert!(!node.exists(), "the probe removes its node");
    }

    #[test]
    fn sysrq_opens_as_root_on_the_host() {
        let obs = observe(&["sysrq-kmsg"]);
        // Kernels built without CONFIG_MAGIC_SYSRQ (this VM's) have no
        // trigger file: then the probe must say so, not claim success.
        let expected = if std::path::Path::new("/proc/sysrq-trigger").exists() {
            Value::Null
        } else {
            Value::from("ENOENT")
        };
        assert_eq!(obs["sysrq_open_errno"], expected, "{obs}");
        assert_eq!(obs["kmsg_open_errno"], Value::Null, "{obs}");
        assert_eq!(obs["syslog_errno"], Value::Null, "{obs}");
    }

    #[test]
    fn ptrace_attaches_to_a_sibling_as_root() {
        let mut target = spawn_piped(&["wait"]);
        let mut out = BufReader::new(target.stdout.take().expect("stdout"));
        assert_eq!(read_json_line(&mut out)["phase"], "ready");
        let pid = target.id().to_string();
        let obs = observe(&["ptrace", "--pid", &pid]);
        assert_eq!(obs["attach_errno"], Value::Null, "{obs}");
        // Detached again: the target still answers.
        drop(target.stdin.take());
        assert_eq!(read_json_line(&mut out)["action"], "wait");
        assert!(target.wait().expect("target exits").success());
    }
}

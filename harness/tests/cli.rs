//! Bad input gets a clear error naming the flag (or file) and the value, and
//! creates nothing. These run without root: everything is refused before
//! the root check and before any resource exists.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure message

use std::path::PathBuf;
use std::process::Command;

const ISOCHECK: &str = env!("CARGO_BIN_EXE_isocheck");

/// Pids of every isocheck this test binary started (tests run in threads).
static STARTED: std::sync::Mutex<Vec<u32>> = std::sync::Mutex::new(Vec::new());

/// The temp dirs made by an isocheck this test started: a dir of ours carries
/// an owner record naming the pid that made it. (Runs of other people go
/// on beside ours; their dirs are none of this test's business.)
fn our_temp_dirs() -> Vec<PathBuf> {
    let started = STARTED.lock().unwrap().clone();
    let mut dirs: Vec<PathBuf> = isocheck_runtime::rootfs::temp_bases()
        .into_iter()
        .flat_map(|base| std::fs::read_dir(base).unwrap())
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("isocheck-"))
                && isocheck_runtime::owner::dir_owner(p)
                    .is_ok_and(|o| started.contains(&(o.pid as u32)))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Runs isocheck; returns (exit code, stderr).
fn isocheck(args: &[&str]) -> (i32, String) {
    let child = Command::new(ISOCHECK)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    STARTED.lock().unwrap().push(child.id());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `container run ARGS -- /probe noop` exits 2 and its error names `named`.
fn assert_refused(args: &[&str], named: &str) {
    let mut argv = vec!["container", "run"];
    argv.extend(args);
    argv.extend(["--", "/probe", "noop"]);
    let (code, stderr) = isocheck(&argv);
    assert_eq!(code, 2, "{args:?}: exit {code}, stderr {stderr}");
    assert!(
        stderr.contains(named),
        "{args:?}: stderr does not name {named:?}: {stderr}"
    );
}

#[test]
fn bad_limits_and_binds_are_refused_naming_flag_and_value() {
    let before = our_temp_dirs();
    for (args, named) in [
        (vec!["--memory", "12Q"], "--memory 12Q"),
        (vec!["--pids", "-1"], "--pids -1"),
        (vec!["--pids", "0"], "--pids 0"),
        (vec!["--cpus", "0"], "--cpus 0"),
        (vec!["--cpus", "lots"], "--cpus lots"),
        (vec!["--cpuset", "4095"], "--cpuset 4095"),
        (vec!["--cpuset", "1-0"], "--cpuset 1-0"),
        (
            vec!["--ro-bind", "/nonexistent-isocheck-src:/data"],
            "--ro-bind /nonexistent-isocheck-src:/data",
        ),
        (vec!["--ro-bind", "nocolon"], "--ro-bind nocolon"),
        (vec!["--switch-off", "bogus"], "'bogus' for '--switch-off"),
        (
            vec!["--switch-off", "masquerade"],
            "--switch-off masquerade: not a protection of a container's spec",
        ),
        (
            vec!["--cpu-weight", "0"],
            "--cpu-weight: limits.cpu_weight: 0 is outside",
        ),
        (vec!["--cpu-weight", "x"], "--cpu-weight x"),
        (vec!["--nofile", "0"], "--nofile: limits.nofile: 0"),
        (
            vec!["--oom-score-adj", "2000"],
            "--oom-score-adj: limits.oom_score_adj: 2000",
        ),
        (
            vec!["--memory", "16M", "--memory-high", "32M"],
            "--memory-high: limits.memory_high_bytes: 33554432 is above",
        ),
        (
            vec!["--memory-swap", "1G"],
            "--memory-swap: limits.swap_bytes: 1073741824 needs",
        ),
        (
            vec!["--device-write-bps", "/dev/null:1M"],
            "--device-write-bps: limits.io_write_bps[0].device: /dev/null is not a block device",
        ),
    ] {
        assert_refused(&args, named);
    }
    assert_eq!(
        our_temp_dirs(),
        before,
        "a refused command created a temp dir"
    );
}

#[test]
fn a_malformed_scenario_file_fails_the_run_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/ipc-namespace.toml");
    std::fs::copy(&shipped, dir.path().join("a-good.toml")).unwrap();
    std::fs::write(
        dir.path().join("b-bad.toml"),
        "id = \"bad\"\nguarantee = [\n",
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    for cmd in [
        vec!["run", "--scenarios", dir_arg],
        vec!["list", "--scenarios", dir_arg],
    ] {
        let (code, stderr) = isocheck(&cmd);
        assert_ne!(code, 0, "{cmd:?}");
        assert!(stderr.contains("b-bad.toml:"), "{cmd:?}: {stderr}");
    }
}

#[test]
fn unknown_ids_and_legs_are_named() {
    let (code, stderr) = isocheck(&["run", "--only", "no-such-guarantee"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"no-such-guarantee\""), "{stderr}");
    let (code, stderr) = isocheck(&["vm", "run", "no-such-leg"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("\"no-such-leg\""), "{stderr}");
}

#[test]
fn list_shows_every_shipped_guarantee() {
    let out = Command::new(ISOCHECK).arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for id in [
        "pid-namespace-init",
        "memory-oom-kill",
        "net-port-forward",
        "escape-ptrace-host",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with(id)),
            "{id} missing from:\n{text}"
        );
    }
}

#[test]
fn readme_lists_every_guarantee() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for entry in std::fs::read_dir(root.join("scenarios")).unwrap() {
        let name = entry
            .unwrap()
            .file_name()
            .to_string_lossy()
            .replace(".toml", "");
        assert!(
            readme.contains(&format!("`{name}`")),
            "README's table lacks {name}"
        );
    }
}

#[test]
fn network_flags_are_checked_before_anything_exists() {
    let before = our_temp_dirs();
    // A port that is taken: we hold it.
    let held = std::net::TcpListener::bind(("0.0.0.0", 0)).unwrap();
    let port = held.local_addr().unwrap().port();
    let publish = format!("{port}:80");
    for (args, named) in [
        (
            vec!["--net", "bridge", "--publish", publish.as_str()],
            format!("--publish {publish}"),
        ),
        (
            vec!["--publish", "8080:80"],
            "--publish 8080:80".to_string(),
        ),
        (
            vec!["--net", "bridge", "--publish", "8080"],
            "--publish 8080".to_string(),
        ),
        (
            vec!["--net", "bridge", "--subnet", "10.89.0.7/24"],
            "--subnet 10.89.0.7/24".to_string(),
        ),
        (
            vec!["--net", "bridge", "--subnet", "300.1.0.0/16"],
            "--subnet 300.1.0.0/16".to_string(),
        ),
    ] {
        assert_refused(&args, &named);
    }
    // A subnet that overlaps one of the host's own routes.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    let taken = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let dest = u32::from_str_radix(f[1], 16).ok()?;
        let mask = u32::from_str_radix(f[7], 16).ok()?;
        (mask != 0 && mask.count_ones() <= 30).then(|| {
            let addr = std::net::Ipv4Addr::from(dest.to_ne_bytes());
            format!("{addr}/{}", mask.count_ones())
        })
    });
    match taken {
        Some(subnet) => {
            let (code, stderr) = isocheck(&[
                "container",
                "run",
                "--net",
                "bridge",
                "--subnet",
                &subnet,
                "--",
                "/probe",
            ]);
            assert_eq!(code, 2, "{stderr}");
            assert!(
                stderr.contains(&format!("--subnet {subnet}: overlaps")),
                "{stderr}"
            );
        }
        None => eprintln!("no non-default host route here: the overlap case is not exercised"),
    }
    assert_eq!(
        our_temp_dirs(),
        before,
        "a refused command created a temp dir"
    );
}

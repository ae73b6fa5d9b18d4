//! Bad input gets a clear error naming the flag (or file) and the value, and
//! creates nothing. These run without root: everything is refused before
//! the root check and before any resource exists.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure message

use std::path::PathBuf;
use std::process::Command;

const ISOCHECK: &str = env!("CARGO_BIN_EXE_isocheck");

fn our_temp_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("isocheck-"))
        })
        .collect();
    dirs.sort();
    dirs
}

/// Runs isocheck; returns (exit code, stderr).
fn isocheck(args: &[&str]) -> (i32, String) {
    let out = Command::new(ISOCHECK).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    ] {
        let mut argv = vec!["container", "run"];
        argv.extend(&args);
        argv.extend(["--", "/probe", "noop"]);
        let (code, stderr) = isocheck(&argv);
        assert_eq!(code, 2, "{args:?}: exit {code}, stderr {stderr}");
        assert!(
            stderr.contains(named),
            "{args:?}: stderr does not name {named:?}: {stderr}"
        );
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

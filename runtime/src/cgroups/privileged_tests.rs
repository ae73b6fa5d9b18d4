//! Tests against the real kernel (root; `--features privileged`). Each one
//! makes its cgroups under `isocheck/`, puts real processes in them, reads
//! the counters back, kills and removes, and checks nothing of its own is
//! left. They share kernel state, so they run one at a time. Every
//! allocator, forker and burner runs inside the capped cgroup, and every
//! wait is bounded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::*;
use crate::spec::CpuQuota;

static SERIAL: Mutex<()> = Mutex::new(());

const MIB: u64 = 1 << 20;

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn real_mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo")
}

/// Only the lines of the real mount table whose fstype is `fstype`.
fn mountinfo_only(fstype: &str) -> String {
    real_mountinfo()
        .lines()
        .filter(|l| {
            l.split_once(" - ")
                .is_some_and(|(_, r)| r.starts_with(&format!("{fstype} ")))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A shell that waits for a line on stdin before running `script`, so it
/// can be put in its cgroup before it does anything.
fn spawn_held(script: &str) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("read go; {script}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn sh")
}

fn release(child: &mut Child) {
    let stdin = child.stdin.as_mut().expect("stdin");
    stdin.write_all(b"go\n").expect("release the child");
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_gone(manager: &CgroupManager, name: &str, paths: &[PathBuf]) {
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    let ours: Vec<PathBuf> = manager
        .leftovers()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name))
        .collect();
    assert!(ours.is_empty(), "leftovers {ours:?}");
}

/// The whole story on this hybrid host: limits on v1, kill via the
/// unified node's cgroup.kill, evidence from the counters.
#[test]
fn cgroup_privileged_hybrid_limits_evidence_kill_remove() {
    let _serial = serial();
    let manager = CgroupManager::detect().expect("detect");
    eprintln!("mode: {}", manager.mode());
    let name = format!("test-{}-hybrid", std::process::id());
    let limits = Limits {
        memory_bytes: Some(32 * MIB),
        pids: Some(16),
        cpu: Some(CpuQuota {
            quota_us: 50_000,
            period_us: 100_000,
        }),
        ..Limits::default()
    };
    let cgroup = manager.create(&name, &limits).expect("create");
    let paths = cgroup.paths();
    eprintln!("paths: {paths:?}");

    // Burn 1 s under a 0.5 CPU quota, touch 128 MiB under 32 MiB (tail
    // buffers the one endless line), then fork past 16 tasks; the sleepers
    // are strays the kill must reach. Everything is inside the cgroup.
    let mut child = spawn_held(
        "timeout 1 sh -c 'while :; do :; done'; \
         head -c 134217728 /dev/zero | tail >/dev/null; \
         i=0; while [ $i -lt 40 ]; do sleep 60 & i=$((i+1)); done; \
         exec sleep 60",
    );
    cgroup.add_process(child.id() as i32).expect("add_process");
    assert_eq!(cgroup.procs().expect("procs"), vec![child.id() as i32]);
    release(&mut child);

    wait_until(
        "an OOM kill and a refused fork",
        Duration::from_secs(30),
        || {
            let s = cgroup.stats().expect("stats");
            s.oom_kills.unwrap_or(0) >= 1 && s.pids_limit_hits.unwrap_or(0) >= 1
        },
    );
    let stats = cgroup.stats().expect("stats");
    eprintln!("hybrid stats: {stats:#?}");
    assert_eq!(stats.memory_limit_bytes, Some(32 * MIB));
    assert!(stats.memory_peak_bytes.expect("peak") <= 32 * MIB);
    assert!(stats.pids_current.expect("pids.current") <= 16);
    assert!(stats.nr_throttled.expect("nr_throttled") >= 1, "{stats:?}");
    assert!(stats.cpu_usage_usec.expect("usage") >= 300_000, "{stats:?}");
    let before = cgroup.procs().expect("procs");
    assert!(before.len() > 1, "strays expected: {before:?}");

    cgroup.kill_all().expect("kill_all");
    assert_eq!(cgroup.procs().expect("procs"), Vec::<i32>::new());
    let status = child.wait().expect("wait");
    eprintln!("shell: {status:?}; killed {} tasks", before.len());
    cgroup.remove().expect("remove");
    assert_gone(&manager, &name, &paths);
}

/// The v1 kill path for real: the same host seen without its cgroup2
/// mount, so kill_all has to freeze, SIGKILL and thaw.
#[test]
fn cgroup_privileged_v1_freezer_kill() {
    let _serial = serial();
    let manager =
        CgroupManager::detect_from(&mountinfo_only("cgroup"), Path::new("/")).expect("detect");
    assert_eq!(manager.mode(), CgroupMode::V1);
    let name = format!("test-{}-v1", std::process::id());
    let limits = Limits {
        memory_bytes: Some(32 * MIB),
        pids: Some(16),
        ..Limits::default()
    };
    let cgroup = manager.create(&name, &limits).expect("create");
    assert!(cgroup.unified_path().is_none());
    let mut child = spawn_held("sleep 60 & sleep 60 & (sleep 60 &) ; exec sleep 60");
    cgroup.add_process(child.id() as i32).expect("add_process");
    release(&mut child);
    wait_until("four tasks", Duration::from_secs(10), || {
        cgroup.procs().map(|p| p.len() == 4).unwrap_or(false)
    });
    cgroup.kill_all().expect("kill_all");
    assert!(cgroup.procs().expect("procs").is_empty());
    child.wait().expect("wait");
    let paths = cgroup.paths();
    cgroup.remove().expect("remove");
    assert_gone(&manager, &name, &paths);
}

/// Run the v2 backend on a cgroup2 mount given by its mountinfo line.
/// `mirror`: another mount of the same hierarchy, where the node must show too.
fn exercise_v2(manager: &CgroupManager, label: &str, mirror: Option<&Path>) -> PathBuf {
    assert_eq!(manager.mode(), CgroupMode::V2);
    eprintln!(
        "{label}: available controllers {:?}",
        manager.available_controllers()
    );
    let name = format!("test-{}-{label}", std::process::id());

    // This host binds every controller to v1: a limit must be refused.
    if !manager.available_controllers().contains(&Controller::Pids) {
        let err = manager
            .create(
                &name,
                &Limits {
                    pids: Some(8),
                    ..Limits::default()
                },
            )
            .expect_err("no pids controller on this cgroup2");
        eprintln!("{label}: {err}");
    }

    let cgroup = manager.create(&name, &Limits::default()).expect("create");
    let node = cgroup.unified_path().expect("v2 node").to_path_buf();
    if let Some(mirror) = mirror {
        let twin = mirror.join(PARENT).join(&name);
        assert!(
            twin.is_dir(),
            "{} not visible at {}",
            node.display(),
            twin.display()
        );
        eprintln!("{label}: {} is also {}", node.display(), twin.display());
    }
    let mut child =
        spawn_held("sleep 60 & (sleep 60 &); timeout 1 sh -c 'while :; do :; done'; exec sleep 60");
    cgroup.add_process(child.id() as i32).expect("add_process");
    release(&mut child);
    wait_until(
        "some cpu usage and 3+ tasks",
        Duration::from_secs(10),
        || {
            let usage = cgroup
                .stats()
                .ok()
                .and_then(|s| s.cpu_usage_usec)
                .unwrap_or(0);
            usage > 100_000 && cgroup.procs().map(|p| p.len() >= 3).unwrap_or(false)
        },
    );
    let stats = cgroup.stats().expect("stats");
    eprintln!(
        "{label} stats: {stats:?}; procs {:?}",
        cgroup.procs().expect("procs")
    );
    cgroup.kill_all().expect("kill_all via cgroup.kill");
    assert!(cgroup.procs().expect("procs").is_empty());
    assert_eq!(
        fs::read_keyed_u64(&node, "cgroup.events", "populated").expect("events"),
        Some(0)
    );
    child.wait().expect("wait");
    let paths = cgroup.paths();
    cgroup.remove().expect("remove");
    assert_gone(manager, &name, &paths);
    node
}

/// The v2 backend on the host's own cgroup2 mount (/sys/fs/cgroup/unified).
#[test]
fn cgroup_privileged_v2_on_unified_mount() {
    let _serial = serial();
    let manager =
        CgroupManager::detect_from(&mountinfo_only("cgroup2"), Path::new("/")).expect("detect");
    exercise_v2(&manager, "v2-unified", None);
}

const PRIVATE_MOUNT_ENV: &str = "ISOCHECK_TEST_PRIVATE_CGROUP2";

/// The v2 backend on a cgroup2 mounted by us at a temp dir, in a private
/// mount namespace (`unshare --mount --propagation private`, re-running
/// this test binary for the inner test), so the host's mounts never change.
#[test]
fn cgroup_privileged_v2_on_private_cgroup2_mount() {
    let _serial = serial();
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("timeout")
        .args(["60", "unshare", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([
            "--ignored",
            "--exact",
            "cgroups::privileged_tests::cgroup_privileged_v2_private_mount_inner",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(PRIVATE_MOUNT_ENV, "1")
        .output()
        .expect("run the inner test");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(out.status.success(), "inner test failed");
    assert!(text.contains("1 passed"), "inner test did not run");
}

#[test]
#[ignore = "run by cgroup_privileged_v2_on_private_cgroup2_mount inside a private mount namespace"]
fn cgroup_privileged_v2_private_mount_inner() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    assert_eq!(
        std::env::var(PRIVATE_MOUNT_ENV).as_deref(),
        Ok("1"),
        "run only by the outer test"
    );
    let dir = tempfile::Builder::new()
        .prefix("isocheck-cgroup2-")
        .tempdir()
        .expect("tempdir");
    mount(
        Some("cgroup2"),
        dir.path(),
        Some("cgroup2"),
        MsFlags::empty(),
        None::<&str>,
    )
    .expect("mount cgroup2");
    let line: String = mountinfo_only("cgroup2")
        .lines()
        .filter(|l| l.contains(&*dir.path().to_string_lossy()))
        .map(|l| format!("{l}\n"))
        .collect();
    eprintln!("private mount: {line}");
    let manager = CgroupManager::detect_from(&line, Path::new("/")).expect("detect");
    let node = exercise_v2(
        &manager,
        "v2-private",
        Some(Path::new("/sys/fs/cgroup/unified")),
    );
    assert!(!node.exists());
    umount2(dir.path(), MntFlags::MNT_DETACH).expect("umount");
}

/// v1 cpuset for real: the shared parent and the new cgroup start empty and
/// must be seeded before a task may join. Then a crashed run is simulated
/// (the cgroup is leaked with a task inside) and `isocheck cleanup`'s calls
/// remove it.
#[test]
fn cgroup_privileged_cpuset_and_leftover_cleanup() {
    let _serial = serial();
    let manager = CgroupManager::detect().expect("detect");
    let name = format!("test-{}-cpuset", std::process::id());
    let limits = Limits {
        memory_bytes: Some(32 * MIB),
        pids: Some(8),
        cpuset: Some(crate::spec::CpuSet {
            cpus: "0".into(),
            mems: None,
        }),
        ..Limits::default()
    };
    let cgroup = manager.create(&name, &limits).expect("create");
    let cpuset_dir = cgroup
        .paths()
        .into_iter()
        .find(|p| p.starts_with("/sys/fs/cgroup/cpuset"))
        .expect("a cpuset dir");
    assert_eq!(
        fs::read(&cpuset_dir, "cpuset.cpus").expect("read").trim(),
        "0"
    );
    assert!(!fs::read(&cpuset_dir, "cpuset.mems")
        .expect("read")
        .trim()
        .is_empty());

    let mut child = spawn_held("sleep 60 & exec sleep 60");
    cgroup
        .add_process(child.id() as i32)
        .expect("add_process (ENOSPC if cpuset not seeded)");
    release(&mut child);
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).expect("status");
    let allowed = status
        .lines()
        .find(|l| l.starts_with("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    assert_eq!(allowed.split_whitespace().last(), Some("0"), "{allowed}");
    wait_until("two tasks", Duration::from_secs(10), || {
        cgroup.procs().map(|p| p.len() == 2).unwrap_or(false)
    });

    // A crash: nobody removes it.
    let paths = cgroup.paths();
    std::mem::forget(cgroup);
    let ours: Vec<PathBuf> = manager
        .leftovers()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == name.as_str()))
        .collect();
    assert_eq!(ours.len(), paths.len(), "{ours:?} vs {paths:?}");
    for p in &ours {
        manager.remove_leftover(p).expect("remove_leftover");
    }
    child.wait().expect("wait");
    assert_gone(&manager, &name, &paths);
    assert!(matches!(
        manager.remove_leftover(Path::new("/sys/fs/cgroup/memory/process_api")),
        Err(CgroupError::NotOurs { .. })
    ));
}

/// Freeze and thaw for real: a burner (capped, and bounded by `timeout`)
/// uses no CPU while frozen and runs again once thawed.
#[test]
fn cgroup_privileged_freeze_stops_usage_and_thaw_resumes_it() {
    let _serial = serial();
    let manager = CgroupManager::detect().expect("detect");
    let name = format!("test-{}-freeze", std::process::id());
    let limits = Limits {
        memory_bytes: Some(32 * MIB),
        pids: Some(8),
        ..Limits::default()
    };
    let cgroup = manager.create(&name, &limits).expect("create");
    let paths = cgroup.paths();
    let mut child = spawn_held("exec timeout 20 sh -c 'while :; do :; done'");
    cgroup.add_process(child.id() as i32).expect("add_process");
    release(&mut child);
    let usage = || {
        cgroup
            .stats()
            .expect("stats")
            .cpu_usage_usec
            .expect("usage")
    };
    let window = Duration::from_millis(500);
    std::thread::sleep(Duration::from_millis(200));
    let running = usage();
    std::thread::sleep(window);
    cgroup.freeze().expect("freeze");
    let frozen = usage();
    assert!(frozen > running, "the burner ran: {running} -> {frozen}");
    std::thread::sleep(window);
    let still = usage();
    assert!(
        still - frozen <= 1_000,
        "used {} µs while frozen",
        still - frozen
    );
    cgroup.thaw().expect("thaw");
    std::thread::sleep(window);
    assert!(usage() > still, "no CPU after thaw");
    cgroup.kill_all().expect("kill_all");
    let _ = child.wait();
    cgroup.remove().expect("remove");
    assert_gone(&manager, &name, &paths);
}

/// Dropping a cgroup that still holds a task: the rmdir sweep is refused,
/// so the drop kills the task and then removes every directory. With a
/// `ParentHold` alive, the `isocheck` parents stay.
#[test]
fn cgroup_privileged_drop_kills_what_is_left_and_a_hold_keeps_the_parents() {
    use std::os::unix::process::ExitStatusExt;
    let _serial = serial();
    let manager = CgroupManager::detect().expect("detect");
    let hold = manager.hold_parents();
    let name = format!("test-{}-drop", std::process::id());
    let limits = Limits {
        pids: Some(8),
        ..Limits::default()
    };
    let cgroup = manager.create(&name, &limits).expect("create");
    let paths = cgroup.paths();
    // Never released: it sits in `read` until the drop's kill.
    let mut child = spawn_held("exec sleep 60");
    cgroup.add_process(child.id() as i32).expect("add_process");
    drop(cgroup);
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_gone(&manager, &name, &paths);
    for p in &paths {
        let parent = p.parent().expect("parent");
        assert!(parent.is_dir(), "{} removed under a hold", parent.display());
    }
    drop(hold);
}

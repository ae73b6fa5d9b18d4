//! Root tests: real containers from a minimal rootfs holding only the static
//! probe (harness/probe), so they need nothing installed beyond what
//! `./dev` installs. Run with `cargo test -p isocheck-runtime --features
//! privileged` as root. Each test checks that it left no temp dir behind.
#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

use isocheck_runtime::spec::{BindMount, RootfsSource};
use isocheck_runtime::{
    minimal_rootfs, Container, ContainerSpec, Error, SpawnOptions, StdioMode, Step,
};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Spawns share kernel state (mount table reads, /tmp): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// The probe's crate, beside this one in the workspace.
fn probe_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../harness/probe")
}

/// Newest modification time of the probe's sources.
fn newest_source() -> SystemTime {
    let dir = probe_crate();
    let mut newest = SystemTime::UNIX_EPOCH;
    let mut stack = vec![dir.join("src"), dir.join("Cargo.toml")];
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
        newest = newest.max(meta.modified().unwrap());
    }
    newest
}

/// The static probe: `ISOCHECK_PROBE`; else the one `cargo test --workspace`
/// built beside this test (target/<triple>/<profile>/) when it is newer than
/// its sources; else built now into a target dir of its own (the cargo that
/// runs this test holds the main target dir's lock).
fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        if let Some(p) = std::env::var_os("ISOCHECK_PROBE") {
            return PathBuf::from(p);
        }
        let exe = std::env::current_exe().unwrap();
        let sibling = exe.ancestors().nth(2).unwrap().join("isocheck-probe");
        let fresh = std::fs::metadata(&sibling)
            .and_then(|m| m.modified())
            .is_ok_and(|built| built >= newest_source());
        if fresh {
            return sibling;
        }
        let target_dir = exe.ancestors().nth(4).unwrap().join("probe-for-tests");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-q", "-p", "isocheck-probe", "--target-dir"])
            .arg(&target_dir)
            .current_dir(probe_crate())
            .status()
            .unwrap();
        assert!(status.success(), "building the probe failed: {status}");
        // The workspace's .cargo/config.toml names the target triple.
        let built = target_dir.join("x86_64-unknown-linux-gnu/debug/isocheck-probe");
        assert!(built.is_file(), "no probe at {}", built.display());
        built
    })
}

struct Fixture {
    _dir: tempfile::TempDir,
    rootfs: PathBuf,
    run_id: String,
}

fn fixture() -> Fixture {
    let dir = tempfile::Builder::new()
        .prefix("isocheck-test-")
        .tempdir()
        .unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    minimal_rootfs(&rootfs, &[(probe(), "/probe")]).unwrap();
    let run_id = format!("t{}", std::process::id());
    Fixture {
        _dir: dir,
        rootfs,
        run_id,
    }
}

/// A container running the probe with `args` (action first).
fn spec(rootfs: &Path, args: &[&str]) -> ContainerSpec {
    let mut command = vec!["/probe".to_string()];
    command.extend(args.iter().map(|a| a.to_string()));
    ContainerSpec {
        rootfs: isocheck_runtime::spec::Rootfs {
            source: RootfsSource::Dir(rootfs.to_path_buf()),
            ..Default::default()
        },
        hostname: Some("isoc-test".into()),
        command,
        ..Default::default()
    }
}

fn temp_dirs(run_id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(isocheck_runtime::rootfs::temp_base())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("isocheck-{run_id}-")))
        })
        .collect()
}

/// The probe's observation: the last line of its output, as JSON.
fn observation(out: &str) -> Value {
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not an observation ({e}): {out:?}"))
}

/// Runs the probe in a container, returns (status, observation).
fn run(f: &Fixture, spec: &ContainerSpec, name: &str) -> (isocheck_runtime::ExitStatus, Value) {
    let mut opts = SpawnOptions::new(&f.run_id, name);
    opts.stdout = StdioMode::Piped;
    let mut c = Container::spawn(spec, opts).unwrap();
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    let status = c
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("container exits");
    drop(c);
    assert!(temp_dirs(&f.run_id).is_empty(), "temp dir left behind");
    assert_eq!(status.code, Some(0), "{name}: {out}");
    (status, observation(&out))
}

/// The mount points the `mounts` action listed.
fn mount_points(obs: &Value) -> Vec<&str> {
    obs["mounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no mounts: {obs}"))
        .iter()
        .map(|m| m["point"].as_str().unwrap())
        .collect()
}

/// The names `ls` listed for its `index`th path.
fn names(obs: &Value, index: usize) -> Vec<&str> {
    obs["listings"][index]["names"]
        .as_array()
        .unwrap_or_else(|| panic!("no listing #{index}: {obs}"))
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect()
}

#[test]
fn pid1_hostname_and_dropped_caps() {
    let _g = SERIAL.lock();
    let f = fixture();
    let (_, pids) = run(&f, &spec(&f.rootfs, &["pids"]), "pids");
    assert_eq!(pids["pid"], 1, "{pids}");
    let (_, host) = run(&f, &spec(&f.rootfs, &["hostname"]), "hostname");
    assert_eq!(host["hostname"], "isoc-test", "{host}");
    let (_, status) = run(&f, &spec(&f.rootfs, &["status"]), "status");
    assert_eq!(status["cap_eff"], "0000000000000000", "{status}");
    // With a cgroup namespace every hierarchy's path is the namespace root.
    assert_eq!(status["cgroups_all_root"], true, "{status}");
}

#[test]
fn missing_command_names_the_execve_step() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, &["noop"]);
    s.command = vec!["/bin/does-not-exist".into()];
    let err = Container::spawn(&s, SpawnOptions::new(&f.run_id, "nocmd")).unwrap_err();
    match &err {
        Error::Child(c) => {
            assert_eq!(c.step, Step::Execve);
            assert_eq!(c.path, "/bin/does-not-exist");
        }
        other => panic!("expected a child error, got {other}"),
    }
    assert!(
        err.to_string().contains("execve /bin/does-not-exist"),
        "{err}"
    );
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn overlay_leaves_the_image_untouched() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(
        &f.rootfs,
        &["write", "--path", "/etc/written", "--path", "/bin/new"],
    );
    let (_, obs) = run(&f, &s, "overlay");
    for w in obs["writes"].as_array().unwrap() {
        assert_eq!(w["errno"], Value::Null, "{obs}");
    }
    assert!(!f.rootfs.join("etc/written").exists());
    assert!(!f.rootfs.join("bin/new").exists());
}

#[test]
fn readonly_bind_is_readonly_with_its_submounts() {
    let _g = SERIAL.lock();
    let f = fixture();
    // A source with a tmpfs submount, made in our own mount namespace.
    let src = tempfile::Builder::new()
        .prefix("isocheck-test-src-")
        .tempdir()
        .unwrap();
    let sub = src.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let mut s = spec(
        &f.rootfs,
        &["write", "--path", "/data/x", "--path", "/data/sub/y"],
    );
    s.mounts.push(BindMount {
        source: src.path().to_path_buf(),
        destination: "/data".into(),
        readonly: true,
    });
    let (_, writes) = run(&f, &s, "robind");
    s.command = vec![
        "/probe".into(),
        "mounts".into(),
        "--under".into(),
        "/data".into(),
    ];
    let (_, mounts) = run(&f, &s, "robind-mounts");
    nix::mount::umount(&sub).unwrap();
    for w in writes["writes"].as_array().unwrap() {
        assert_eq!(w["errno"], "EROFS", "{writes}");
    }
    let data = mounts["mounts"].as_array().unwrap();
    let points: Vec<&str> = data.iter().map(|m| m["point"].as_str().unwrap()).collect();
    assert_eq!(points, ["/data", "/data/sub"], "{mounts}");
    for m in data {
        assert!(
            m["options"].as_array().unwrap().iter().any(|o| o == "ro"),
            "{m}"
        );
    }
}

#[test]
fn exec_joins_the_namespaces() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(&f.rootfs, &["wait"]);
    let mut opts = SpawnOptions::new(&f.run_id, "exec");
    // `wait` holds until stdin says go or closes: keep it open.
    opts.stdin = StdioMode::Piped;
    opts.stdout = StdioMode::Null;
    let mut c = Container::spawn(&s, opts).unwrap();
    let _stdin = c.take_stdin();
    let mut e = c
        .exec(&["/probe".into(), "ns".into()], StdioMode::Piped)
        .unwrap();
    let mut out = String::new();
    e.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(e.wait().unwrap().code, Some(0), "{out}");
    let obs = observation(&out);
    let inodes = c.namespace_inodes();
    assert_eq!(obs["pid1_comm"], "probe", "{obs}");
    assert!(obs["pid"].as_i64().unwrap() > 1, "{obs}");
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_eq!(obs["ns"][ns], inodes[ns], "{ns}: {obs}");
    }
    c.kill_init().unwrap();
    drop(c);
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn time_namespace_shifts_boottime() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(
        &f.rootfs,
        &["clocks", "--host-monotonic", "0", "--host-boottime", "0"],
    );
    s.namespaces.time = true;
    s.time_offsets.boottime_secs = 100_000;
    s.time_offsets.monotonic_secs = 100_000;
    let (_, obs) = run(&f, &s, "timens");
    for clock in ["boottime_s", "monotonic_s"] {
        let inside = obs[clock].as_f64().unwrap();
        assert!(inside > 100_000.0, "{clock} {inside} has no offset: {obs}");
    }
}

#[test]
fn user_namespace_maps_root_and_keeps_named_caps() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, &["id", "--create", "/ok"]);
    s.namespaces.user = true;
    s.user = Some(isocheck_runtime::spec::UserMapping {
        uid_map: vec![isocheck_runtime::spec::IdMap {
            inside: 0,
            outside: 100_000,
            count: 65536,
        }],
        gid_map: vec![isocheck_runtime::spec::IdMap {
            inside: 0,
            outside: 100_000,
            count: 65536,
        }],
    });
    s.capabilities = vec!["CAP_NET_BIND_SERVICE".into(), "CAP_CHOWN".into()];
    let (_, id) = run(&f, &s, "userns");
    assert_eq!(id["uid"], 0, "{id}");
    // With locked mounts (the default) PID 1 is in a user namespace nested
    // in the container's, mapping the same ids onto themselves: its map,
    // read inside, is relative to the container's namespace.
    let map = |id: &Value| {
        id["uid_map"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(map(&id), ["0", "0", "65536"], "{id}");
    assert_eq!(id["create_errno"], Value::Null, "{id}");
    // Without the nested namespace the map is the host's.
    let mut unlocked = s.clone();
    unlocked.hardening.locked_mounts = false;
    let (_, id) = run(&f, &unlocked, "userns-unlocked");
    assert_eq!(map(&id), ["0", "100000", "65536"], "{id}");
    s.command = vec!["/probe".into(), "status".into()];
    let (_, status) = run(&f, &s, "userns-status");
    // CAP_CHOWN = bit 0, CAP_NET_BIND_SERVICE = bit 10.
    for set in ["cap_eff", "cap_bnd", "cap_amb"] {
        assert_eq!(status[set], "0000000000000401", "{set}: {status}");
    }
}

#[test]
fn tar_rootfs_and_hooks_run_before_exec() {
    let _g = SERIAL.lock();
    let f = fixture();
    let tarball = f._dir.path().join("image.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &f.rootfs).unwrap();
    b.finish().unwrap();
    drop(b);
    let mut s = spec(&f.rootfs, &["read", "--path", "/etc/hostname"]);
    s.rootfs.source = RootfsSource::Tar(tarball);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let seen2 = seen.clone();
    let mut opts = SpawnOptions::new(&f.run_id, "tar");
    opts.stdout = StdioMode::Piped;
    s.no_new_privs = true;
    opts.parent_setup.push(Box::new(move |pid| {
        // The child is still waiting: not yet in its cgroup's v1
        // directories (they arrive with GO) nor confined.
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        if !status.lines().any(|l| l == "NoNewPrivs:\t0") {
            return Err(format!("already confined:\n{status}"));
        }
        seen2.store(pid, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }));
    let mut c = Container::spawn(&s, opts).unwrap();
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(c.wait().unwrap().code, Some(0));
    // minimal_rootfs's /etc/hostname, "isocheck\n", read from the unpacked tar.
    let obs = observation(&out);
    assert_eq!(
        (&obs["errno"], &obs["bytes"]),
        (&Value::Null, &9.into()),
        "{obs}"
    );
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), c.pid());
    drop(c);
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn failing_hook_aborts_and_cleans_up() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(&f.rootfs, &["noop"]);
    let mut opts = SpawnOptions::new(&f.run_id, "hookfail");
    opts.parent_setup.push(Box::new(|_| Ok(())));
    opts.parent_setup
        .push(Box::new(|_| Err("no cgroup for you".into())));
    let err = Container::spawn(&s, opts).unwrap_err();
    assert_eq!(
        err.to_string(),
        "parent_setup hook #1 failed: no cgroup for you"
    );
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn pivot_root_detaches_the_old_root_and_chroot_control_runs() {
    let _g = SERIAL.lock();
    let f = fixture();
    // (The escape itself is the probe's job; here: both entries work and
    // pivot_root leaves no trace of the old root.)
    let mut s = spec(&f.rootfs, &["ls", "--path", "/", "--path", "/etc"]);
    let want_root = [
        "bin", "dev", "etc", "mnt", "probe", "proc", "root", "sys", "tmp",
    ];
    let (_, pivot) = run(&f, &s, "pivot");
    assert_eq!(names(&pivot, 0), want_root, "{pivot}");
    assert!(names(&pivot, 1).contains(&"hostname"), "{pivot}");
    s.rootfs.entry = isocheck_runtime::spec::RootEntry::ChrootOnly;
    let (_, chroot) = run(&f, &s, "chroot");
    assert_eq!(names(&chroot, 0), want_root, "{chroot}");
    assert!(names(&chroot, 1).contains(&"hostname"), "{chroot}");
}

#[test]
fn without_a_net_namespace_sys_is_the_hosts_read_only() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, &["mounts", "--under", "/sys"]);
    s.namespaces.net = false;
    let (_, mounts) = run(&f, &s, "nonet");
    let sys = mounts["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["point"] == "/sys")
        .unwrap_or_else(|| panic!("no /sys mount: {mounts}"));
    assert!(
        sys["options"].as_array().unwrap().iter().any(|o| o == "ro"),
        "{sys}"
    );
    s.command = vec![
        "/probe".into(),
        "write".into(),
        "--path".into(),
        "/sys/x".into(),
    ];
    let (_, write) = run(&f, &s, "nonet-write");
    assert_eq!(write["writes"][0]["errno"], "EROFS", "{write}");
}

#[test]
fn oci_layout_whiteouts_hide_lower_files() {
    let _g = SERIAL.lock();
    let f = fixture();
    let layout = f._dir.path().join("oci");
    let layer = |base: Option<&Path>, extra: &[(&str, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        if let Some(base) = base {
            b.append_dir_all(".", base).unwrap();
        }
        for (path, data) in extra {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let l0 = layer(Some(&f.rootfs), &[("etc/gone", b"x"), ("opaque/old", b"x")]);
    let l1 = layer(
        None,
        &[
            ("etc/.wh.gone", b""),
            ("opaque/.wh..wh..opq", b""),
            ("opaque/new", b"y"),
        ],
    );
    let t = "application/vnd.oci.image.layer.v1.tar";
    isocheck_runtime::rootfs::write_oci_layout(&layout, &[(t, &l0), (t, &l1)]).unwrap();
    let mut s = spec(&f.rootfs, &["ls", "--path", "/etc", "--path", "/opaque"]);
    s.rootfs.source = RootfsSource::OciLayout(layout);
    let (_, obs) = run(&f, &s, "oci");
    assert!(names(&obs, 0).contains(&"passwd"), "{obs}");
    assert!(!names(&obs, 0).contains(&"gone"), "{obs}");
    assert_eq!(names(&obs, 1), ["new"], "{obs}");
}

// ---------------------------------------------------------------------------
// Hostile images: symlinks at mount targets and their parents
// ---------------------------------------------------------------------------

/// A host directory a hostile image's symlinks point at. It must end as it
/// began, and so must this thread's mount table: no entry created below
/// the canary, no mount left anywhere (on the canary or elsewhere).
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-test-canary-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("keep"), "keep").unwrap();
        Canary { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Every entry below the canary (symlinks not followed), and every
    /// mount point of this thread's namespace.
    fn snapshot(&self) -> (Vec<PathBuf>, Vec<String>) {
        let mut entries = Vec::new();
        let mut stack = vec![self.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                entries.push(p);
            }
        }
        entries.sort();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/thread-self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
            .collect();
        mounts.sort();
        (entries, mounts)
    }

    /// `rest` below the canary, spelled from inside the image with more
    /// `..` than any root is deep.
    fn dotdot(&self, rest: &str) -> String {
        format!("{}{}{rest}", "../".repeat(16), self.path().display())
    }
}

/// `..` enough to climb out of any root, then `rest` (absolute).
fn climb(rest: &str) -> String {
    format!("{}{}", "../".repeat(16).trim_end_matches('/'), rest)
}

/// This test thread gets a mount namespace of its own whose `/` is shared
/// in peer groups of its own (as on a systemd host): a container built
/// without rslave then copies every mount it makes into it, so a mount
/// that escaped the root would stay in /proc/thread-self/mountinfo.
fn shared_mount_namespace_of_this_thread() {
    use nix::mount::{mount, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
    for flags in [MsFlags::MS_PRIVATE, MsFlags::MS_SHARED] {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | flags,
            None::<&str>,
        )
        .unwrap();
    }
}

/// How a hostile container ended: the probe's observation, or the step,
/// errno and in-container path (what follows `/root`) that refused it.
type Outcome = Result<Value, (Step, nix::errno::Errno, String)>;

/// Starts `s` twice, with rslave (what users get) and without it (so an
/// escaped mount would reach this thread's table), checking the canary and
/// the mount table after each; both runs must end alike.
fn run_hostile(f: &Fixture, canary: &Canary, s: &ContainerSpec, name: &str) -> Outcome {
    let before = canary.snapshot();
    let mut outcomes = Vec::new();
    for rslave in [true, false] {
        let mut s = s.clone();
        s.hardening.rslave_root = rslave;
        let mut opts = SpawnOptions::new(&f.run_id, format!("{name}-{rslave}"));
        opts.stdout = StdioMode::Piped;
        let outcome = match Container::spawn(&s, opts) {
            Ok(mut c) => {
                let mut out = String::new();
                c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
                let status = c.wait_timeout(Duration::from_secs(20)).unwrap().unwrap();
                assert_eq!(status.code, Some(0), "{name}: {out}");
                Ok(observation(&out))
            }
            Err(Error::Child(e)) => {
                let inside = e.path.split_once("/root").map(|(_, p)| p.to_owned());
                Err((e.step, e.errno, inside.unwrap_or(e.path)))
            }
            Err(other) => panic!("{name}: expected a child error, got {other}"),
        };
        assert_eq!(
            canary.snapshot(),
            before,
            "{name} (rslave {rslave}) changed the canary or the mount table"
        );
        assert!(temp_dirs(&f.run_id).is_empty(), "temp dir left behind");
        outcomes.push(outcome);
    }
    assert_eq!(
        outcomes[0], outcomes[1],
        "{name}: rslave changed the outcome"
    );
    outcomes.remove(0)
}

/// Replaces `dir` of the image (empty in the fixture, if there) with a
/// symlink.
fn relink(rootfs: &Path, dir: &str, to: impl AsRef<Path>) {
    let at = rootfs.join(dir.trim_start_matches('/'));
    if at.is_dir() {
        std::fs::remove_dir(&at).unwrap();
    }
    std::os::unix::fs::symlink(to, at).unwrap();
}

fn ro_bind(source: &Path, destination: &str) -> BindMount {
    BindMount {
        source: source.to_path_buf(),
        destination: destination.into(),
        readonly: true,
    }
}

#[test]
fn hostile_bind_targets_resolve_inside_the_root() {
    let _g = SERIAL.lock();
    shared_mount_namespace_of_this_thread();
    let f = fixture();
    let canary = Canary::new();
    let src = tempfile::Builder::new()
        .prefix("isocheck-test-src-")
        .tempdir()
        .unwrap();
    std::fs::write(src.path().join("token"), "from-the-source\n").unwrap();

    // /a -> /: a bind at /a/b is the container's /b (created in it).
    relink(&f.rootfs, "/a", "/");
    // /up -> ../../..(more than any root)/srv: the image's /srv.
    std::fs::create_dir(f.rootfs.join("srv")).unwrap();
    relink(&f.rootfs, "/up", climb("/srv"));
    // /etc2 -> /etc, bind on a file below it: the image's /etc/hostname.
    relink(&f.rootfs, "/etc2", "/etc");
    let mut s = spec(&f.rootfs, &["mounts"]);
    s.mounts = vec![
        ro_bind(src.path(), "/a/b"),
        ro_bind(src.path(), "/up/data"),
        ro_bind(&src.path().join("token"), "/etc2/hostname"),
    ];
    let obs = run_hostile(&f, &canary, &s, "hostile-binds").expect("starts");
    let points = mount_points(&obs);
    for at in ["/b", "/srv/data", "/etc/hostname"] {
        assert!(points.contains(&at), "{at} not mounted inside: {obs}");
    }

    // Links to the host's canary, absolute or by `..`, at the target or at
    // a parent: inside the root they lead nowhere, so they are refused.
    for (link, to, dest) in [
        ("/x", canary.path().display().to_string(), "/x"),
        ("/v", canary.path().display().to_string(), "/v/deeper"),
        ("/y", canary.dotdot(""), "/y"),
        (
            "/z",
            canary.path().join("z").display().to_string(),
            "/z/deeper",
        ),
        ("/w", canary.dotdot("/w"), "/w/deeper/still"),
    ] {
        relink(&f.rootfs, link, &to);
        let mut s = spec(&f.rootfs, &["noop"]);
        s.mounts = vec![ro_bind(src.path(), dest)];
        let err = run_hostile(&f, &canary, &s, "hostile-parent").expect_err("refused");
        assert_eq!(
            err,
            (
                Step::CreateMountTarget,
                nix::errno::Errno::ENOENT,
                link.into()
            ),
            "{dest}"
        );
    }
}

#[test]
fn hostile_system_dirs_resolve_inside_the_root() {
    let _g = SERIAL.lock();
    shared_mount_namespace_of_this_thread();
    let canary = Canary::new();
    for (dir, fstype, step) in [
        ("/proc", "proc", Step::MountProc),
        ("/dev", "tmpfs", Step::MountDevTmpfs),
        ("/sys", "sysfs", Step::MountSys),
        ("/tmp", "tmpfs", Step::MountTmp),
    ] {
        let name = dir.trim_start_matches('/');
        // A `..` link to a directory the image has: mounted there.
        let f = fixture();
        std::fs::create_dir_all(f.rootfs.join("srv").join(name)).unwrap();
        relink(&f.rootfs, dir, climb(&format!("/srv/{name}")));
        let s = spec(&f.rootfs, &["mounts"]);
        let obs = run_hostile(&f, &canary, &s, &format!("in-{name}")).expect("starts");
        let at = format!("/srv/{name}");
        let typed = obs["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["point"] == at.as_str() && m["fstype"] == fstype)
            .count();
        assert_eq!(typed, 1, "{dir}: {obs}");

        // Links to the host's canary, absolute or by `..`: refused.
        for to in [
            canary.path().join(name).display().to_string(),
            canary.dotdot(&format!("/{name}")),
        ] {
            let f = fixture();
            relink(&f.rootfs, dir, &to);
            let s = spec(&f.rootfs, &["noop"]);
            let err = run_hostile(&f, &canary, &s, &format!("out-{name}")).expect_err("refused");
            // The canary lives under /tmp: a /tmp link to it goes through itself.
            let errno = if dir == "/tmp" {
                nix::errno::Errno::ELOOP
            } else {
                nix::errno::Errno::ENOENT
            };
            assert_eq!(err, (step, errno, dir.into()), "{to}");
        }
    }
}

#[test]
fn hostile_tar_image_resolves_inside_the_root() {
    let _g = SERIAL.lock();
    shared_mount_namespace_of_this_thread();
    let f = fixture();
    let canary = Canary::new();
    // Absolute links survive unpacking (they are the image's own paths);
    // the mounts must still resolve them inside the root.
    relink(&f.rootfs, "/a", "/");
    relink(&f.rootfs, "/tmp", "/var/tmp");
    std::fs::create_dir_all(f.rootfs.join("var/tmp")).unwrap();
    let tarball = f._dir.path().join("hostile.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tarball).unwrap());
    b.follow_symlinks(false);
    b.append_dir_all(".", &f.rootfs).unwrap();
    b.finish().unwrap();
    drop(b);
    let mut s = spec(&f.rootfs, &["mounts"]);
    s.rootfs.source = RootfsSource::Tar(tarball);
    s.mounts = vec![ro_bind(canary.path(), "/a/b")];
    let obs = run_hostile(&f, &canary, &s, "hostile-tar").expect("starts");
    let points = mount_points(&obs);
    for at in ["/b", "/var/tmp"] {
        assert!(points.contains(&at), "{at} not mounted inside: {obs}");
    }
}

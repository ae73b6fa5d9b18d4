//! Root tests: real containers from a minimal busybox rootfs. Run with
//! `cargo test -p isocheck-runtime --features privileged` as root. Each
//! test checks that it left no temp dir behind.
#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

use isocheck_runtime::spec::{BindMount, RootfsSource};
use isocheck_runtime::{
    minimal_rootfs, Container, ContainerSpec, Error, SpawnOptions, StdioMode, Step,
};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

const BUSYBOX: &str = "/usr/bin/busybox";
/// Spawns share kernel state (mount table reads, /tmp): one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

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
    minimal_rootfs(&rootfs, &[(Path::new(BUSYBOX), "/bin/busybox")]).unwrap();
    for applet in [
        "sh", "cat", "hostname", "ls", "echo", "touch", "grep", "mount", "id", "readlink",
    ] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let run_id = format!("t{}", std::process::id());
    Fixture {
        _dir: dir,
        rootfs,
        run_id,
    }
}

fn spec(rootfs: &Path, script: &str) -> ContainerSpec {
    ContainerSpec {
        rootfs: isocheck_runtime::spec::Rootfs {
            source: RootfsSource::Dir(rootfs.to_path_buf()),
            ..Default::default()
        },
        hostname: Some("isoc-test".into()),
        command: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

fn temp_dirs(run_id: &str) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
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

/// Runs `script` in a container, returns (status, stdout).
fn run(f: &Fixture, spec: &ContainerSpec, name: &str) -> (isocheck_runtime::ExitStatus, String) {
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
    (status, out)
}

#[test]
fn pid1_hostname_and_dropped_caps() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(
        &f.rootfs,
        "echo pid=$$; hostname; grep CapEff /proc/self/status; grep -v ':/$' /proc/self/cgroup; echo end",
    );
    let (status, out) = run(&f, &s, "basic");
    assert_eq!(status.code, Some(0), "{out}");
    assert!(out.contains("pid=1\n"), "{out}");
    assert!(out.contains("isoc-test\n"), "{out}");
    assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
    // With a cgroup namespace every hierarchy's path is the namespace root.
    assert!(out.ends_with("CapEff:\t0000000000000000\nend\n"), "{out}");
}

#[test]
fn missing_command_names_the_execve_step() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, "");
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
        "touch /etc/written && echo hi > /bin/new && ls /etc",
    );
    let (status, out) = run(&f, &s, "overlay");
    assert_eq!(status.code, Some(0), "{out}");
    assert!(out.contains("written"), "{out}");
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
        "touch /data/x 2>/dev/null && echo top-writable; touch /data/sub/y 2>/dev/null && echo sub-writable; grep ' /data' /proc/self/mountinfo",
    );
    s.mounts.push(BindMount {
        source: src.path().to_path_buf(),
        destination: "/data".into(),
        readonly: true,
    });
    let (status, out) = run(&f, &s, "robind");
    nix::mount::umount(&sub).unwrap();
    assert_eq!(status.code, Some(0), "{out}");
    assert!(!out.contains("writable"), "{out}");
    let data: Vec<&str> = out.lines().filter(|l| l.contains(" /data")).collect();
    assert_eq!(data.len(), 2, "{out}");
    for line in data {
        assert!(
            line.split(' ')
                .nth(5)
                .unwrap()
                .split(',')
                .any(|o| o == "ro"),
            "{line}"
        );
    }
}

#[test]
fn exec_joins_the_namespaces() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(&f.rootfs, "sleep 30");
    let mut opts = SpawnOptions::new(&f.run_id, "exec");
    opts.stdout = StdioMode::Null;
    let c = Container::spawn(&s, opts).unwrap();
    let mut e = c
        .exec(&["/bin/sh".into(), "-c".into(), "hostname; echo $$; for n in mnt pid net uts ipc cgroup; do readlink /proc/self/ns/$n; done".into()], StdioMode::Piped)
        .unwrap();
    let mut out = String::new();
    e.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(e.wait().unwrap().code, Some(0), "{out}");
    let inodes = c.namespace_inodes();
    assert!(out.starts_with("isoc-test\n"), "{out}");
    for ns in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        let want = format!("{ns}:[{}]", inodes[ns]);
        assert!(out.contains(&want), "{want} not in {out}");
    }
    c.kill_init().unwrap();
    drop(c);
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn time_namespace_shifts_boottime() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, "cat /proc/uptime");
    s.namespaces.time = true;
    s.time_offsets.boottime_secs = 100_000;
    s.time_offsets.monotonic_secs = 100_000;
    let (status, out) = run(&f, &s, "timens");
    assert_eq!(status.code, Some(0), "{out}");
    let up: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(up > 100_000.0, "uptime {up} has no offset");
}

#[test]
fn user_namespace_maps_root_and_keeps_named_caps() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(&f.rootfs, "id -u; grep -E 'CapEff|CapBnd|CapAmb' /proc/self/status; cat /proc/self/uid_map; touch /ok && echo wrote");
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
    let (status, out) = run(&f, &s, "userns");
    assert_eq!(status.code, Some(0), "{out}");
    assert!(out.starts_with("0\n"), "{out}");
    // CAP_CHOWN = bit 0, CAP_NET_BIND_SERVICE = bit 10.
    for set in ["CapEff", "CapBnd", "CapAmb"] {
        assert!(
            out.contains(&format!("{set}:\t0000000000000401")),
            "{set}: {out}"
        );
    }
    assert!(out.contains("100000"), "{out}");
    assert!(out.contains("wrote"), "{out}");
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
    let mut s = spec(&f.rootfs, "cat /etc/hostname");
    s.rootfs.source = RootfsSource::Tar(tarball);
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicI32::new(0));
    let seen2 = seen.clone();
    let mut opts = SpawnOptions::new(&f.run_id, "tar");
    opts.stdout = StdioMode::Piped;
    opts.parent_setup.push(Box::new(move |pid| {
        // The child is still waiting: its root is the host's.
        let root = std::fs::read_link(format!("/proc/{pid}/root")).map_err(|e| e.to_string())?;
        if root != Path::new("/") {
            return Err(format!("root already changed: {}", root.display()));
        }
        seen2.store(pid, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }));
    let mut c = Container::spawn(&s, opts).unwrap();
    let mut out = String::new();
    c.take_stdout().unwrap().read_to_string(&mut out).unwrap();
    assert_eq!(c.wait().unwrap().code, Some(0));
    assert_eq!(out, "isocheck\n");
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), c.pid());
    drop(c);
    assert!(temp_dirs(&f.run_id).is_empty());
}

#[test]
fn failing_hook_aborts_and_cleans_up() {
    let _g = SERIAL.lock();
    let f = fixture();
    let s = spec(&f.rootfs, "true");
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
    let script = "ls -a / | grep -c put-old; cat /etc/hostname";
    let mut s = spec(&f.rootfs, script);
    let (_, pivot) = run(&f, &s, "pivot");
    assert_eq!(pivot, "0\nisocheck\n");
    s.rootfs.entry = isocheck_runtime::spec::RootEntry::ChrootOnly;
    let (status, chroot) = run(&f, &s, "chroot");
    assert_eq!(status.code, Some(0), "{chroot}");
    assert_eq!(chroot, "0\nisocheck\n");
}

#[test]
fn without_a_net_namespace_sys_is_the_hosts_read_only() {
    let _g = SERIAL.lock();
    let f = fixture();
    let mut s = spec(
        &f.rootfs,
        "grep ' /sys ' /proc/self/mountinfo; touch /sys/x 2>/dev/null && echo writable; true",
    );
    s.namespaces.net = false;
    let (status, out) = run(&f, &s, "nonet");
    assert_eq!(status.code, Some(0), "{out}");
    assert!(out.contains(" ro,"), "{out}");
    assert!(!out.contains("writable"), "{out}");
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
    let mut s = spec(&f.rootfs, "ls /etc /opaque");
    s.rootfs.source = RootfsSource::OciLayout(layout);
    let (status, out) = run(&f, &s, "oci");
    assert_eq!(status.code, Some(0), "{out}");
    assert!(out.contains("passwd"), "{out}");
    assert!(!out.contains("gone"), "{out}");
    assert!(!out.contains("old"), "{out}");
    assert!(out.contains("new"), "{out}");
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

/// How a hostile container ended: its stdout, or the step, errno and
/// in-container path (what follows `/root`) that refused it.
type Outcome = Result<String, (Step, nix::errno::Errno, String)>;

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
                Ok(out)
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
    let mut s = spec(
        &f.rootfs,
        "cat /b/token /srv/data/token /etc/hostname; grep -c -e ' /b ' -e ' /srv/data ' -e ' /etc/hostname ' /proc/self/mountinfo",
    );
    s.mounts = vec![
        ro_bind(src.path(), "/a/b"),
        ro_bind(src.path(), "/up/data"),
        ro_bind(&src.path().join("token"), "/etc2/hostname"),
    ];
    let out = run_hostile(&f, &canary, &s, "hostile-binds").expect("starts");
    assert_eq!(out, "from-the-source\n".repeat(3) + "3\n", "{out}");

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
        let mut s = spec(&f.rootfs, "true");
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
        let s = spec(
            &f.rootfs,
            &format!("grep ' /srv/{name} ' /proc/self/mountinfo | grep -c ' - {fstype} '"),
        );
        let out = run_hostile(&f, &canary, &s, &format!("in-{name}")).expect("starts");
        assert_eq!(out, "1\n", "{dir}: {out}");

        // Links to the host's canary, absolute or by `..`: refused.
        for to in [
            canary.path().join(name).display().to_string(),
            canary.dotdot(&format!("/{name}")),
        ] {
            let f = fixture();
            relink(&f.rootfs, dir, &to);
            let s = spec(&f.rootfs, "true");
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
    let mut s = spec(
        &f.rootfs,
        "grep -c -e ' /b ' -e ' /var/tmp ' /proc/self/mountinfo",
    );
    s.rootfs.source = RootfsSource::Tar(tarball);
    s.mounts = vec![ro_bind(canary.path(), "/a/b")];
    let out = run_hostile(&f, &canary, &s, "hostile-tar").expect("starts");
    assert_eq!(out, "2\n");
}

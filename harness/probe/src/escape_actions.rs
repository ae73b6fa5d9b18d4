//! The classic ways out of a badly built container. Each is tried exactly as
//! far as needed to see whether the kernel allows it, and no further: the
//! probe opens dangerous files without writing them, reads instead of
//! writing outside its root, and undoes what it can.

use std::fs::{self, OpenOptions};
use std::io::Write;

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::mount;
use nix::sched::{setns, CloneFlags};
use nix::sys::ptrace;
use nix::sys::stat::{makedev, mknod as mknod_at, Mode, SFlag};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::{self, Gid, Pid, Uid};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use crate::args::Args;
use crate::fs_actions::mount_tmpfs;
use crate::output::{self, Observation};
use crate::ProbeError;

/// The directory the chroot escape chroots into first.
const ESCAPE_DIR: &str = "/tmp/isocheck-escape";
/// More `..` steps than any real path is deep.
const ESCAPE_CLIMB: usize = 64;
/// The owner `caps` gives a file: never the owner it had, so chown always
/// changes something and needs CAP_CHOWN.
const FOREIGN_ID: u32 = 4242;
const SYSLOG_ACTION_READ_ALL: libc::c_int = 3;
const SYSLOG_ACTION_SIZE_BUFFER: libc::c_int = 10;

/// chroot into a subdirectory while keeping the cwd outside it, climb, and
/// chroot again: works wherever the root is only a chroot (and CAP_SYS_CHROOT
/// is held); pivot_root with the old root detached leaves nothing to climb to.
fn escape_chroot() -> Result<(), Errno> {
    match fs::create_dir_all(ESCAPE_DIR) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(output::io_errno(&e))
        }
        _ => {}
    }
    unistd::chroot(ESCAPE_DIR)?;
    for _ in 0..ESCAPE_CLIMB {
        unistd::chdir("..")?;
    }
    unistd::chroot(".")
}

pub fn chroot_escape(mut args: Args) -> Result<Observation, ProbeError> {
    let marker: String = args.required("marker")?;
    let token: String = args.required("token")?;
    args.finish()?;
    let chrooted = escape_chroot();
    // Read only: whatever root we ended up in, nothing is written there.
    let read = fs::read(&marker);
    // Not there (ENOENT) is the isolated answer; a read that failed for any
    // other reason is a look that failed, never "not escaped".
    if let Err(e) = &read {
        if e.kind() != std::io::ErrorKind::NotFound {
            return Err(ProbeError::internal(
                "read the marker",
                format!("{marker}: {e}"),
            ));
        }
    }
    let escaped = read
        .as_ref()
        .is_ok_and(|content| String::from_utf8_lossy(content).contains(&token));
    Ok(Observation::new()
        .errno("chroot_errno", &chrooted)
        .io_errno("read_errno", &read)
        .with("escaped", escaped))
}

/// The CapEff line of /proc/self/status, as the kernel prints it.
fn effective_caps() -> Result<String, ProbeError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| ProbeError::internal("read /proc/self/status", e))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .map(|caps| caps.trim().to_owned())
        .ok_or_else(|| ProbeError::internal("read /proc/self/status", "no CapEff line"))
}

pub fn caps(mut args: Args) -> Result<Observation, ProbeError> {
    let chown_path: String = args.required("chown")?;
    let mount_dir: String = args.required("mount-dir")?;
    args.finish()?;
    let cap_eff = effective_caps()?;
    // The target is there and owned by someone else: an EPERM below is then
    // the missing CAP_CHOWN, not a missing file.
    let target_uid = fs::metadata(&chown_path)
        .map_err(|e| ProbeError::internal("stat the chown target", format!("{chown_path}: {e}")))?
        .uid();
    let chowned = unistd::chown(
        chown_path.as_str(),
        Some(Uid::from_raw(FOREIGN_ID)),
        Some(Gid::from_raw(FOREIGN_ID)),
    );
    let mounted = mount_tmpfs(&mount_dir);
    if mounted.is_ok() {
        let _ = mount::umount(mount_dir.as_str());
    }
    Ok(Observation::new()
        .with("cap_eff", cap_eff)
        .with("chown_target_uid", target_uid)
        .errno("chown_errno", &chowned)
        .errno("mount_errno", &mounted))
}

/// A /proc/sys name such as "kernel/hostname"; never a way out of /proc/sys.
fn sysctl_path(name: &str) -> Option<String> {
    let clean = !name.is_empty()
        && !name.starts_with('/')
        && name.split('/').all(|part| !part.is_empty() && part != "..");
    clean.then(|| format!("/proc/sys/{name}"))
}

pub fn sysctl_write(mut args: Args) -> Result<Observation, ProbeError> {
    let name: String = args.required("name")?;
    let value: String = args.required("value")?;
    args.finish()?;
    let path = sysctl_path(&name).ok_or_else(|| crate::args::UsageError::Invalid {
        key: "name",
        value: name.clone(),
        why: "must be a relative path under /proc/sys without `..`".into(),
    })?;
    let written = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut file| file.write_all(value.as_bytes()));
    Ok(Observation::new().io_errno("errno", &written))
}

pub fn mknod(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    let major: u64 = args.required("major")?;
    let minor: u64 = args.required("minor")?;
    args.finish()?;
    let made = mknod_at(
        path.as_str(),
        SFlag::S_IFBLK,
        Mode::from_bits_truncate(0o600),
        makedev(major, minor),
    );
    // Opening shows whether the device cgroup lets us at the device; the
    // descriptor is closed at once, never read or written.
    let opened = match made {
        Ok(()) => fcntl::open(
            path.as_str(),
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(drop),
        Err(errno) => Err(errno),
    };
    if made.is_ok() {
        let _ = unistd::unlink(path.as_str());
    }
    // The same call for a plain file needs no capability: it working shows
    // the directory is reachable and writable, so a refused device node is
    // the missing CAP_MKNOD.
    let regular_path = format!("{path}.regular");
    let regular = mknod_at(
        regular_path.as_str(),
        SFlag::S_IFREG,
        Mode::from_bits_truncate(0o600),
        0,
    );
    if regular.is_ok() {
        let _ = unistd::unlink(regular_path.as_str());
    }
    Ok(Observation::new()
        .errno("regular_mknod_errno", &regular)
        .errno("mknod_errno", &made)
        .errno("open_errno", &opened))
}

/// Whether `pid` is listed in this /proc (an unreadable /proc fails).
fn pid_visible(pid: i32) -> Result<bool, ProbeError> {
    Ok(crate::proc_actions::visible_pids()?.contains(&pid))
}

pub fn setns_net(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    let target: Option<i32> = args.optional("target-pid")?;
    args.finish()?;
    let target_visible = target.map(pid_visible).transpose()?;
    let opened = fcntl::open(
        path.as_str(),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let joined = match &opened {
        Ok(fd) => setns(fd, CloneFlags::CLONE_NEWNET),
        Err(errno) => Err(*errno),
    };
    Ok(Observation::new()
        .with("target_visible", target_visible)
        .errno("open_errno", &opened)
        .errno("setns_errno", &joined))
}

pub fn ptrace(mut args: Args) -> Result<Observation, ProbeError> {
    let target = Pid::from_raw(args.pid("pid")?);
    args.finish()?;
    let target_visible = pid_visible(target.as_raw())?;
    let attached = ptrace::attach(target);
    if attached.is_ok() {
        // The attach stops the target; let it go at once.
        let _ = waitpid(target, Some(WaitPidFlag::__WALL));
        let _ = ptrace::detach(target, None);
    }
    Ok(Observation::new()
        .with("target_visible", target_visible)
        .errno("attach_errno", &attached))
}

pub fn cgroup_move(mut args: Args) -> Result<Observation, ProbeError> {
    let procs: String = args.required("procs")?;
    args.finish()?;
    // Which cgroup filesystems this mount namespace has, from its own
    // mount table (a table that cannot be read fails the action).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ProbeError::internal("read /proc/self/mountinfo", e))?;
    let cgroupfs = crate::fs_actions::mounts_of_type(&mountinfo, &["cgroup", "cgroup2"]);
    let moved = OpenOptions::new()
        .write(true)
        .open(procs)
        .and_then(|mut file| file.write_all(format!("{}\n", unistd::getpid()).as_bytes()));
    Ok(Observation::new()
        .with("cgroupfs_mounts", cgroupfs)
        .io_errno("errno", &moved))
}

/// Reads the kernel log buffer without consuming it, as `dmesg` does.
fn read_kernel_log() -> Result<(), Errno> {
    // SAFETY: SIZE_BUFFER takes no buffer (null, length 0) and returns a size.
    let size = Errno::result(unsafe {
        libc::klogctl(SYSLOG_ACTION_SIZE_BUFFER, std::ptr::null_mut(), 0)
    })?;
    let mut buf = vec![0u8; usize::try_from(size).unwrap_or(0).max(1)];
    let len = libc::c_int::try_from(buf.len()).unwrap_or(libc::c_int::MAX);
    // SAFETY: the kernel writes at most `len` bytes into `buf`, which is a
    // live allocation of at least that size.
    Errno::result(unsafe { libc::klogctl(SYSLOG_ACTION_READ_ALL, buf.as_mut_ptr().cast(), len) })
        .map(drop)
}

pub fn sysrq_kmsg(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    // Opening for write is the whole test: a single byte written here could
    // reboot the machine, so none ever is.
    let sysrq = fcntl::open(
        "/proc/sysrq-trigger",
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    let kmsg = fcntl::open(
        "/proc/kmsg",
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    // A runtime may mask these files by binding /dev/null over them: then
    // the open succeeds but reaches nothing. The real files are regular
    // proc files, never character devices. (/proc/kmsg is never read: a
    // read would take messages from the host's syslog reader.)
    // An fstat that fails on an opened file fails the action: it must not
    // read as "masked".
    let real = |r: &Result<std::os::fd::OwnedFd, nix::errno::Errno>| match r {
        Ok(fd) => nix::sys::stat::fstat(fd)
            .map(|st| st.st_mode & libc::S_IFMT != libc::S_IFCHR)
            .map_err(|e| ProbeError::internal("fstat an opened kernel file", e)),
        Err(_) => Ok(false),
    };
    let (sysrq_real, kmsg_real) = (real(&sysrq)?, real(&kmsg)?);
    let syslog = read_kernel_log();
    Ok(Observation::new()
        .errno("sysrq_open_errno", &sysrq.map(drop))
        .with("sysrq_opened_real", sysrq_real)
        .errno("kmsg_open_errno", &kmsg.map(drop))
        .with("kmsg_opened_real", kmsg_real)
        .errno("syslog_errno", &syslog))
}

/// One descriptor above 2 the probe found open, and what it reaches.
fn leaked_fd(fd: i32, marker: &str) -> Result<serde_json::Value, ProbeError> {
    let link = format!("/proc/self/fd/{fd}");
    let target = fs::read_link(&link)
        .map_err(|e| ProbeError::internal("readlink", format!("{link}: {e}")))?;
    // SAFETY: `fd` was listed in /proc/self/fd and nothing of ours closes
    // it while it is borrowed here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let stat = nix::sys::stat::fstat(borrowed)
        .map_err(|e| ProbeError::internal("fstat", format!("fd {fd}: {e}")))?;
    let is_dir = stat.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mut content = None;
    let mut open_errno = serde_json::Value::Null;
    if is_dir {
        // The CVE-2024-21626 move: a path relative to a host directory fd.
        let opened = fcntl::openat(
            borrowed,
            marker,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        open_errno = output::errno_value(&opened);
        if let Ok(file) = opened {
            let mut text = String::new();
            fs::File::from(file)
                .take(4096)
                .read_to_string(&mut text)
                .map_err(|e| ProbeError::internal("read through the leaked fd", e))?;
            content = Some(text);
        }
    }
    Ok(serde_json::json!({
        "fd": fd,
        "target": target.to_string_lossy(),
        "dir": is_dir,
        "open_errno": open_errno,
        "content": content,
    }))
}

/// Every fd above 2 this process was born with (the one listing them left
/// out), and for each directory among them, the marker read through it.
pub fn leaked_fds(mut args: Args) -> Result<Observation, ProbeError> {
    let marker: String = args.required("marker-name")?;
    args.finish()?;
    let mut listing = nix::dir::Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ProbeError::internal("open /proc/self/fd", e))?;
    let own = listing.as_raw_fd();
    let mut fds = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| ProbeError::internal("list /proc/self/fd", e))?;
        let name = entry.file_name().to_string_lossy();
        if let Ok(fd) = name.parse::<i32>() {
            if fd > 2 && fd != own {
                fds.push(fd);
            }
        }
    }
    drop(listing);
    fds.sort_unstable();
    let leaked = fds
        .iter()
        .map(|&fd| leaked_fd(fd, &marker))
        .collect::<Result<Vec<_>, _>>()?;
    let marker_content = leaked
        .iter()
        .find_map(|l| l["content"].as_str().map(str::to_owned));
    Ok(Observation::new()
        .with("listed", true)
        .with("fds_above_2", fds)
        .with("leaked", leaked)
        .with("marker_content", marker_content))
}

/// Drops to an unprivileged uid/gid, then execs a set-user-ID-root binary
/// running `--then` (an action such as `id`, whose observation is the one
/// printed). A refused switch or exec prints this action's own observation.
pub fn setuid_exec(mut args: Args) -> Result<Observation, ProbeError> {
    let uid: u32 = args.required("uid")?;
    let gid: u32 = args.required("gid")?;
    let exe: String = args.required("exec")?;
    let then: String = args.required("then")?;
    args.finish()?;
    let switched = unistd::setgroups(&[Gid::from_raw(gid)])
        .and_then(|()| unistd::setgid(Gid::from_raw(gid)))
        .and_then(|()| unistd::setuid(Uid::from_raw(uid)));
    if switched.is_err() {
        return Ok(Observation::new().errno("switch_errno", &switched));
    }
    let to_c = |s: &str| {
        std::ffi::CString::new(s).map_err(|_| ProbeError::internal("exec", format!("NUL in {s:?}")))
    };
    let path = to_c(&exe)?;
    let argv = [to_c(&exe)?, to_c(&then)?];
    let exec_errno = unistd::execv(&path, &argv).map(drop);
    Ok(Observation::new()
        .errno("switch_errno", &switched)
        .errno("exec_errno", &exec_errno))
}

/// Copies `--from` into each `--into` directory (as `isocheck-copy`, with
/// the source's mode, set-user-ID bit included, owned by this process) and
/// runs each copy in a child: first as `--uid`/`--gid` when given, then
/// execve of the copy with `--then` as its action. Per directory, keyed by
/// its path without the first `/` and with `/` as `_` ("dev_shm"):
/// `copy_errno`, the copy's `mode` as read back, `switch_errno`,
/// `exec_errno` (the child's execve refused) and `ran`, the copy's own
/// observation.
pub fn exec_copies(mut args: Args) -> Result<Observation, ProbeError> {
    let from: String = args.required("from")?;
    let dirs: Vec<String> = args.at_least_one("into")?;
    let uid: Option<u32> = args.optional("uid")?;
    let gid: Option<u32> = args.optional("gid")?;
    let then: String = args.required("then")?;
    args.finish()?;
    let mode = fs::metadata(&from)
        .map_err(|e| ProbeError::internal("stat the binary to copy", e))?
        .mode()
        & 0o7777;
    let mut obs = Observation::new();
    for dir in &dirs {
        let copy = format!("{}/isocheck-copy", dir.trim_end_matches('/'));
        let copied = fs::copy(&from, &copy).and_then(|_| {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&copy, fs::Permissions::from_mode(mode))
        });
        let mut result = serde_json::json!({
            "copy_errno": output::io_errno_value(&copied),
            "switch_errno": null, "exec_errno": null, "ran": null,
        });
        if copied.is_ok() {
            let copy_mode = fs::metadata(&copy)
                .map_err(|e| ProbeError::internal("stat the copy", e))?
                .mode();
            result["mode"] = (copy_mode & 0o7777).into();
            let line = run_copy(&copy, uid.zip(gid), &then)?;
            for key in ["switch_errno", "exec_errno"] {
                if let Some(v) = line.get(key) {
                    result[key] = v.clone();
                }
            }
            if line.get("action").is_some() {
                result["ran"] = line;
            }
        }
        let key = dir.trim_matches('/').replace('/', "_");
        obs = obs.with(&key, result);
    }
    Ok(obs)
}

/// Forks; the child switches ids if asked and execs `exe then`, its stdout
/// a pipe whose last JSON line is returned. A child that cannot switch or
/// exec prints `{"switch_errno"|"exec_errno": NAME}` itself.
fn run_copy(
    exe: &str,
    ids: Option<(u32, u32)>,
    then: &str,
) -> Result<serde_json::Value, ProbeError> {
    let to_c = |s: &str| {
        std::ffi::CString::new(s).map_err(|_| ProbeError::internal("exec", format!("NUL in {s:?}")))
    };
    let argv = [to_c(exe)?, to_c(then)?];
    let (read, write) = unistd::pipe().map_err(|e| ProbeError::internal("pipe", e))?;
    // SAFETY: the probe is single-threaded; the child only switches ids,
    // execs, or prints one line and exits.
    match unsafe { unistd::fork() }.map_err(|e| ProbeError::internal("fork", e))? {
        unistd::ForkResult::Child => {
            drop(read);
            let _ = unistd::dup2_stdout(&write);
            drop(write);
            if let Some((uid, gid)) = ids {
                let switched = unistd::setgroups(&[Gid::from_raw(gid)])
                    .and_then(|()| unistd::setgid(Gid::from_raw(gid)))
                    .and_then(|()| unistd::setuid(Uid::from_raw(uid)));
                if let Err(e) = switched {
                    println!("{{\"switch_errno\":\"{}\"}}", output::errno_name(e));
                    std::process::exit(3);
                }
            }
            let Err(e) = unistd::execv(&argv[0], &argv);
            println!("{{\"exec_errno\":\"{}\"}}", output::errno_name(e));
            std::process::exit(3);
        }
        unistd::ForkResult::Parent { child } => {
            drop(write);
            let mut text = String::new();
            let read_result = fs::File::from(read).read_to_string(&mut text);
            waitpid(child, None).map_err(|e| ProbeError::internal("wait for the copy", e))?;
            read_result.map_err(|e| ProbeError::internal("read the copy's output", e))?;
            text.lines()
                .rev()
                .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .ok_or_else(|| {
                    ProbeError::internal("run the copy", format!("no JSON line in {text:?}"))
                })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_stay_under_proc_sys() {
        assert_eq!(
            sysctl_path("kernel/hostname").as_deref(),
            Some("/proc/sys/kernel/hostname")
        );
        assert_eq!(sysctl_path("../sysrq-trigger"), None);
        assert_eq!(sysctl_path("/etc/passwd"), None);
        assert_eq!(sysctl_path("kernel//x"), None);
        assert_eq!(sysctl_path(""), None);
    }
}

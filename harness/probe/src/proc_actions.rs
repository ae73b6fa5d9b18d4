//! What the probe sees of processes and namespaces: pids, signals, hostname,
//! SysV IPC, namespace inodes, clocks, cgroup membership, identity.

use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{self, Signal};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{self, ForkResult, Pid};
use serde_json::Value;

use crate::args::{Args, UsageError};
use crate::output::{self, Afterwards, Observation};
use crate::ProbeError;

/// The kernel keeps at most 15 bytes of a command name (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// The namespaces listed under /proc/self/ns that the scenarios compare.
const NAMESPACES: [&str; 8] = ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// Reads a small text file; a file that cannot be read fails the action
/// (what the probe did not see must never read as "isolated").
fn read_text(path: impl AsRef<Path>) -> Result<String, ProbeError> {
    let path = path.as_ref();
    fs::read_to_string(path)
        .map_err(|e| ProbeError::internal("read", format!("{}: {e}", path.display())))
}

/// Reads a file of another process: `None` when the process is gone (it
/// exited between the listing and the read), an error for any other failure.
fn read_of_process(path: &str) -> Result<Option<Vec<u8>>, ProbeError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ESRCH) =>
        {
            Ok(None)
        }
        Err(e) => Err(ProbeError::internal("read", format!("{path}: {e}"))),
    }
}

pub fn noop(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    Ok(Observation::new())
}

/// The numeric entries of /proc: the pids this pid namespace lets us see.
/// A /proc that cannot be listed fails the action.
pub(crate) fn visible_pids() -> Result<Vec<i32>, ProbeError> {
    let entries = fs::read_dir("/proc").map_err(|e| ProbeError::internal("list /proc", e))?;
    let mut pids: Vec<i32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Whether process `pid` is the decoy: its comm (as the kernel truncates it)
/// or the basename of its argv[0] equals `name`.
/// A process that exited meanwhile is not the decoy; a file that cannot be
/// read for another reason fails the action.
fn is_decoy(pid: i32, name: &str) -> Result<bool, ProbeError> {
    let truncated: String = name.chars().take(COMM_LEN).collect();
    if let Some(comm) = read_of_process(&format!("/proc/{pid}/comm"))? {
        if String::from_utf8_lossy(&comm).trim_end_matches('\n') == truncated {
            return Ok(true);
        }
    }
    let Some(cmdline) = read_of_process(&format!("/proc/{pid}/cmdline"))? else {
        return Ok(false);
    };
    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
    let basename = argv0.rsplit(|b| *b == b'/').next().unwrap_or_default();
    Ok(!basename.is_empty() && basename == name.as_bytes())
}

pub fn pids(mut args: Args) -> Result<Observation, ProbeError> {
    let decoy: Option<String> = args.optional("decoy-comm")?;
    args.finish()?;
    let visible = visible_pids()?;
    let me = unistd::getpid().as_raw();
    let mut sees_decoy = false;
    if let Some(name) = decoy {
        for &pid in visible.iter().filter(|&&pid| pid != me) {
            if is_decoy(pid, &name)? {
                sees_decoy = true;
                break;
            }
        }
    }
    Ok(Observation::new()
        .with("pid", me)
        .with("ppid", unistd::getppid().as_raw())
        .with("visible_pids", visible)
        .with("sees_decoy", sees_decoy))
}

pub fn kill(mut args: Args) -> Result<Observation, ProbeError> {
    let target = args.pid("pid")?;
    args.finish()?;
    let result = signal::kill(Pid::from_raw(target), Signal::SIGKILL);
    Ok(Observation::new()
        .with("target", target)
        .errno("errno", &result))
}

pub fn hostname(mut args: Args) -> Result<Observation, ProbeError> {
    let set: Option<String> = args.optional("set")?;
    args.finish()?;
    let read = || -> Result<String, ProbeError> {
        Ok(unistd::gethostname()
            .map_err(|e| ProbeError::internal("gethostname", e))?
            .to_string_lossy()
            .into_owned())
    };
    // Before any change: the name the container was given.
    let hostname_before = read()?;
    let set_errno = match set {
        Some(name) => output::errno_value(&unistd::sethostname(name)),
        None => Value::Null,
    };
    Ok(Observation::new()
        .with("hostname_before", hostname_before)
        .with("set_errno", set_errno)
        .with("hostname", read()?))
}

/// A SysV IPC key, decimal or 0x-prefixed hex (ipcs prints hex).
fn parse_ipc_key(text: &str) -> Result<libc::key_t, UsageError> {
    let invalid = |why: &str| UsageError::Invalid {
        key: "key",
        value: text.to_owned(),
        why: why.to_owned(),
    };
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        let raw = u32::from_str_radix(hex, 16).map_err(|e| invalid(&e.to_string()))?;
        // key_t is an int; ipcs shows keys above 0x7fffffff as their bits.
        return Ok(raw as libc::key_t);
    }
    text.parse()
        .map_err(|e: std::num::ParseIntError| invalid(&e.to_string()))
}

pub fn shm(mut args: Args) -> Result<Observation, ProbeError> {
    let key_text: String = args.required("key")?;
    let key = parse_ipc_key(&key_text)?;
    args.finish()?;
    // SAFETY: shmget only looks the key up (size 0, no IPC_CREAT): it takes
    // plain integers and touches no memory of ours.
    let id = unsafe { libc::shmget(key, 0, 0) };
    let result = Errno::result(id);
    // ENOENT is the only answer that means "no such segment here"; EACCES
    // says it exists. Any other failure is a look that failed.
    let found = match result {
        Ok(_) | Err(Errno::EACCES) => true,
        Err(Errno::ENOENT) => false,
        Err(e) => return Err(ProbeError::internal("shmget", e)),
    };
    Ok(Observation::new()
        .with("found", found)
        .errno("errno", &result))
}

/// The namespaces this kernel lists in /proc/self/ns. A directory that
/// cannot be listed (no procfs of ours at /proc: e.g. a process outside the
/// pid namespace of the /proc it sees) fails the action, never "none".
fn listed_namespaces() -> Result<Vec<String>, ProbeError> {
    let entries =
        fs::read_dir("/proc/self/ns").map_err(|e| ProbeError::internal("list /proc/self/ns", e))?;
    entries
        .map(|e| {
            e.map(|e| e.file_name().to_string_lossy().into_owned())
                .map_err(|e| ProbeError::internal("list /proc/self/ns", e))
        })
        .collect()
}

/// The inode of a namespace link such as "net:[4026531840]"; a link that
/// cannot be read or parsed fails the action.
fn namespace_inode(name: &str) -> Result<u64, ProbeError> {
    let path = format!("/proc/self/ns/{name}");
    let link = fs::read_link(&path)
        .map_err(|e| ProbeError::internal("readlink", format!("{path}: {e}")))?;
    let text = link.to_string_lossy();
    text.strip_prefix(name)
        .and_then(|t| t.strip_prefix(":["))
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| ProbeError::internal("readlink", format!("{path}: {text:?}")))
}

pub fn ns(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    let mut inodes = serde_json::Map::new();
    // Only a namespace this kernel does not have (not listed) is left out.
    let listed = listed_namespaces()?;
    for name in NAMESPACES.iter().filter(|n| listed.iter().any(|l| l == *n)) {
        inodes.insert((*name).to_owned(), namespace_inode(name)?.into());
    }
    let pid1_comm = read_text("/proc/1/comm")?.trim().to_owned();
    Ok(Observation::new()
        .with("ns", inodes)
        .with("pid", unistd::getpid().as_raw())
        .with("pid1_comm", pid1_comm))
}

fn clock_seconds(clock: ClockId) -> Result<f64, ProbeError> {
    let now = clock_gettime(clock).map_err(|e| ProbeError::internal("clock_gettime", e))?;
    Ok(now.tv_sec() as f64 + now.tv_nsec() as f64 / 1e9)
}

pub fn clocks(mut args: Args) -> Result<Observation, ProbeError> {
    let host_monotonic: f64 = args.required("host-monotonic")?;
    let host_boottime: f64 = args.required("host-boottime")?;
    args.finish()?;
    let monotonic = clock_seconds(ClockId::CLOCK_MONOTONIC)?;
    let boottime = clock_seconds(ClockId::CLOCK_BOOTTIME)?;
    Ok(Observation::new()
        .with("monotonic_s", monotonic)
        .with("boottime_s", boottime)
        .with("monotonic_offset_s", monotonic - host_monotonic)
        .with("boottime_offset_s", boottime - host_boottime))
}

pub fn wait(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
    output::wait_for_go();
    Ok(Observation::new())
}

/// The signals `trap` waits for: those `isocheck container run` forwards.
const TRAPPED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks the forwarded signals, says ready, waits for one (sigwait), and
/// exits 128 + its number as a shell would. Blocked signals are delivered
/// even to a pid namespace's init, which ignores unhandled ones.
pub fn trap(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    let mut set = signal::SigSet::empty();
    for sig in TRAPPED {
        set.add(sig);
    }
    set.thread_block()
        .map_err(|e| ProbeError::internal("block the trapped signals", e))?;
    output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
    let got = set.wait().map_err(|e| ProbeError::internal("sigwait", e))?;
    Ok(Observation::new()
        .with("signal", got.as_str())
        .with("signo", got as i32)
        .then(Afterwards::ExitWith(128 + got as u8)))
}

pub fn cgroup(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    let text = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| ProbeError::internal("read /proc/self/cgroup", e))?;
    let lines: Vec<&str> = text.lines().collect();
    let shows_isocheck = lines.iter().any(|line| line.contains("isocheck"));
    Ok(Observation::new()
        .with("lines", lines)
        .with("shows_isocheck", shows_isocheck))
}

/// Sleeps with nanosleep alone: safe to call in a child after fork.
pub fn sleep_in_child(duration: Duration) {
    let mut request = libc::timespec {
        tv_sec: duration.as_secs() as libc::time_t,
        tv_nsec: duration.subsec_nanos() as libc::c_long,
    };
    let mut remaining = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both pointers are to live, initialised timespecs on our stack;
    // nanosleep is async-signal-safe. On EINTR we sleep what is left.
    while unsafe { libc::nanosleep(&request, &mut remaining) } == -1
        && Errno::last() == Errno::EINTR
    {
        request = remaining;
    }
}

/// Leaves a forked child without running atexit handlers or flushing stdio
/// buffers inherited from the parent.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: _exit takes an int and never returns; it is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// The grandchild of `daemon`: a new session, stdio detached so the
/// harness's pipes close, then a sleep.
fn become_daemon(hold: Duration) -> ! {
    let _ = unistd::setsid();
    match nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(null) => {
            let _ = unistd::dup2_stdin(null.as_fd());
            let _ = unistd::dup2_stdout(null.as_fd());
            let _ = unistd::dup2_stderr(null.as_fd());
        }
        // No /dev/null in this rootfs: closing the descriptors frees the
        // pipes just as well.
        Err(_) => {
            for fd in 0..3 {
                // SAFETY: closing our own stdio descriptors; nothing in this
                // child uses them afterwards.
                unsafe { libc::close(fd) };
            }
        }
    }
    sleep_in_child(hold);
    exit_child(0)
}

pub fn daemon(mut args: Args) -> Result<Observation, ProbeError> {
    let hold = args.seconds("seconds")?;
    args.finish()?;
    // SAFETY: the probe is single-threaded here, so the child may run any
    // code; it only forks again and exits.
    match unsafe { unistd::fork() }.map_err(|e| ProbeError::internal("fork", e))? {
        ForkResult::Child => {
            // SAFETY: as above, the middle child is single-threaded too.
            if let Ok(ForkResult::Child) = unsafe { unistd::fork() } {
                become_daemon(hold);
            }
            exit_child(0)
        }
        ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None)
                .map_err(|e| ProbeError::internal("wait for the middle child", e))?;
        }
    }
    Ok(Observation::new()
        .with("daemon_forked", true)
        .then(Afterwards::AwaitStdin))
}

/// The supplementary groups this process holds and what they decide: a
/// read of `--path` (a file only its group may read), with the file's
/// owner, group and mode and the effective capabilities (a DAC override
/// would read it whatever the groups), so a refusal can be told apart from
/// a missing file or a missing capability.
pub fn groups(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    args.finish()?;
    let groups: Vec<u32> = unistd::getgroups()
        .map_err(|e| ProbeError::internal("getgroups", e))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    let meta = fs::metadata(&path).map_err(|e| ProbeError::internal("stat the group's file", e))?;
    let status = read_text("/proc/self/status")?;
    let cap_eff = crate::status_actions::status_value(&status, "CapEff")
        .ok_or_else(|| ProbeError::internal("read /proc/self/status", "no CapEff line"))?
        .to_owned();
    let read = fs::read(&path);
    Ok(Observation::new()
        .with("uid", unistd::getuid().as_raw())
        .with("groups", groups)
        .with("cap_eff", cap_eff)
        .with("file_uid", meta.uid())
        .with("file_gid", meta.gid())
        .with("file_mode", meta.mode() & 0o7777)
        .io_errno("read_errno", &read))
}

pub fn id(mut args: Args) -> Result<Observation, ProbeError> {
    let create: Option<String> = args.optional("create")?;
    args.finish()?;
    let create_errno = match create {
        Some(path) => output::io_errno_value(&fs::File::create(path)),
        None => Value::Null,
    };
    let status = read_text("/proc/self/status")?;
    let no_new_privs = crate::status_actions::status_value(&status, "NoNewPrivs")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| ProbeError::internal("read /proc/self/status", "no NoNewPrivs line"))?;
    // What could make a set-user-ID exec not take effect besides
    // no_new_privs: the file's own bits and owner, a nosuid mount.
    let exe = fs::metadata("/proc/self/exe")
        .map_err(|e| ProbeError::internal("stat /proc/self/exe", e))?;
    let exe_fs = nix::sys::statvfs::statvfs("/proc/self/exe")
        .map_err(|e| ProbeError::internal("statvfs /proc/self/exe", e))?;
    let exe_nosuid = exe_fs
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_NOSUID);
    Ok(Observation::new()
        .with("uid", unistd::getuid().as_raw())
        .with("gid", unistd::getgid().as_raw())
        .with("euid", unistd::geteuid().as_raw())
        .with("egid", unistd::getegid().as_raw())
        .with("no_new_privs", no_new_privs)
        .with(
            "exe_setuid_root",
            exe.mode() & libc::S_ISUID != 0 && exe.uid() == 0,
        )
        .with("exe_nosuid_mount", exe_nosuid)
        .with("uid_map", read_text("/proc/self/uid_map")?)
        .with("create_errno", create_errno))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ipc_keys_in_decimal_and_hex() {
        assert_eq!(parse_ipc_key("1234").ok(), Some(1234));
        assert_eq!(parse_ipc_key("0x10").ok(), Some(16));
        assert_eq!(parse_ipc_key("0xffffffff").ok(), Some(-1));
        assert!(parse_ipc_key("0xzz").is_err());
        assert!(parse_ipc_key("ten").is_err());
    }

    #[test]
    fn own_namespaces_have_inodes() {
        assert!(namespace_inode("net").expect("readable") > 0);
        assert!(namespace_inode("nonexistent").is_err());
        assert!(listed_namespaces()
            .expect("listable")
            .contains(&"net".to_string()));
    }

    #[test]
    fn decoy_matches_truncated_comm() {
        let me = unistd::getpid().as_raw();
        let comm = read_text("/proc/self/comm").expect("own comm");
        assert!(is_decoy(me, comm.trim_end()).expect("readable"));
        assert!(!is_decoy(me, "isocheck-no-such-decoy").expect("readable"));
    }

    #[test]
    fn a_process_that_is_gone_is_not_an_error_but_an_unreadable_file_is() {
        assert_eq!(
            read_of_process("/proc/self/no-such-file").expect("gone is fine"),
            None
        );
        assert!(read_text("/proc/self/no-such-file").is_err());
    }

    #[test]
    fn json_value_of_pid_list() {
        let obs = Observation::new().with("visible_pids", vec![1, 2]);
        assert_eq!(
            obs.to_line("pids"),
            json!({"action": "pids", "visible_pids": [1, 2]}).to_string()
        );
    }
}

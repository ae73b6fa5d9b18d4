//! Confinement seen from inside: which syscalls the seccomp filter refuses,
//! which kernel files are masked or read-only, what the locked mounts of a
//! user namespace allow. Every call is made with arguments the kernel
//! refuses on its own (a bogus handle, an unknown key type, bad magic), so
//! that without the filter the answer is the kernel's and nothing changes:
//! no module is loaded, no swap enabled, no reboot, no kexec.

use std::fs;

use nix::errno::Errno;
use serde_json::{json, Map, Value};

use crate::args::Args;
use crate::output::{self, Observation};
use crate::ProbeError;

/// The `Seccomp:` mode of /proc/self/status (0 none, 1 strict, 2 filter).
fn seccomp_mode() -> Result<u64, ProbeError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| ProbeError::internal("read /proc/self/status", e))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ProbeError::internal("read /proc/self/status", "no Seccomp line"))
}

/// The result of a raw syscall as errno or success.
fn sys_result(r: libc::c_long) -> Result<libc::c_long, Errno> {
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const LINUX_REBOOT_BAD_MAGIC: libc::c_long = 0x1234;

/// Each call of the default deny list, harmlessly.
fn denied_calls() -> Vec<(&'static str, Result<libc::c_long, Errno>)> {
    let no_type = c"isocheck-no-such-key-type";
    let desc = c"isocheck";
    let no_file = c"/isocheck-no-such-swap-file";
    let no_module = c"isocheck/no-such-module";
    let root = nix::fcntl::open(
        "/",
        // Not O_PATH: Linux 6.12 takes the mount fd with fdget, which
        // refuses O_PATH fds (EBADF) before the handle is looked at.
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    );
    let root_fd = root.as_ref().map_or(-1, |fd| {
        use std::os::fd::AsRawFd;
        fd.as_raw_fd()
    });
    // struct file_handle with handle_bytes 0: the kernel refuses it (EINVAL)
    // once the caller may decode handles at all.
    let handle = [0u32; 4];
    // SAFETY: raw syscalls with integer arguments, NUL-terminated strings
    // that outlive the calls, null pointers where the kernel must refuse
    // before reading, and buffers we own.
    unsafe {
        vec![
            (
                "keyctl",
                sys_result(libc::syscall(
                    libc::SYS_keyctl,
                    KEYCTL_GET_KEYRING_ID,
                    KEY_SPEC_USER_KEYRING,
                    0,
                )),
            ),
            (
                "add_key",
                sys_result(libc::syscall(
                    libc::SYS_add_key,
                    no_type.as_ptr(),
                    desc.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                    KEY_SPEC_USER_KEYRING,
                )),
            ),
            (
                "request_key",
                sys_result(libc::syscall(
                    libc::SYS_request_key,
                    no_type.as_ptr(),
                    desc.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )),
            ),
            (
                "bpf",
                sys_result(libc::syscall(
                    libc::SYS_bpf,
                    0x7fff_i64,
                    std::ptr::null::<u8>(),
                    0,
                )),
            ),
            (
                "perf_event_open",
                sys_result(libc::syscall(
                    libc::SYS_perf_event_open,
                    std::ptr::null::<u8>(),
                    0,
                    -1,
                    -1,
                    0,
                )),
            ),
            (
                "userfaultfd",
                sys_result(libc::syscall(libc::SYS_userfaultfd, 0x7fff_fff0_i64)),
            ),
            (
                "kexec_load",
                sys_result(libc::syscall(
                    libc::SYS_kexec_load,
                    0,
                    u64::MAX,
                    std::ptr::null::<u8>(),
                    0xffff_0000_u64,
                )),
            ),
            (
                "kexec_file_load",
                sys_result(libc::syscall(
                    libc::SYS_kexec_file_load,
                    -1,
                    -1,
                    0,
                    std::ptr::null::<u8>(),
                    0xffff_0000_u64,
                )),
            ),
            (
                "open_by_handle_at",
                sys_result(libc::syscall(
                    libc::SYS_open_by_handle_at,
                    root_fd,
                    handle.as_ptr(),
                    libc::O_RDONLY,
                )),
            ),
            (
                "init_module",
                sys_result(libc::syscall(
                    libc::SYS_init_module,
                    std::ptr::null::<u8>(),
                    0,
                    c"".as_ptr(),
                )),
            ),
            (
                "finit_module",
                sys_result(libc::syscall(libc::SYS_finit_module, -1, c"".as_ptr(), 0)),
            ),
            (
                "delete_module",
                sys_result(libc::syscall(
                    libc::SYS_delete_module,
                    no_module.as_ptr(),
                    libc::O_NONBLOCK,
                )),
            ),
            (
                "swapon",
                sys_result(libc::syscall(libc::SYS_swapon, no_file.as_ptr(), 0)),
            ),
            (
                "swapoff",
                sys_result(libc::syscall(libc::SYS_swapoff, no_file.as_ptr())),
            ),
            (
                "reboot",
                sys_result(libc::syscall(
                    libc::SYS_reboot,
                    LINUX_REBOOT_BAD_MAGIC,
                    LINUX_REBOOT_BAD_MAGIC,
                    0,
                    std::ptr::null::<u8>(),
                )),
            ),
            (
                "clone3",
                sys_result(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0)),
            ),
        ]
    }
}

/// i386's keyctl (int 0x80, number 288) with an unknown operation, in a
/// child: a filter that checks the calling convention kills it (SIGSYS),
/// one that does not would let every 32-bit call through; with no filter
/// the kernel refuses the operation itself (EOPNOTSUPP). A kernel without
/// i386 emulation kills the child with SIGSEGV. What happened, as text.
#[cfg(target_arch = "x86_64")]
fn keyctl_i386() -> Result<String, ProbeError> {
    const I386_KEYCTL: u32 = 288;
    const UNKNOWN_OP: u32 = 0x7fff_ffff;
    // SAFETY: fork of a single-threaded probe; the child only makes one
    // syscall and _exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| ProbeError::internal("fork", e))? {
        nix::unistd::ForkResult::Child => {
            let ret: i32;
            // SAFETY: the i386 syscall entry with integer arguments only;
            // rbx (LLVM's) is swapped in and out around it.
            unsafe {
                std::arch::asm!(
                    "xchg {op:e}, ebx",
                    "int 0x80",
                    "xchg {op:e}, ebx",
                    op = inout(reg) UNKNOWN_OP => _,
                    inlateout("eax") I386_KEYCTL => ret,
                    in("ecx") 0u32,
                    in("edx") 0u32,
                    in("esi") 0u32,
                    in("edi") 0u32,
                );
            }
            // SAFETY: leaves the child at once; the errno is the status.
            unsafe { libc::_exit(if ret < 0 { -ret } else { 0 }) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            use nix::sys::wait::{waitpid, WaitStatus};
            match waitpid(child, None).map_err(|e| ProbeError::internal("wait", e))? {
                WaitStatus::Exited(_, 0) => Ok("allowed".into()),
                WaitStatus::Exited(_, code) => Ok(output::errno_name(Errno::from_raw(code))),
                WaitStatus::Signaled(_, sig, _) => Ok(format!("killed by {sig:?}")),
                other => Err(ProbeError::internal("wait", format!("{other:?}"))),
            }
        }
    }
}

/// clone(CLONE_NEWUSER): the child exits at once.
fn clone_newuser() -> Result<(), Errno> {
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
    // SAFETY: a fork-like clone (no CLONE_VM, no new stack); the child only
    // calls _exit, which is async-signal-safe.
    let pid = sys_result(unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) })?;
    if pid == 0 {
        // SAFETY: leaves the child at once.
        unsafe { libc::_exit(0) }
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    Ok(())
}

pub fn seccomp(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    let mode = seccomp_mode()?;
    let mut calls = Map::new();
    #[cfg(target_arch = "x86_64")]
    calls.insert("keyctl_i386".into(), keyctl_i386()?.into());
    let mut eperm = Vec::new();
    let mut record = |name: &str, r: Result<(), Errno>| {
        if r == Err(Errno::EPERM) {
            eperm.push(Value::String(name.to_owned()));
        }
        calls.insert(name.to_owned(), output::errno_value(&r));
    };
    for (name, r) in denied_calls() {
        record(name, r.map(drop));
    }
    record("clone_newuser", clone_newuser());
    // Last: it moves this process into the new namespace.
    record(
        "unshare_newuser",
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER),
    );
    Ok(Observation::new()
        .with("seccomp_mode", mode)
        .with("calls", Value::Object(calls))
        .with("refused_eperm", Value::Array(eperm)))
}

const TMPFS_MAGIC: i64 = 0x0102_1994;
const PROC_SUPER_MAGIC: i64 = 0x9fa0;
const SYSFS_MAGIC: i64 = 0x6265_6572;
/// The most a masked-path check reads of a real file (it only needs to see
/// that the content is there).
const READ_MAX: usize = 4096;

fn fs_name(magic: i64) -> String {
    match magic {
        TMPFS_MAGIC => "tmpfs".into(),
        PROC_SUPER_MAGIC => "proc".into(),
        SYSFS_MAGIC => "sysfs".into(),
        other => format!("{other:#x}"),
    }
}

/// What one masked path looks like from inside: "absent" (the kernel lacks
/// it), "masked" (a file that is the null device; a directory that is an
/// empty read-only tmpfs), "real" (the kernel's own file, opened, and read
/// unless it is /proc/kmsg or /proc/sysrq-trigger; the kernel's own
/// directory), or "failed" (it
/// exists but could not be checked: never counted as masked).
fn masked_state(path: &str) -> Value {
    use nix::sys::stat::{major, minor, stat, SFlag};
    use std::io::Read;
    use std::os::fd::AsFd;
    let st = match stat(path) {
        Err(Errno::ENOENT) => return json!({"path": path, "state": "absent"}),
        Err(e) => return json!({"path": path, "state": "failed", "errno": output::errno_name(e)}),
        Ok(st) => st,
    };
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    if kind == SFlag::S_IFDIR {
        let entries = fs::read_dir(path).map(|d| d.count());
        let vfs = nix::sys::statfs::statfs(path);
        let readonly = nix::sys::statvfs::statvfs(path)
            .map(|v| v.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
        return match (entries, vfs, readonly) {
            (Ok(n), Ok(v), Ok(ro)) => {
                #[allow(clippy::useless_conversion)] // __fsword_t is not i64 on every arch
                let magic = i64::from(v.filesystem_type().0);
                let masked = magic == TMPFS_MAGIC && n == 0 && ro;
                json!({"path": path, "kind": "dir", "fs": fs_name(magic), "entries": n,
                       "readonly": ro, "state": if masked { "masked" } else { "real" }})
            }
            (e, v, r) => json!({"path": path, "kind": "dir", "state": "failed",
                "errno": format!("{:?} {:?} {:?}", e.err(), v.err(), r.err())}),
        };
    }
    // A file: opened (never written; /proc/kmsg never read, a read would
    // take messages from the host's syslog reader).
    let opened = nix::fcntl::open(
        path,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    );
    let fd = match opened {
        Ok(fd) => fd,
        Err(e) => {
            return json!({"path": path, "kind": "file", "state": "failed", "errno": output::errno_name(e)})
        }
    };
    let fst = match nix::sys::stat::fstat(fd.as_fd()) {
        Ok(s) => s,
        Err(e) => {
            return json!({"path": path, "kind": "file", "state": "failed", "errno": output::errno_name(e)})
        }
    };
    let fkind = SFlag::from_bits_truncate(fst.st_mode & libc::S_IFMT);
    if fkind == SFlag::S_IFCHR {
        let null = major(fst.st_rdev) == 1 && minor(fst.st_rdev) == 3;
        return json!({"path": path, "kind": "file", "device": format!("{}:{}", major(fst.st_rdev), minor(fst.st_rdev)),
                      "state": if null { "masked" } else { "failed" }});
    }
    // /proc/kmsg would hand the host's log to us; sysrq-trigger has no read.
    if path == "/proc/kmsg" || path == "/proc/sysrq-trigger" {
        return json!({"path": path, "kind": "file", "state": "real", "read": false});
    }
    let mut buf = vec![0u8; READ_MAX];
    let read = std::fs::File::from(fd).read(&mut buf);
    match read {
        Ok(n) => json!({"path": path, "kind": "file", "state": "real", "bytes": n}),
        Err(e) => json!({"path": path, "kind": "file", "state": "failed",
                         "errno": output::errno_name(output::io_errno(&e))}),
    }
}

/// Counts of each state, and the paths by state.
fn summarize(paths: Vec<Value>, states: &[&str]) -> Observation {
    let mut obs = Observation::new();
    let present = paths.iter().filter(|p| p["state"] != "absent").count();
    for state in states {
        let list: Vec<Value> = paths
            .iter()
            .filter(|p| p["state"] == *state)
            .map(|p| p["path"].clone())
            .collect();
        obs = obs
            .with(&format!("{state}_count"), list.len())
            .with(state, Value::Array(list));
    }
    obs.with("present_count", present)
        .with("paths", Value::Array(paths))
}

pub fn masked(mut args: Args) -> Result<Observation, ProbeError> {
    let paths: Vec<String> = args.at_least_one("path")?;
    args.finish()?;
    let seen = paths.iter().map(|p| masked_state(p)).collect();
    Ok(summarize(seen, &["masked", "real", "absent", "failed"]))
}

/// The first regular file under `dir` (depth 3) that its owner may write:
/// the harmless target a read-only check opens for writing.
fn writable_file_under(dir: &std::path::Path, depth: usize) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut entries: Vec<_> = fs::read_dir(dir).ok()?.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for e in &entries {
        let Ok(meta) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        if meta.is_file() && meta.permissions().mode() & 0o200 != 0 {
            return Some(e.path());
        }
    }
    if depth == 0 {
        return None;
    }
    entries
        .iter()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| writable_file_under(&e.path(), depth - 1))
}

/// One read-only path tried for writing: a file opened O_WRONLY (never
/// written: sysrq-trigger would act on the host) and closed; a directory
/// through the first owner-writable file below it. A directory without one
/// (/proc/fs on many kernels) is "no_target": procfs refuses a mkdir with
/// ENOENT before the mount's read-only flag is even looked at, so nothing
/// there can show the protection.
fn readonly_state(path: &str) -> Value {
    let p = std::path::Path::new(path);
    let meta = match fs::metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return json!({"path": path, "state": "absent"})
        }
        Err(e) => {
            return json!({"path": path, "state": "failed", "errno": output::errno_name(output::io_errno(&e))})
        }
        Ok(m) => m,
    };
    let target = if meta.is_dir() {
        match writable_file_under(p, 3) {
            Some(f) => f,
            None => return json!({"path": path, "state": "no_target"}),
        }
    } else {
        p.to_path_buf()
    };
    let result = fs::OpenOptions::new().write(true).open(&target).map(drop);
    let state = match &result {
        Err(e) if output::io_errno(e) == Errno::EROFS => "erofs",
        Ok(()) => "accepted",
        Err(_) => "failed",
    };
    json!({"path": path, "target": target.display().to_string(),
           "errno": output::io_errno_value(&result), "state": state})
}

pub fn readonly_paths(mut args: Args) -> Result<Observation, ProbeError> {
    let paths: Vec<String> = args.at_least_one("path")?;
    args.finish()?;
    let seen: Vec<Value> = paths.iter().map(|p| readonly_state(p)).collect();
    let tested = seen
        .iter()
        .filter(|p| p["state"] != "absent" && p["state"] != "no_target")
        .count();
    Ok(summarize(
        seen,
        &["erofs", "accepted", "no_target", "absent", "failed"],
    )
    .with("tested_count", tested))
}

/// mknod of a device node at each `--path`, opened read-only and closed
/// at once (never read or written), then unlinked: whether the node can be
/// made, and whether the kernel lets it be opened (the device allowlist
/// answers EPERM, a nodev mount EACCES).
pub fn device(mut args: Args) -> Result<Observation, ProbeError> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let paths: Vec<String> = args.at_least_one("path")?;
    let kind: String = args.required("kind")?;
    let major: u64 = args.required("major")?;
    let minor: u64 = args.required("minor")?;
    args.finish()?;
    let flag = match kind.as_str() {
        "char" => SFlag::S_IFCHR,
        "block" => SFlag::S_IFBLK,
        other => {
            return Err(crate::args::UsageError::Invalid {
                key: "kind",
                value: other.into(),
                why: "must be char or block".into(),
            }
            .into())
        }
    };
    let mut mknod_errnos = Vec::new();
    let mut open_errnos = Vec::new();
    for path in &paths {
        let made = mknod(
            path.as_str(),
            flag,
            Mode::from_bits_truncate(0o600),
            makedev(major, minor),
        );
        let opened = match made {
            Ok(()) => nix::fcntl::open(
                path.as_str(),
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map(drop),
            Err(e) => Err(e),
        };
        if made.is_ok() {
            let _ = nix::unistd::unlink(path.as_str());
        }
        mknod_errnos.push(output::errno_value(&made));
        open_errnos.push(output::errno_value(&opened));
    }
    Ok(Observation::new()
        .with("paths", paths)
        .with("mknod_errnos", mknod_errnos)
        .with("open_errnos", open_errnos))
}

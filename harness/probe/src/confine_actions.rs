//! Confinement seen from inside: which syscalls the seccomp filter refuses,
//! which kernel files are masked or read-only, what the locked mounts of a
//! user namespace allow. Every call is made with arguments the kernel
//! refuses on its own (a bogus handle, an unknown key type, bad magic), so
//! that without the filter the answer is the kernel's and nothing changes:
//! no module is loaded, no swap enabled, no reboot, no kexec.

use std::fs;

use nix::errno::Errno;
use serde_json::{Map, Value};

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
        nix::fcntl::OFlag::O_PATH,
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

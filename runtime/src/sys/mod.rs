//! The one home of raw libc calls. Every `unsafe` block says why it is sound.
//!
//! Two layers: free functions for the parent's process plumbing (clone3,
//! pidfds, exec...), and the [`Syscalls`] trait (in `seam`) for every call
//! the child makes between clone and execve, so its steps can be tested with
//! [`RecordingSyscalls`] (in `recording`) without root. Loop devices and
//! bpf(2) have their own modules.

use nix::errno::Errno;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

mod anon;
mod bpf;
mod loopdev;
mod recording;
mod seam;

pub use anon::{map_anonymous, AnonBuf};
pub use bpf::{bpf_attach_cgroup_device, bpf_load_cgroup_device, BpfInsn};
pub use loopdev::{loop_attach, loop_detach, loop_get_free};
pub use recording::{Call, CapModel, FakeFd, RecordingSyscalls};
pub use seam::{CapSets, ProcFdPath, RealSyscalls, Syscalls};

// ---------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------

/// `struct clone_args` of clone3(2), version 2 (with `cgroup`, for
/// CLONE_INTO_CGROUP).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of a [`clone3`] we are on.
#[derive(Debug)]
pub enum Forked {
    Parent { pid: i32, pidfd: Option<OwnedFd> },
    Child,
}

/// clone3(2) without CLONE_VM: a fork with namespace `flags`, optionally
/// returning a pidfd for the child (CLONE_PIDFD is added when asked).
///
/// # Safety
/// Like fork(2) in a program that may have threads: in the child only the
/// calling thread exists, and any lock another thread held (the allocator's,
/// stdio's) stays held forever. The caller's child path must avoid taking
/// such locks where it can and must end in `execve` or [`exit_now`], never
/// return into the caller's frames that expect the parent.
pub unsafe fn clone3(flags: u64, want_pidfd: bool) -> Result<Forked, Errno> {
    // SAFETY: the caller upholds clone3_into's rules, which are these.
    unsafe { clone3_into(flags, want_pidfd, None) }
}

/// [`clone3`], the child born in the cgroup2 directory `cgroup` (an fd,
/// O_PATH is enough) when given: CLONE_INTO_CGROUP (Linux 5.7), which
/// takes the kernel's threadgroup lock for reading only, where writing the
/// pid to cgroup.procs takes it for writing and waits out an RCU grace
/// period (5 to 30 ms measured here).
///
/// # Safety
/// As for [`clone3`].
pub unsafe fn clone3_into(
    flags: u64,
    want_pidfd: bool,
    cgroup: Option<BorrowedFd<'_>>,
) -> Result<Forked, Errno> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: flags
            | if want_pidfd {
                libc::CLONE_PIDFD as u64
            } else {
                0
            },
        // With CLONE_PARENT the kernel wants 0 here and gives the child the
        // caller's own exit signal (SIGCHLD for our processes).
        exit_signal: if flags & CLONE_PARENT != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        cgroup: cgroup.map_or(0, |fd| fd.as_raw_fd() as u64),
        ..CloneArgs::default()
    };
    if cgroup.is_some() {
        args.flags |= CLONE_INTO_CGROUP;
    }
    if want_pidfd {
        args.pidfd = std::ptr::addr_of_mut!(pidfd) as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size we pass; `pidfd`
    // outlives the call. No stack is given, so the child runs on a copy of
    // ours like fork(2); the caller upholds the post-fork rules above.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of_mut!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => {
            let pidfd = if want_pidfd {
                // SAFETY: the kernel stored a fresh pidfd we now own.
                Some(unsafe { OwnedFd::from_raw_fd(pidfd) })
            } else {
                None
            };
            Ok(Forked::Parent {
                pid: pid as i32,
                pidfd,
            })
        }
    }
}

/// CLONE_INTO_CGROUP (linux/sched.h; not in every libc crate version).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// CLONE_PARENT for [`clone3`]: the new process becomes a child of our parent.
pub const CLONE_PARENT: u64 = libc::CLONE_PARENT as u64;

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: plain syscall with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signal the process the pidfd names, never a
/// recycled pid.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> Result<(), Errno> {
    // SAFETY: valid fd, null siginfo is allowed, flags 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// The resource limits the runtime sets on a container's first process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rlimit {
    Nofile,
    Nproc,
}

impl Rlimit {
    /// The limit's name in messages (`nofile`, `nproc`).
    pub fn name(self) -> &'static str {
        match self {
            Rlimit::Nofile => "nofile",
            Rlimit::Nproc => "nproc",
        }
    }

    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
        }
    }
}

/// prlimit(2) on a process (0: this one): sets both the soft and the hard limit of
/// `resource` to `value` and returns what the kernel then holds (soft,
/// hard), read back in a second call.
pub fn set_rlimit_of(pid: i32, resource: Rlimit, value: u64) -> Result<(u64, u64), Errno> {
    let new = libc::rlimit64 {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: `new` is a valid rlimit64 that outlives the call; a null old
    // limit pointer is allowed (not wanted here).
    Errno::result(unsafe { libc::prlimit64(pid, resource.raw(), &new, std::ptr::null_mut()) })?;
    let mut now = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a null new limit only reads; `now` is a valid, writable
    // rlimit64 for the kernel to fill.
    Errno::result(unsafe { libc::prlimit64(pid, resource.raw(), std::ptr::null(), &mut now) })?;
    Ok((now.rlim_cur, now.rlim_max))
}

/// setns(2) on any namespace fd or a pidfd (with several CLONE_NEW* flags).
pub fn setns(fd: BorrowedFd<'_>, nstype: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall on a borrowed, open fd.
    let r = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    Errno::result(r).map(drop)
}

/// unshare(2).
pub fn unshare(flags: i32) -> Result<(), Errno> {
    // SAFETY: plain syscall with an integer argument.
    Errno::result(unsafe { libc::unshare(flags) }).map(drop)
}

/// The namespace flags as `i32` for setns/unshare.
pub const CLONE_NEWTIME: i32 = libc::CLONE_NEWTIME;
pub const CLONE_NEWCGROUP: i32 = libc::CLONE_NEWCGROUP;

/// PR_SET_PDEATHSIG SIGKILL: die with the thread that cloned us.
pub fn set_parent_death_kill() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }).map(drop)
}

/// PR_SET_NO_NEW_PRIVS.
pub fn set_no_new_privs() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }).map(drop)
}

/// seccomp(SECCOMP_SET_MODE_FILTER): installs a compiled classic-BPF
/// program on the calling thread (inherited by children and kept across
/// execve). Needs no_new_privs or CAP_SYS_ADMIN; does not set no_new_privs
/// itself (seccompiler's `apply_filter` would, coupling two protections).
pub fn seccomp_set_filter(program: &[seccompiler::sock_filter]) -> Result<(), Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::E2BIG)?;
    let prog = libc::sock_fprog {
        len,
        // seccompiler's sock_filter is #[repr(C)] with the kernel's layout,
        // the same as libc's.
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, which outlives the call; the
    // kernel copies the instructions and keeps no pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            std::ptr::addr_of!(prog),
        )
    };
    Errno::result(r).map(drop)
}

/// getppid(2).
pub fn getppid() -> i32 {
    // SAFETY: always succeeds.
    unsafe { libc::getppid() }
}

/// Default dispositions and an empty mask, as a fresh process expects
/// (Rust ignores SIGPIPE, and ignored signals survive execve).
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL is always valid; errors (for signals
        // glibc reserves) are ignored on purpose.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an empty, initialised set; old mask not wanted.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// dup2(2).
pub fn dup2(from: RawFd, to: RawFd) -> Result<(), Errno> {
    // SAFETY: plain syscall; `to` is replaced atomically.
    Errno::result(unsafe { libc::dup2(from, to) }).map(drop)
}

/// close_range(first, ~0, CLOSE_RANGE_CLOEXEC): nothing the parent leaked
/// survives execve. CLOSE_RANGE_CLOEXEC is Linux 5.11+ (5.10 answers EINVAL,
/// 5.8 and older ENOSYS): there, set FD_CLOEXEC on each fd below the
/// RLIMIT_NOFILE soft limit (no /proc walk: it may not be mounted here).
pub fn cloexec_from(first: u32) -> Result<(), Errno> {
    // SAFETY: plain syscall with integer arguments.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    match Errno::result(r) {
        Err(Errno::EINVAL | Errno::ENOSYS) => cloexec_each_from(first),
        other => other.map(drop),
    }
}

/// The pre-5.11 way: fcntl(F_SETFD, FD_CLOEXEC) on every possible fd.
fn cloexec_each_from(first: u32) -> Result<(), Errno> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    Errno::result(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let end = limit.rlim_cur.min(i32::MAX as libc::rlim_t) as i32;
    for fd in (first.min(i32::MAX as u32) as i32)..end {
        // SAFETY: fcntl on an fd number that may not be open; EBADF is the
        // answer for those and is ignored.
        let r = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        if r < 0 && Errno::last() != Errno::EBADF {
            return Err(Errno::last());
        }
    }
    Ok(())
}

/// open(2) of a NUL-terminated path, returning an owned fd.
pub fn open(path: &CStr, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: valid C string; O_CLOEXEC added so nothing leaks into exec.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// PR_SET_DUMPABLE 1: the process's /proc files owned by its own euid again
/// (a change of ids left them to the host's root).
pub fn set_dumpable() -> Result<(), Errno> {
    // SAFETY: prctl with integer arguments.
    Errno::result(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) }).map(drop)
}

/// openat(2) of a NUL-terminated name relative to `dir`, returning an owned
/// fd (O_CLOEXEC added).
pub fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: valid fd and C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: new fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits for a child forked by [`clone3`] and returns its exit code (128 +
/// signal when killed). Retries EINTR.
pub fn wait_exit_code(pid: i32) -> Result<i32, Errno> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` outlives the call.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 {
            break;
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Ok(128 + libc::WTERMSIG(status))
    }
}

/// write(2) of the whole buffer.
pub fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = Errno::last();
            if e == Errno::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// read(2) once, retrying EINTR.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<usize, Errno> {
    loop {
        // SAFETY: buf is valid and writable for its length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// The most fds one message may carry (`send_with_fds`, `recv_with_fds`).
pub const MAX_PASSED_FDS: usize = 16;

/// One message with `fds` attached (SCM_RIGHTS): the handshake's GO with
/// the cgroup files the child joins through, opened after clone.
pub fn send_with_fds(sock: BorrowedFd<'_>, buf: &[u8], fds: &[RawFd]) -> Result<(), Errno> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    if fds.len() > MAX_PASSED_FDS {
        return Err(Errno::E2BIG);
    }
    let iov = [std::io::IoSlice::new(buf)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &rights };
    // A peer that is gone is an error to report (EPIPE), not a SIGPIPE to
    // a caller that may not ignore it.
    loop {
        match sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
            Ok(n) if n != buf.len() => return Err(Errno::EMSGSIZE),
            Ok(_) => return Ok(()),
        }
    }
}

/// recvmsg(2) of one message into `buf` and the fds it carries into
/// `fds` (close-on-exec), without allocating (the child calls it):
/// returns the bytes and the fds received. A message whose fds did not
/// fit is an error (its fds are lost to the kernel's truncation).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    fds: &mut [RawFd; MAX_PASSED_FDS],
) -> Result<(usize, usize), Errno> {
    // Room for one SCM_RIGHTS header and MAX_PASSED_FDS ints, aligned for
    // cmsghdr (16 bytes of header + 64 of fds on x86_64, with room spare).
    let mut control = [0u64; 16];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: zeroed msghdr is valid; every pointer set below outlives the
    // call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    let n = loop {
        // SAFETY: msg points at live buffers of the lengths it names.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    };
    if msg.msg_flags & (libc::MSG_CTRUNC | libc::MSG_TRUNC) != 0 {
        return Err(Errno::EMSGSIZE);
    }
    let mut count = 0;
    // SAFETY: the CMSG_* walk stays within msg_control/msg_controllen,
    // which the kernel filled.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    if count == MAX_PASSED_FDS {
                        return Err(Errno::EMSGSIZE);
                    }
                    fds[count] = std::ptr::read_unaligned(data.add(i));
                    count += 1;
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, count))
}

/// fchdir(2).
pub fn fchdir(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: plain syscall on an open fd.
    Errno::result(unsafe { libc::fchdir(fd.as_raw_fd()) }).map(drop)
}

/// Brings `lo` up with SIOCSIFFLAGS (the network module does the rest).
pub fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket(2).
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(Errno::last());
    }
    // SAFETY: we own the fresh fd.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into the ifreq we pass, which outlives it.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the ifreq we pass.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// execve(2) with prepared NULL-terminated pointer arrays. Returns only on
/// failure.
pub fn execve(path: &CStr, argv: &[*const libc::c_char], envp: &[*const libc::c_char]) -> Errno {
    debug_assert!(argv.last().is_some_and(|p| p.is_null()));
    debug_assert!(envp.last().is_some_and(|p| p.is_null()));
    // SAFETY: the arrays are NULL-terminated (checked by the caller's
    // construction in `process::ExecArgs`) and point at live C strings.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    Errno::last()
}

/// _exit(2): leave the child without running the parent's destructors or
/// atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and is async-signal-safe.
    unsafe { libc::_exit(code) }
}

/// Waits for readability of `fd` up to `timeout_ms` (-1: forever).
/// Returns false on timeout.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> Result<bool, Errno> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r >= 0 {
            return Ok(r > 0);
        }
        let e = Errno::last();
        if e != Errno::EINTR {
            return Err(e);
        }
    }
}

/// setxattr(2) on a path (follows symlinks).
pub fn set_xattr(path: &CStr, name: &CStr, value: &[u8]) -> Result<(), Errno> {
    // SAFETY: valid C strings and a value buffer of the given length.
    let r = unsafe {
        libc::setxattr(
            path.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod cloexec_tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn fallback_marks_an_inherited_fd_close_on_exec() {
        // SAFETY: dup of stdin gives a fresh fd without FD_CLOEXEC, ours to close.
        let fd = unsafe { libc::dup(0) };
        assert!(fd >= 3, "dup gave {fd}");
        // SAFETY: the fd was just created and is owned here.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: F_GETFD on an open fd.
        let before = unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(before & libc::FD_CLOEXEC, 0);
        cloexec_each_from(fd as u32).expect("fallback");
        // SAFETY: F_GETFD on an open fd.
        let after = unsafe { libc::fcntl(owned.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(after & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}

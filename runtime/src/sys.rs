//! The one home of raw libc calls. Every `unsafe` block says why it is sound.
//!
//! Two layers: free functions for the process plumbing (clone3, pidfds,
//! setns, exec...), and the [`Syscalls`] trait for the calls that change the
//! kernel while the child builds its root, so `mounts` can be tested with
//! [`RecordingSyscalls`] without root.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

// ---------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------

/// `struct clone_args` of clone3(2), version 2 (with `cgroup`).
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
        ..CloneArgs::default()
    };
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
    fn raw(self) -> libc::__rlimit_resource_t {
        match self {
            Rlimit::Nofile => libc::RLIMIT_NOFILE,
            Rlimit::Nproc => libc::RLIMIT_NPROC,
        }
    }
}

/// prlimit(2) on another process: sets both the soft and the hard limit of
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

// Loop devices (linux/loop.h): a block device backed by a file, for tests
// that need a block device of their own and never a disk of the host.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
/// Detach by itself when the last opener closes it (a crashed run leaks
/// nothing once its fds are gone).
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// A free loop device's number (LOOP_CTL_GET_FREE on /dev/loop-control).
pub fn loop_get_free(control: BorrowedFd<'_>) -> Result<u32, Errno> {
    // SAFETY: this ioctl takes no argument and returns a number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
    Errno::result(n).map(|n| n as u32)
}

/// Backs the loop device open as `device` with the file open as `backing`
/// (LOOP_SET_FD), then marks it autoclear and names it `name` (at most 63
/// bytes are kept) with LOOP_SET_STATUS64. EBUSY: someone else took it.
pub fn loop_attach(
    device: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    name: &[u8],
) -> Result<(), Errno> {
    // SAFETY: LOOP_SET_FD takes the backing fd as its integer argument.
    Errno::result(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_FD,
            backing.as_raw_fd() as libc::c_ulong,
        )
    })?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let len = name.len().min(63);
    info.lo_file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: `info` is a valid, initialised loop_info64 that outlives the
    // call; the kernel only reads it.
    let set = Errno::result(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_STATUS64,
            &info as *const LoopInfo64,
        )
    });
    if let Err(e) = set {
        let _ = loop_detach(device);
        return Err(e);
    }
    Ok(())
}

/// LOOP_CLR_FD: detach the backing file (done at last close if busy).
pub fn loop_detach(device: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: this ioctl takes no argument.
    Errno::result(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) }).map(drop)
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

/// The bpf(2) attr union, as wide as any command we use needs.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_int, attr: &BpfAttr) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a zero-filled bpf_attr of the size we pass, with
    // the fields of `cmd` set; the pointers in it outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::addr_of!(attr.0),
            std::mem::size_of::<BpfAttr>(),
        )
    };
    Errno::result(r)
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program.
pub fn bpf_load_cgroup_device(program: &[BpfInsn]) -> Result<OwnedFd, Errno> {
    let license = c"Apache-2.0";
    let mut attr = BpfAttr([0; 128]);
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, u32::try_from(program.len()).map_err(|_| Errno::E2BIG)?);
    attr.put_u64(8, program.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    let fd = bpf(BPF_PROG_LOAD, &attr)?;
    // SAFETY: the kernel returned a new program fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// BPF_PROG_ATTACH of a device program to a cgroup2 directory (ALLOW_MULTI,
/// so programs of the parents keep running too). The attachment lives as
/// long as the cgroup, not the fds.
pub fn bpf_attach_cgroup_device(
    program: &impl std::os::fd::AsFd,
    cgroup: &impl std::os::fd::AsFd,
) -> Result<(), Errno> {
    let mut attr = BpfAttr([0; 128]);
    attr.put_u32(0, cgroup.as_fd().as_raw_fd() as u32);
    attr.put_u32(4, program.as_fd().as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &attr).map(drop)
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

/// setresuid/setresgid/setgroups(0 entries).
pub fn set_ids(uid: u32, gid: u32, clear_groups: bool) -> Result<(), (crate::step::Step, Errno)> {
    use crate::step::Step;
    if clear_groups {
        // SAFETY: zero-length list, null pointer allowed.
        Errno::result(unsafe { libc::setgroups(0, std::ptr::null()) })
            .map_err(|e| (Step::SetGroups, e))?;
    }
    // SAFETY: plain syscalls.
    Errno::result(unsafe { libc::setresgid(gid, gid, gid) }).map_err(|e| (Step::SetGid, e))?;
    // SAFETY: plain syscall.
    Errno::result(unsafe { libc::setresuid(uid, uid, uid) }).map_err(|e| (Step::SetUid, e))?;
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

// ---------------------------------------------------------------------------
// The seam for building the root
// ---------------------------------------------------------------------------

/// The calls that change the kernel while the child builds its root. The
/// real implementation runs them; [`RecordingSyscalls`] records them.
pub trait Syscalls {
    /// An O_PATH handle on a resolved path, closed on drop. Mounting on
    /// [`ProcFdPath`] of it mounts on what it resolved to.
    type Fd: AsRawFd;
    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno>;
    fn umount2(&mut self, target: &CStr, flags: MntFlags) -> Result<(), Errno>;
    /// mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY): the mount at `target`
    /// and every mount below it become read-only. ENOSYS on old kernels.
    fn mount_setattr_readonly_recursive(&mut self, target: &CStr) -> Result<(), Errno>;
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno>;
    fn chroot(&mut self, path: &CStr) -> Result<(), Errno>;
    fn chdir(&mut self, path: &CStr) -> Result<(), Errno>;
    fn rmdir(&mut self, path: &CStr) -> Result<(), Errno>;
    /// open(O_PATH|O_DIRECTORY) of a path the parent chose (the new root's
    /// mount point, in our own temp dir), never of one an image holds.
    fn open_dir(&mut self, path: &CStr) -> Result<Self::Fd, Errno>;
    /// openat2(root, path, O_PATH [|O_DIRECTORY], RESOLVE_IN_ROOT |
    /// RESOLVE_NO_MAGICLINKS): `path` resolved as if `root` were `/`, so an
    /// absolute or `..` symlink in the image never leads above it. Mounts
    /// below `root` are crossed, so the fd is the mount on top.
    fn open_in_root(
        &mut self,
        root: &Self::Fd,
        path: &CStr,
        directory: bool,
    ) -> Result<Self::Fd, Errno>;
    /// mkdirat(2) of one plain name in `dir`.
    fn mkdirat(&mut self, dir: &Self::Fd, name: &CStr, mode: u32) -> Result<(), Errno>;
    /// An empty regular file `name` in `dir` to bind a non-directory onto
    /// (O_CREAT|O_EXCL|O_NOFOLLOW: EEXIST when anything is there).
    fn create_file_at(&mut self, dir: &Self::Fd, name: &CStr, mode: u32) -> Result<(), Errno>;
    /// symlinkat(2): `name` in `dir` pointing to `target`.
    fn symlinkat(&mut self, target: &CStr, dir: &Self::Fd, name: &CStr) -> Result<(), Errno>;
    /// Where `fd` is, as /proc/self/mountinfo would name it (readlink of
    /// its /proc/self/fd link), in `buf`.
    fn fd_path<'b>(&mut self, fd: &Self::Fd, buf: &'b mut [u8]) -> Result<&'b CStr, Errno>;
    fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno>;
    /// The MS_* flags a remount must keep (from statvfs), e.g. nosuid.
    fn mount_flags(&mut self, path: &CStr) -> Result<MsFlags, Errno>;
    /// Fills `buf` with /proc/self/mountinfo; ENOBUFS if it does not fit.
    fn read_mountinfo<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], Errno>;
}

/// `/proc/self/fd/N` in a stack buffer (the child must not allocate).
/// mount(2), mount_setattr(2) and statvfs(2) given this path act on what
/// the fd resolved to (the kernel follows the magic link without walking a
/// path again): how a target found with openat2 is mounted on, as runc and
/// libpathrs do.
#[derive(Clone, Copy)]
pub struct ProcFdPath {
    buf: [u8; 32],
}

impl ProcFdPath {
    const PREFIX: &'static [u8] = b"/proc/self/fd/";

    pub fn new(fd: RawFd) -> ProcFdPath {
        let mut buf = [0u8; 32];
        buf[..Self::PREFIX.len()].copy_from_slice(Self::PREFIX);
        let mut digits = [0u8; 10];
        let mut n = fd.unsigned_abs();
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, d) in digits[..len].iter().rev().enumerate() {
            buf[Self::PREFIX.len() + i] = *d;
        }
        ProcFdPath { buf }
    }

    pub fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.buf).unwrap_or(c"/proc/self/fd")
    }

    /// The fd a `/proc/self/fd/N` path names, if it is one.
    pub fn parse(path: &[u8]) -> Option<RawFd> {
        let digits = path.strip_prefix(Self::PREFIX)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
}

impl std::fmt::Debug for ProcFdPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_c_str().fmt(f)
    }
}

/// `struct open_how` of openat2(2) (libc's is non-exhaustive).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// openat2(2) of `path` relative to `dir`, O_CLOEXEC added.
fn openat2(dir: RawFd, path: &CStr, flags: i32, resolve: u64) -> Result<OwnedFd, Errno> {
    let mut how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: a valid C string and an open_how of the size we pass,
        // both outliving the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir,
                path.as_ptr(),
                std::ptr::addr_of_mut!(how),
                std::mem::size_of::<OpenHow>(),
            )
        };
        if fd >= 0 {
            // SAFETY: the kernel returned a new fd that nobody else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
        }
        // EAGAIN: a rename raced the RESOLVE_IN_ROOT walk; try again.
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
}

/// Runs the calls for real.
#[derive(Debug, Default)]
pub struct RealSyscalls;

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

impl Syscalls for RealSyscalls {
    type Fd = OwnedFd;

    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        // SAFETY: every pointer is a valid C string or null, as mount(2)
        // allows for source, fstype and data.
        let r = unsafe {
            libc::mount(
                opt_ptr(source),
                target.as_ptr(),
                opt_ptr(fstype),
                flags.bits(),
                opt_ptr(data).cast(),
            )
        };
        Errno::result(r).map(drop)
    }

    fn umount2(&mut self, target: &CStr, flags: MntFlags) -> Result<(), Errno> {
        // SAFETY: valid C string.
        Errno::result(unsafe { libc::umount2(target.as_ptr(), flags.bits()) }).map(drop)
    }

    fn mount_setattr_readonly_recursive(&mut self, target: &CStr) -> Result<(), Errno> {
        const MOUNT_ATTR_RDONLY: u64 = 0x1;
        let mut attr = MountAttr {
            attr_set: MOUNT_ATTR_RDONLY,
            attr_clr: 0,
            propagation: 0,
            userns_fd: 0,
        };
        // SAFETY: valid C string and a mount_attr of the size we pass.
        let r = unsafe {
            libc::syscall(
                libc::SYS_mount_setattr,
                libc::AT_FDCWD,
                target.as_ptr(),
                libc::AT_RECURSIVE as libc::c_uint,
                std::ptr::addr_of_mut!(attr),
                std::mem::size_of::<MountAttr>(),
            )
        };
        Errno::result(r).map(drop)
    }

    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        // SAFETY: valid C strings; glibc has no wrapper, so the raw syscall.
        let r = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
        Errno::result(r).map(drop)
    }

    fn chroot(&mut self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: valid C string.
        Errno::result(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
    }

    fn chdir(&mut self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: valid C string.
        Errno::result(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
    }

    fn rmdir(&mut self, path: &CStr) -> Result<(), Errno> {
        // SAFETY: valid C string.
        Errno::result(unsafe { libc::rmdir(path.as_ptr()) }).map(drop)
    }

    fn open_dir(&mut self, path: &CStr) -> Result<OwnedFd, Errno> {
        openat2(libc::AT_FDCWD, path, libc::O_PATH | libc::O_DIRECTORY, 0)
    }

    fn open_in_root(
        &mut self,
        root: &OwnedFd,
        path: &CStr,
        directory: bool,
    ) -> Result<OwnedFd, Errno> {
        let dir = if directory { libc::O_DIRECTORY } else { 0 };
        openat2(
            root.as_raw_fd(),
            path,
            libc::O_PATH | dir,
            libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
        )
    }

    fn mkdirat(&mut self, dir: &OwnedFd, name: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: an open fd and a valid C string.
        Errno::result(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }).map(drop)
    }

    fn create_file_at(&mut self, dir: &OwnedFd, name: &CStr, mode: u32) -> Result<(), Errno> {
        // SAFETY: an open fd and a valid C string; the new fd is closed
        // right away.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_WRONLY | libc::O_CLOEXEC,
                mode,
            )
        };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: we own fd.
        unsafe { libc::close(fd) };
        Ok(())
    }

    fn symlinkat(&mut self, target: &CStr, dir: &OwnedFd, name: &CStr) -> Result<(), Errno> {
        // SAFETY: valid C strings and an open fd.
        Errno::result(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
            .map(drop)
    }

    fn fd_path<'b>(&mut self, fd: &OwnedFd, buf: &'b mut [u8]) -> Result<&'b CStr, Errno> {
        let link = ProcFdPath::new(fd.as_raw_fd());
        let cap = buf.len().saturating_sub(1);
        // SAFETY: a valid C string and a buffer writable for `cap` bytes.
        let n = unsafe { libc::readlink(link.as_c_str().as_ptr(), buf.as_mut_ptr().cast(), cap) };
        if n < 0 {
            return Err(Errno::last());
        }
        let n = n as usize;
        if n >= cap {
            return Err(Errno::ENAMETOOLONG);
        }
        buf[n] = 0;
        CStr::from_bytes_with_nul(&buf[..=n]).map_err(|_| Errno::EINVAL)
    }

    fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno> {
        // SAFETY: pointer and length describe `name`.
        Errno::result(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
    }

    fn mount_flags(&mut self, path: &CStr) -> Result<MsFlags, Errno> {
        // SAFETY: statvfs is plain data; the kernel fills it.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out-pointer.
        Errno::result(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
        let mut flags = MsFlags::empty();
        for (st_bit, ms) in [
            (libc::ST_NOSUID, MsFlags::MS_NOSUID),
            (libc::ST_NODEV, MsFlags::MS_NODEV),
            (libc::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (libc::ST_NOATIME, MsFlags::MS_NOATIME),
            (libc::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (libc::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if st.f_flag & st_bit != 0 {
                flags |= ms;
            }
        }
        Ok(flags)
    }

    fn read_mountinfo<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], Errno> {
        let fd = open(c"/proc/self/mountinfo", libc::O_RDONLY)?;
        let mut len = 0;
        loop {
            if len == buf.len() {
                return Err(Errno::ENOBUFS);
            }
            let n = read(std::os::fd::AsFd::as_fd(&fd), &mut buf[len..])?;
            if n == 0 {
                return Ok(&buf[..len]);
            }
            len += n;
        }
    }
}

/// One call seen by [`RecordingSyscalls`], with owned, printable arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<String>,
        target: String,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount2 {
        target: String,
        flags: MntFlags,
    },
    MountSetattrReadonly {
        target: String,
    },
    PivotRoot {
        new_root: String,
        put_old: String,
    },
    Chroot {
        path: String,
    },
    Chdir {
        path: String,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Rmdir {
        path: String,
    },
    CreateFile {
        path: String,
    },
    Symlink {
        target: String,
        link: String,
    },
    Sethostname {
        name: String,
    },
}

impl Call {
    /// The path the call acts on (mount target, dir, link...).
    pub fn target(&self) -> &str {
        match self {
            Call::Mount { target, .. }
            | Call::Umount2 { target, .. }
            | Call::MountSetattrReadonly { target } => target,
            Call::PivotRoot { new_root, .. } => new_root,
            Call::Chroot { path }
            | Call::Chdir { path }
            | Call::Mkdir { path, .. }
            | Call::Rmdir { path }
            | Call::CreateFile { path } => path,
            Call::Symlink { link, .. } => link,
            Call::Sethostname { name } => name,
        }
    }
}

/// A test double: records every call that changes the kernel, in order,
/// succeeds unless told to fail, and serves a canned mountinfo. It keeps a
/// small model of the image (paths that exist, symlinks) and resolves in
/// the root as openat2(RESOLVE_IN_ROOT) does, so hostile images are tested
/// without root. Like the kernel, it takes a `/proc/self/fd/N` path for
/// what fd N resolved to: calls show that path.
#[derive(Debug, Default)]
pub struct RecordingSyscalls {
    pub calls: Vec<Call>,
    /// Served by `read_mountinfo`.
    pub mountinfo: String,
    /// mount_setattr fails with ENOSYS (an old kernel), forcing the fallback.
    pub no_mount_setattr: bool,
    /// The first call whose target equals `.0` fails with `.1`.
    pub fail_target: Option<(String, Errno)>,
    /// `fail_target` fails one call only (then later calls on the same
    /// target succeed, as after a fallback).
    pub fail_once: bool,
    /// Full paths that exist (mkdirat / create_file_at on them give
    /// EEXIST); what the code creates is added.
    pub existing: Vec<String>,
    /// Symlinks in the image: the link's full path and its target as
    /// stored (absolute targets are inside the root).
    pub symlinks: Vec<(String, String)>,
    /// Every mount target as it was passed, before being shown as a path.
    pub raw_mount_targets: Vec<String>,
    /// What each fake fd resolved to (fd `FAKE_FD_BASE + index`).
    pub fds: Vec<String>,
    /// Paths opened with `open_dir` (the new root).
    pub roots: Vec<String>,
}

/// A fake fd of [`RecordingSyscalls`].
#[derive(Debug)]
pub struct FakeFd(RawFd);

impl AsRawFd for FakeFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

const FAKE_FD_BASE: RawFd = 1000;

fn lossy(s: &CStr) -> String {
    s.to_string_lossy().into_owned()
}

impl RecordingSyscalls {
    fn record(&mut self, call: Call) -> Result<(), Errno> {
        let fail = match &self.fail_target {
            Some((t, e)) if t == call.target() => Some(*e),
            _ => None,
        };
        if fail.is_some() && self.fail_once {
            self.fail_target = None;
        }
        self.calls.push(call);
        match fail {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A path as the kernel would act on it: `/proc/self/fd/N` is what fd N
    /// resolved to.
    fn shown(&self, p: &CStr) -> String {
        ProcFdPath::parse(p.to_bytes())
            .and_then(|fd| self.fds.get(usize::try_from(fd - FAKE_FD_BASE).ok()?))
            .cloned()
            .unwrap_or_else(|| lossy(p))
    }

    fn fd(&self, fd: &FakeFd) -> String {
        self.fds[(fd.0 - FAKE_FD_BASE) as usize].clone()
    }

    fn new_fd(&mut self, path: String) -> FakeFd {
        self.fds.push(path);
        FakeFd(FAKE_FD_BASE + self.fds.len() as RawFd - 1)
    }

    /// Whether `path` exists: listed or created, or below a mount whose
    /// content comes from the kernel (proc, sysfs) or from the host (a bind
    /// of a source outside the root, other than the image's at the root).
    fn is_there(&self, path: &str) -> bool {
        if self.existing.iter().any(|p| p == path) {
            return true;
        }
        self.calls.iter().any(|c| match c {
            Call::Mount {
                source,
                target,
                fstype,
                flags,
                ..
            } => {
                let below = path
                    .strip_prefix(target.as_str())
                    .is_some_and(|rest| rest.starts_with('/'));
                let kernel = matches!(fstype.as_deref(), Some("proc" | "sysfs"));
                let host = flags.contains(MsFlags::MS_BIND)
                    && !self.roots.contains(target)
                    && source
                        .as_deref()
                        .is_some_and(|s| !self.roots.iter().any(|r| s.starts_with(r.as_str())));
                below && (kernel || host)
            }
            _ => false,
        })
    }

    /// RESOLVE_IN_ROOT over the model: `..` stops at `root`, an absolute
    /// symlink restarts from `root`.
    fn resolve(&self, root: &str, path: &str) -> Result<String, Errno> {
        let mut parts: Vec<String> = Vec::new();
        let mut todo: std::collections::VecDeque<String> =
            path.split('/').map(str::to_owned).collect();
        let mut links = 0;
        let at = |parts: &[String]| {
            let mut p = root.to_owned();
            for c in parts {
                p.push('/');
                p.push_str(c);
            }
            p
        };
        while let Some(c) = todo.pop_front() {
            match c.as_str() {
                "" | "." => continue,
                ".." => {
                    parts.pop();
                    continue;
                }
                _ => {}
            }
            parts.push(c);
            let here = at(&parts);
            if let Some((_, target)) = self.symlinks.iter().find(|(l, _)| *l == here) {
                links += 1;
                if links > 40 {
                    return Err(Errno::ELOOP);
                }
                parts.pop();
                if target.starts_with('/') {
                    parts.clear();
                }
                for (i, t) in target.split('/').enumerate() {
                    todo.insert(i, t.to_owned());
                }
                continue;
            }
            if !self.is_there(&here) {
                return Err(Errno::ENOENT);
            }
        }
        Ok(at(&parts))
    }

    /// Records a creation of `name` in `dir`; EEXIST when anything is there.
    fn create(
        &mut self,
        dir: &FakeFd,
        name: &CStr,
        call: impl FnOnce(String) -> Call,
    ) -> Result<(), Errno> {
        let path = format!("{}/{}", self.fd(dir), lossy(name));
        let taken = self.is_there(&path) || self.symlinks.iter().any(|(l, _)| *l == path);
        self.record(call(path.clone()))?;
        if taken {
            return Err(Errno::EEXIST);
        }
        self.existing.push(path);
        Ok(())
    }
}

impl Syscalls for RecordingSyscalls {
    type Fd = FakeFd;

    fn mount(
        &mut self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> Result<(), Errno> {
        self.raw_mount_targets.push(lossy(target));
        self.record(Call::Mount {
            source: source.map(|s| self.shown(s)),
            target: self.shown(target),
            fstype: fstype.map(lossy),
            flags,
            data: data.map(lossy),
        })
    }
    fn umount2(&mut self, target: &CStr, flags: MntFlags) -> Result<(), Errno> {
        self.record(Call::Umount2 {
            target: self.shown(target),
            flags,
        })
    }
    fn mount_setattr_readonly_recursive(&mut self, target: &CStr) -> Result<(), Errno> {
        if self.no_mount_setattr {
            return Err(Errno::ENOSYS);
        }
        self.record(Call::MountSetattrReadonly {
            target: self.shown(target),
        })
    }
    fn pivot_root(&mut self, new_root: &CStr, put_old: &CStr) -> Result<(), Errno> {
        self.record(Call::PivotRoot {
            new_root: self.shown(new_root),
            put_old: self.shown(put_old),
        })
    }
    fn chroot(&mut self, path: &CStr) -> Result<(), Errno> {
        self.record(Call::Chroot { path: lossy(path) })
    }
    fn chdir(&mut self, path: &CStr) -> Result<(), Errno> {
        self.record(Call::Chdir { path: lossy(path) })
    }
    fn rmdir(&mut self, path: &CStr) -> Result<(), Errno> {
        self.record(Call::Rmdir { path: lossy(path) })
    }
    fn open_dir(&mut self, path: &CStr) -> Result<FakeFd, Errno> {
        let path = lossy(path);
        self.roots.push(path.clone());
        if !self.existing.contains(&path) {
            self.existing.push(path.clone());
        }
        Ok(self.new_fd(path))
    }
    fn open_in_root(
        &mut self,
        root: &FakeFd,
        path: &CStr,
        _directory: bool,
    ) -> Result<FakeFd, Errno> {
        let resolved = self.resolve(&self.fd(root), &lossy(path))?;
        Ok(self.new_fd(resolved))
    }
    fn mkdirat(&mut self, dir: &FakeFd, name: &CStr, mode: u32) -> Result<(), Errno> {
        self.create(dir, name, |path| Call::Mkdir { path, mode })
    }
    fn create_file_at(&mut self, dir: &FakeFd, name: &CStr, _mode: u32) -> Result<(), Errno> {
        self.create(dir, name, |path| Call::CreateFile { path })
    }
    fn symlinkat(&mut self, target: &CStr, dir: &FakeFd, name: &CStr) -> Result<(), Errno> {
        let target = lossy(target);
        let link = format!("{}/{}", self.fd(dir), lossy(name));
        self.record(Call::Symlink {
            target: target.clone(),
            link: link.clone(),
        })?;
        self.symlinks.push((link, target));
        Ok(())
    }
    fn fd_path<'b>(&mut self, fd: &FakeFd, buf: &'b mut [u8]) -> Result<&'b CStr, Errno> {
        let p = self.fd(fd);
        let b = p.as_bytes();
        if b.len() + 1 > buf.len() {
            return Err(Errno::ENAMETOOLONG);
        }
        buf[..b.len()].copy_from_slice(b);
        buf[b.len()] = 0;
        CStr::from_bytes_with_nul(&buf[..=b.len()]).map_err(|_| Errno::EINVAL)
    }
    fn sethostname(&mut self, name: &[u8]) -> Result<(), Errno> {
        self.record(Call::Sethostname {
            name: String::from_utf8_lossy(name).into_owned(),
        })
    }
    fn mount_flags(&mut self, _path: &CStr) -> Result<MsFlags, Errno> {
        Ok(MsFlags::MS_NOSUID | MsFlags::MS_NODEV)
    }
    fn read_mountinfo<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], Errno> {
        let src = self.mountinfo.as_bytes();
        if src.len() > buf.len() {
            return Err(Errno::ENOBUFS);
        }
        buf[..src.len()].copy_from_slice(src);
        Ok(&buf[..src.len()])
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

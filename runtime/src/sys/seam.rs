//! The seam: the calls the child makes between clone and execve, as a
//! trait with the real implementation here and a recording double in
//! `recording`.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::ffi::CStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::{open, read};

/// The three capability sets capget/capset move together, as bit masks
/// (bit N is capability N).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// Every call the child (or an exec helper) makes between clone and
/// execve. The real implementation runs them; [`super::RecordingSyscalls`]
/// records them, so the child's whole order is tested without root. None of
/// them may allocate.
pub trait Syscalls {
    // -- process plumbing, ids and namespaces --

    /// Default dispositions and an empty mask for every signal.
    fn reset_signals(&mut self);
    /// PR_SET_PDEATHSIG(SIGKILL).
    fn set_parent_death_kill(&mut self) -> Result<(), Errno>;
    fn getppid(&mut self) -> i32;
    fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno>;
    /// One whole message on the handshake socket (or any fd).
    fn write_all(&mut self, fd: RawFd, buf: &[u8]) -> Result<(), Errno>;
    /// One message and the fds it carries (see `super::recv_with_fds`).
    fn recv_with_fds(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        fds: &mut [RawFd; super::MAX_PASSED_FDS],
    ) -> Result<(usize, usize), Errno>;
    /// setgroups(2) with an empty list.
    fn clear_groups(&mut self) -> Result<(), Errno>;
    fn setresgid(&mut self, gid: u32) -> Result<(), Errno>;
    fn setresuid(&mut self, uid: u32) -> Result<(), Errno>;
    fn unshare(&mut self, flags: i32) -> Result<(), Errno>;
    /// open(O_WRONLY) and one write of `contents` (a /proc file).
    fn write_file(&mut self, path: &CStr, contents: &[u8]) -> Result<(), Errno>;
    /// setns(2) into the namespace file at `path`.
    fn setns_path(&mut self, path: &CStr, nstype: i32) -> Result<(), Errno>;
    /// setns(2) on an fd the parent opened (a pidfd joins several at once).
    fn setns_fd(&mut self, fd: RawFd, nstype: i32) -> Result<(), Errno>;
    fn fchdir(&mut self, fd: RawFd) -> Result<(), Errno>;
    /// `lo` up (SIOCSIFFLAGS).
    fn loopback_up(&mut self) -> Result<(), Errno>;

    // -- confinement --

    /// PR_CAPBSET_DROP.
    fn cap_bound_drop(&mut self, cap: u8) -> Result<(), Errno>;
    /// PR_CAPBSET_READ.
    fn cap_bound_has(&mut self, cap: u8) -> Result<bool, Errno>;
    fn capset(&mut self, sets: CapSets) -> Result<(), Errno>;
    fn capget(&mut self) -> Result<CapSets, Errno>;
    /// PR_CAP_AMBIENT_CLEAR_ALL.
    fn cap_ambient_clear(&mut self) -> Result<(), Errno>;
    /// PR_CAP_AMBIENT_RAISE.
    fn cap_ambient_raise(&mut self, cap: u8) -> Result<(), Errno>;
    /// PR_CAP_AMBIENT_IS_SET.
    fn cap_ambient_has(&mut self, cap: u8) -> Result<bool, Errno>;
    /// PR_SET_NO_NEW_PRIVS.
    fn set_no_new_privs(&mut self) -> Result<(), Errno>;
    /// Soft and hard limit of `resource` set to `value` for this process;
    /// returns what the kernel then holds (soft, hard).
    fn set_rlimit(&mut self, resource: super::Rlimit, value: u64) -> Result<(u64, u64), Errno>;
    /// SECCOMP_SET_MODE_FILTER with a program compiled by the parent.
    fn seccomp_set_filter(&mut self, program: &[seccompiler::sock_filter]) -> Result<(), Errno>;
    /// Every fd from `first` up close-on-exec.
    fn cloexec_from(&mut self, first: u32) -> Result<(), Errno>;
    /// close(2) of one inherited fd.
    fn close(&mut self, fd: RawFd) -> Result<(), Errno>;
    /// execve(2); returns only on failure.
    fn execve(
        &mut self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno;

    // -- building the root --

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

/// prctl(2) with two integer arguments (the rest zero).
fn prctl(option: libc::c_int, arg2: u64, arg3: u64) -> Result<libc::c_int, Errno> {
    // SAFETY: the options used here take integer arguments only.
    Errno::result(unsafe { libc::prctl(option, arg2, arg3, 0u64, 0u64) })
}

/// `struct __user_cap_header_struct`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

impl CapHeader {
    /// _LINUX_CAPABILITY_VERSION_3 (64-bit sets in two words), this thread.
    fn ours() -> CapHeader {
        CapHeader {
            version: 0x2008_0522,
            pid: 0,
        }
    }
}

/// `struct __user_cap_data_struct`: one 32-bit word of each set.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl CapData {
    fn from_sets(s: CapSets) -> [CapData; 2] {
        let word = |v: u64, i: u32| (v >> (32 * i)) as u32;
        [0, 1].map(|i| CapData {
            effective: word(s.effective, i),
            permitted: word(s.permitted, i),
            inheritable: word(s.inheritable, i),
        })
    }

    fn to_sets(d: &[CapData; 2]) -> CapSets {
        let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
        CapSets {
            effective: join(d[0].effective, d[1].effective),
            permitted: join(d[0].permitted, d[1].permitted),
            inheritable: join(d[0].inheritable, d[1].inheritable),
        }
    }
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

    fn reset_signals(&mut self) {
        super::reset_signals()
    }
    fn set_parent_death_kill(&mut self) -> Result<(), Errno> {
        super::set_parent_death_kill()
    }
    fn getppid(&mut self) -> i32 {
        super::getppid()
    }
    fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno> {
        super::dup2(from, to)
    }
    fn write_all(&mut self, fd: RawFd, buf: &[u8]) -> Result<(), Errno> {
        // SAFETY: an fd the caller holds open for the call.
        super::write_all(unsafe { BorrowedFd::borrow_raw(fd) }, buf)
    }
    fn recv_with_fds(
        &mut self,
        fd: RawFd,
        buf: &mut [u8],
        fds: &mut [RawFd; super::MAX_PASSED_FDS],
    ) -> Result<(usize, usize), Errno> {
        // SAFETY: an fd the caller holds open for the call.
        super::recv_with_fds(unsafe { BorrowedFd::borrow_raw(fd) }, buf, fds)
    }
    // The id calls are raw syscalls, never glibc's wrappers: those apply
    // the change to every thread of the process (setxid signals each one
    // and waits for it), and a child forked by a raw clone3 inherits the
    // parent's thread list while having one thread; if another thread of
    // the parent was starting or ending at the clone, the child waited
    // forever (seen with the suite's runners in threads). The kernel calls
    // change only the calling thread, the child's only one.
    fn clear_groups(&mut self) -> Result<(), Errno> {
        // SAFETY: zero-length list, null pointer allowed.
        Errno::result(unsafe {
            libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>())
        })
        .map(drop)
    }
    fn setresgid(&mut self, gid: u32) -> Result<(), Errno> {
        // SAFETY: plain syscall with integer arguments.
        Errno::result(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(drop)
    }
    fn setresuid(&mut self, uid: u32) -> Result<(), Errno> {
        // SAFETY: plain syscall with integer arguments.
        Errno::result(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(drop)
    }
    fn unshare(&mut self, flags: i32) -> Result<(), Errno> {
        super::unshare(flags)
    }
    fn write_file(&mut self, path: &CStr, contents: &[u8]) -> Result<(), Errno> {
        let fd = open(path, libc::O_WRONLY | libc::O_CLOEXEC)?;
        super::write_all(fd.as_fd(), contents)
    }
    fn setns_path(&mut self, path: &CStr, nstype: i32) -> Result<(), Errno> {
        let fd = open(path, libc::O_RDONLY | libc::O_CLOEXEC)?;
        super::setns(fd.as_fd(), nstype)
    }
    fn setns_fd(&mut self, fd: RawFd, nstype: i32) -> Result<(), Errno> {
        // SAFETY: an fd the parent opened before the clone, open for the call.
        super::setns(unsafe { BorrowedFd::borrow_raw(fd) }, nstype)
    }
    fn fchdir(&mut self, fd: RawFd) -> Result<(), Errno> {
        // SAFETY: as above.
        super::fchdir(unsafe { BorrowedFd::borrow_raw(fd) })
    }
    fn loopback_up(&mut self) -> Result<(), Errno> {
        super::loopback_up()
    }
    fn cap_bound_drop(&mut self, cap: u8) -> Result<(), Errno> {
        prctl(libc::PR_CAPBSET_DROP, cap.into(), 0).map(drop)
    }
    fn cap_bound_has(&mut self, cap: u8) -> Result<bool, Errno> {
        prctl(libc::PR_CAPBSET_READ, cap.into(), 0).map(|r| r == 1)
    }
    fn capset(&mut self, sets: CapSets) -> Result<(), Errno> {
        let mut header = CapHeader::ours();
        let data = CapData::from_sets(sets);
        // SAFETY: a v3 header and the two data words v3 wants, both live
        // for the call; the kernel only reads them.
        Errno::result(unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) })
            .map(drop)
    }
    fn capget(&mut self) -> Result<CapSets, Errno> {
        let mut header = CapHeader::ours();
        let mut data = [CapData::default(); 2];
        // SAFETY: a v3 header and room for the two data words the kernel
        // writes.
        Errno::result(unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) })?;
        Ok(CapData::to_sets(&data))
    }
    fn cap_ambient_clear(&mut self) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as u64,
            0,
        )
        .map(drop)
    }
    fn cap_ambient_raise(&mut self, cap: u8) -> Result<(), Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_RAISE as u64,
            cap.into(),
        )
        .map(drop)
    }
    fn cap_ambient_has(&mut self, cap: u8) -> Result<bool, Errno> {
        prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_IS_SET as u64,
            cap.into(),
        )
        .map(|r| r == 1)
    }
    fn set_no_new_privs(&mut self) -> Result<(), Errno> {
        super::set_no_new_privs()
    }
    fn set_rlimit(&mut self, resource: super::Rlimit, value: u64) -> Result<(u64, u64), Errno> {
        // pid 0: this process (prlimit64 is a plain syscall, no allocation).
        super::set_rlimit_of(0, resource, value)
    }
    fn seccomp_set_filter(&mut self, program: &[seccompiler::sock_filter]) -> Result<(), Errno> {
        super::seccomp_set_filter(program)
    }
    fn cloexec_from(&mut self, first: u32) -> Result<(), Errno> {
        super::cloexec_from(first)
    }
    fn close(&mut self, fd: RawFd) -> Result<(), Errno> {
        // SAFETY: closes an fd number the child inherited and never uses
        // again; nothing in the child holds it as an OwnedFd.
        Errno::result(unsafe { libc::close(fd) }).map(drop)
    }
    fn execve(
        &mut self,
        path: &CStr,
        argv: &[*const libc::c_char],
        envp: &[*const libc::c_char],
    ) -> Errno {
        super::execve(path, argv, envp)
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_sets_split_into_the_kernels_two_words_and_back() {
        let sets = CapSets {
            effective: 1 << 21 | 1 << 40,
            permitted: u64::MAX >> 23,
            inheritable: 0,
        };
        let words = CapData::from_sets(sets);
        assert_eq!(words[0].effective, 1 << 21);
        assert_eq!(words[1].effective, 1 << 8);
        assert_eq!(CapData::to_sets(&words), sets);
    }
}

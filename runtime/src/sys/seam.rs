//! The seam: the calls the child makes between clone and execve, as a
//! trait with the real implementation here and a recording double in
//! `recording`.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{open, read};

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

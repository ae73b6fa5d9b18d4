//! A test double of [`Syscalls`]: records every call in order.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::ffi::CStr;
use std::os::fd::{AsRawFd, RawFd};

use super::seam::{CapSets, ProcFdPath, Syscalls};

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
    /// A call of the child's process plumbing or confinement, by its
    /// syscall's name, with its argument shown (fd, flags, cap, bytes).
    Process {
        call: &'static str,
        arg: String,
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
            Call::Process { call, .. } => call,
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
    /// The handshake read gets EOF (the parent died) instead of "go".
    pub parent_gone: bool,
    /// The fds the parent's "go" carries (the cgroup's `tasks` files).
    pub passed_fds: Vec<RawFd>,
    /// The capability state the calls act on, starting as root's.
    pub caps: CapModel,
}

/// Capabilities as the kernel would hold them: a process that starts as
/// root (full bounding, permitted, effective; empty ambient).
#[derive(Debug, Default)]
pub struct CapModel {
    pub bounding_dropped: u64,
    /// `None` until capset: every capability.
    pub sets: Option<CapSets>,
    pub ambient: u64,
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

impl RecordingSyscalls {
    pub fn process(&mut self, call: &'static str, arg: impl ToString) -> Result<(), Errno> {
        self.record(Call::Process {
            call,
            arg: arg.to_string(),
        })
    }

    /// The process-plumbing calls in order, as `name(arg)`.
    pub fn process_calls(&self) -> Vec<String> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::Process { call, arg } => Some(format!("{call}({arg})")),
                _ => None,
            })
            .collect()
    }
}

impl Syscalls for RecordingSyscalls {
    type Fd = FakeFd;

    fn reset_signals(&mut self) {
        let _ = self.process("reset_signals", "");
    }
    fn set_parent_death_kill(&mut self) -> Result<(), Errno> {
        self.process("prctl_pdeathsig", "SIGKILL")
    }
    fn getppid(&mut self) -> i32 {
        let _ = self.process("getppid", "");
        1
    }
    fn dup2(&mut self, from: RawFd, to: RawFd) -> Result<(), Errno> {
        self.process("dup2", format!("{from}, {to}"))
    }
    fn write_all(&mut self, _fd: RawFd, buf: &[u8]) -> Result<(), Errno> {
        self.process("write", String::from_utf8_lossy(&buf[..buf.len().min(1)]))
    }
    fn recv_with_fds(
        &mut self,
        _fd: RawFd,
        buf: &mut [u8],
        fds: &mut [RawFd; super::MAX_PASSED_FDS],
    ) -> Result<(usize, usize), Errno> {
        self.process("recvmsg", "")?;
        if self.parent_gone {
            return Ok((0, 0));
        }
        buf[0] = b'G';
        fds[..self.passed_fds.len()].copy_from_slice(&self.passed_fds);
        Ok((1, self.passed_fds.len()))
    }
    fn clear_groups(&mut self) -> Result<(), Errno> {
        self.process("setgroups", "[]")
    }
    fn setresgid(&mut self, gid: u32) -> Result<(), Errno> {
        self.process("setresgid", gid)
    }
    fn setresuid(&mut self, uid: u32) -> Result<(), Errno> {
        self.process("setresuid", uid)
    }
    fn unshare(&mut self, flags: i32) -> Result<(), Errno> {
        self.process("unshare", format!("{flags:#x}"))
    }
    fn write_file(&mut self, path: &CStr, _contents: &[u8]) -> Result<(), Errno> {
        self.process("write_file", lossy(path))
    }
    fn setns_path(&mut self, path: &CStr, nstype: i32) -> Result<(), Errno> {
        self.process("setns", format!("{}, {nstype:#x}", lossy(path)))
    }
    fn setns_fd(&mut self, fd: RawFd, nstype: i32) -> Result<(), Errno> {
        self.process("setns", format!("fd {fd}, {nstype:#x}"))
    }
    fn fchdir(&mut self, fd: RawFd) -> Result<(), Errno> {
        self.process("fchdir", fd)
    }
    fn loopback_up(&mut self) -> Result<(), Errno> {
        self.process("loopback_up", "lo")
    }
    fn cap_bound_drop(&mut self, cap: u8) -> Result<(), Errno> {
        self.process("capbset_drop", cap)?;
        self.caps.bounding_dropped |= 1 << cap;
        Ok(())
    }
    fn cap_bound_has(&mut self, cap: u8) -> Result<bool, Errno> {
        Ok(self.caps.bounding_dropped & (1 << cap) == 0)
    }
    fn capset(&mut self, sets: CapSets) -> Result<(), Errno> {
        self.process("capset", format!("{:#x}", sets.permitted))?;
        self.caps.sets = Some(sets);
        Ok(())
    }
    fn capget(&mut self) -> Result<CapSets, Errno> {
        Ok(self.caps.sets.unwrap_or(CapSets {
            effective: u64::MAX,
            permitted: u64::MAX,
            inheritable: 0,
        }))
    }
    fn cap_ambient_clear(&mut self) -> Result<(), Errno> {
        self.process("ambient_clear", "")?;
        self.caps.ambient = 0;
        Ok(())
    }
    fn cap_ambient_raise(&mut self, cap: u8) -> Result<(), Errno> {
        self.process("ambient_raise", cap)?;
        self.caps.ambient |= 1 << cap;
        Ok(())
    }
    fn cap_ambient_has(&mut self, cap: u8) -> Result<bool, Errno> {
        Ok(self.caps.ambient & (1 << cap) != 0)
    }
    fn set_no_new_privs(&mut self) -> Result<(), Errno> {
        self.process("no_new_privs", "")
    }
    fn set_rlimit(&mut self, resource: super::Rlimit, value: u64) -> Result<(u64, u64), Errno> {
        self.process("setrlimit", format!("{}={value}", resource.name()))?;
        Ok((value, value))
    }
    fn seccomp_set_filter(&mut self, program: &[seccompiler::sock_filter]) -> Result<(), Errno> {
        self.process("seccomp", program.len())
    }
    fn cloexec_from(&mut self, first: u32) -> Result<(), Errno> {
        self.process("close_range_cloexec", first)
    }
    fn close(&mut self, fd: RawFd) -> Result<(), Errno> {
        self.process("close", fd)
    }
    fn execve(
        &mut self,
        path: &CStr,
        _argv: &[*const libc::c_char],
        _envp: &[*const libc::c_char],
    ) -> Errno {
        match self.process("execve", lossy(path)) {
            Err(e) => e,
            // The double never replaces the process: execve "failed".
            Ok(()) => Errno::ENOEXEC,
        }
    }

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

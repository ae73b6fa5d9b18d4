//! `start/floor-mounts`: the floor plus the mounts `start/full`'s root is
//! made of, done bare: the same tmpfs, device binds, devpts, proc, sysfs,
//! read-only kernel paths, masks, /tmp and pivot_root, with none of the
//! runtime's checks (no resolution inside the root, no read-back), a bind
//! instead of the overlay, and no cgroup, handshake or confinement. No
//! runtime that makes these mounts can start faster on this machine, so its
//! ratio to `start/floor` says how much of the 1.5 × target is left for
//! everything else.
//!
//! The child runs between clone and exec in a fork of a multi-threaded
//! process: every path is a C string made before clone and the calls are
//! plain syscalls (no allocation, no lock).

use crate::spawn::{PreparedExec, SpawnError};
use isocheck_runtime::mounts::{DEV_LINKS, DEV_NODES};
use isocheck_runtime::spec::{DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS};
use isocheck_runtime::sys::{RealSyscalls, Syscalls};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use std::ffi::{CString, NulError};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One step of the bare root, every path absolute (the root's path first).
#[derive(Debug)]
enum Op {
    Mount {
        source: CString,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    /// An empty file bind-mounted over by a host node.
    Node {
        host: CString,
        target: CString,
    },
    Dir(CString),
    Symlink {
        target: CString,
        link: CString,
    },
    /// Bound onto itself, then read-only with its submounts; skipped when
    /// this kernel lacks it.
    ReadOnly(CString),
    /// /dev/null over a file, an empty read-only tmpfs over a directory;
    /// skipped when this kernel lacks it.
    Mask(CString),
}

/// The steps and the exec, all made before the timer starts.
#[derive(Debug)]
pub struct BareRoot {
    root: CString,
    ops: Vec<Op>,
    exec: PreparedExec,
}

fn c(s: &str) -> Result<CString, NulError> {
    CString::new(s)
}

impl BareRoot {
    /// The steps for the rootfs at `root` (which holds /probe and empty
    /// dev, proc, sys, tmp), ending in `/probe args...`.
    pub fn new(root: &Path, probe_in_root: &Path, args: &[&str]) -> Result<Self, SpawnError> {
        let base = root.as_os_str().as_bytes();
        let at = |rel: &str| -> Result<CString, NulError> {
            let mut path = base.to_vec();
            path.extend_from_slice(rel.as_bytes());
            CString::new(path)
        };
        let tmpfs = |target: CString, flags: MsFlags, data: &str| -> Result<Op, NulError> {
            Ok(Op::Mount {
                source: c("tmpfs")?,
                target,
                fstype: Some(c("tmpfs")?),
                flags,
                data: Some(c(data)?),
            })
        };
        let hidden = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let mut ops = vec![
            Op::Mount {
                source: CString::new(base)?,
                target: CString::new(base)?,
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
            },
            tmpfs(
                at("/dev")?,
                hidden | MsFlags::MS_STRICTATIME,
                "mode=755,size=65536k",
            )?,
        ];
        for node in DEV_NODES {
            let node = node.to_string_lossy();
            ops.push(Op::Node {
                host: c(&format!("/dev/{node}"))?,
                target: at(&format!("/dev/{node}"))?,
            });
        }
        ops.push(Op::Dir(at("/dev/pts")?));
        ops.push(Op::Mount {
            source: c("devpts")?,
            target: at("/dev/pts")?,
            fstype: Some(c("devpts")?),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            data: Some(c("newinstance,ptmxmode=0666,mode=620")?),
        });
        ops.push(Op::Dir(at("/dev/shm")?));
        ops.push(tmpfs(at("/dev/shm")?, hidden, "mode=1777,size=65536k")?);
        for (target, name) in DEV_LINKS {
            ops.push(Op::Symlink {
                target: target.to_owned(),
                link: at(&format!("/dev/{}", name.to_string_lossy()))?,
            });
        }
        ops.push(Op::Mount {
            source: c("proc")?,
            target: at("/proc")?,
            fstype: Some(c("proc")?),
            flags: hidden,
            data: None,
        });
        ops.push(Op::ReadOnly(at("/proc/sys")?));
        ops.push(Op::Mount {
            source: c("sysfs")?,
            target: at("/sys")?,
            fstype: Some(c("sysfs")?),
            flags: hidden | MsFlags::MS_RDONLY,
            data: None,
        });
        for path in DEFAULT_READONLY_PATHS {
            ops.push(Op::ReadOnly(at(path)?));
        }
        for path in DEFAULT_MASKED_PATHS {
            ops.push(Op::Mask(at(path)?));
        }
        let tmp_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        ops.push(tmpfs(at("/tmp")?, tmp_flags, "mode=1777")?);
        Ok(BareRoot {
            root: CString::new(base)?,
            ops,
            exec: PreparedExec::new(probe_in_root, args)?,
        })
    }

    /// clone3(flags) + the bare root + exec + wait; Ok only when the probe
    /// exited 0 (a failed step exits 126).
    pub fn clone_build_exec_wait(&self, flags: u64) -> Result<(), SpawnError> {
        self.exec
            .clone_run_exec_wait(flags, || self.build().is_ok())
    }

    /// Runs in the child (see the module's note).
    fn build(&self) -> Result<(), Errno> {
        let mut sys = RealSyscalls;
        let slave = MsFlags::MS_REC | MsFlags::MS_SLAVE;
        sys.mount(None, c"/", None, slave, None)?;
        for op in &self.ops {
            run_op(&mut sys, op)?;
        }
        sys.chdir(&self.root)?;
        sys.pivot_root(c".", c".")?;
        sys.umount2(c".", MntFlags::MNT_DETACH)?;
        sys.chdir(c"/")
    }
}

fn run_op(sys: &mut RealSyscalls, op: &Op) -> Result<(), Errno> {
    match op {
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => sys.mount(
            Some(source),
            target,
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Op::Node { host, target } => {
            let flags = OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
            drop(nix::fcntl::open(
                target.as_c_str(),
                flags,
                Mode::from_bits_truncate(0o666),
            )?);
            sys.mount(Some(host), target, None, MsFlags::MS_BIND, None)
        }
        Op::Dir(path) => nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(0o755)),
        Op::Symlink { target, link } => {
            nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str())
        }
        Op::ReadOnly(path) => {
            let bind = MsFlags::MS_BIND | MsFlags::MS_REC;
            match sys.mount(Some(path), path, None, bind, None) {
                Err(Errno::ENOENT) => Ok(()),
                Err(e) => Err(e),
                Ok(()) => sys.mount_setattr_readonly_recursive(path),
            }
        }
        Op::Mask(path) => match sys.mount(Some(c"/dev/null"), path, None, MsFlags::MS_BIND, None) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::ENOTDIR) => sys.mount(
                Some(c"tmpfs"),
                path,
                Some(c"tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some(c"mode=555,size=4k,nr_inodes=1"),
            ),
            Err(e) => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_under_the_root_and_the_lists_are_the_runtimes() {
        let bare = BareRoot::new(Path::new("/r"), Path::new("/probe"), &["noop"]).unwrap();
        let targets: Vec<&CString> = bare
            .ops
            .iter()
            .map(|op| match op {
                Op::Mount { target, .. } | Op::Node { target, .. } => target,
                Op::Dir(p) | Op::ReadOnly(p) | Op::Mask(p) => p,
                Op::Symlink { link, .. } => link,
            })
            .collect();
        assert!(targets.iter().all(|t| t.to_bytes().starts_with(b"/r")));
        let masks = bare
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Mask(_)))
            .count();
        assert_eq!(masks, DEFAULT_MASKED_PATHS.len());
        let read_only = bare
            .ops
            .iter()
            .filter(|op| matches!(op, Op::ReadOnly(_)))
            .count();
        assert_eq!(read_only, DEFAULT_READONLY_PATHS.len() + 1, "and /proc/sys");
    }
}

//! The kernel's floor: clone3 with namespace flags, exec the probe, wait.
//! Nothing of the runtime is involved, so `start/floor` and `ns/*` measure
//! what the kernel charges for a process in new namespaces.
//!
//! clone3 without CLONE_VM and without a stack behaves like fork: the child
//! runs on a copy of the parent's stack. Between clone and exec it calls only
//! async-signal-safe functions (dup2, execve, _exit), because the bench
//! process has other threads (criterion's) whose locks the child inherits.

use isocheck_runtime::sys::{self, Forked};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::ffi::{CString, NulError};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// One namespace a container gets, with the name the bench ids use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Namespace {
    pub name: &'static str,
    pub clone_flag: u64,
}

/// The namespaces of a full container, in the order of the `ns/*` benches.
pub const CONTAINER_NAMESPACES: [Namespace; 6] = [
    Namespace {
        name: "pid",
        clone_flag: libc::CLONE_NEWPID as u64,
    },
    Namespace {
        name: "mount",
        clone_flag: libc::CLONE_NEWNS as u64,
    },
    Namespace {
        name: "uts",
        clone_flag: libc::CLONE_NEWUTS as u64,
    },
    Namespace {
        name: "ipc",
        clone_flag: libc::CLONE_NEWIPC as u64,
    },
    Namespace {
        name: "net",
        clone_flag: libc::CLONE_NEWNET as u64,
    },
    Namespace {
        name: "cgroup",
        clone_flag: libc::CLONE_NEWCGROUP as u64,
    },
];

/// clone3 flags for every namespace of a full container.
pub fn all_container_flags() -> u64 {
    CONTAINER_NAMESPACES
        .iter()
        .fold(0, |acc, ns| acc | ns.clone_flag)
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("argument {0:?} contains a NUL byte")]
    Nul(#[from] NulError),
    #[error("opening /dev/null for the child's stdout: {0}")]
    DevNull(std::io::Error),
    #[error("clone3 with flags {flags:#x}: {source}")]
    Clone3 { flags: u64, source: std::io::Error },
    #[error("waiting for child {pid}: {source}")]
    Wait { pid: i32, source: nix::Error },
    #[error("child {pid} (flags {flags:#x}) ended with {status:?}; exit 127 means execve failed, 126 a step before it")]
    ChildFailed {
        pid: i32,
        flags: u64,
        status: WaitStatus,
    },
}

/// Everything the child needs, allocated before clone so the child allocates
/// nothing.
#[derive(Debug)]
pub struct PreparedExec {
    path: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    dev_null: OwnedFd,
}

impl PreparedExec {
    /// Prepare `path args...` with an empty environment and stdout to
    /// /dev/null (the probe's JSON line would garble criterion's output).
    pub fn new(path: &Path, args: &[&str]) -> Result<Self, SpawnError> {
        let path = CString::new(path.as_os_str().as_bytes())?;
        let mut argv = vec![path.clone()];
        for arg in args {
            argv.push(CString::new(*arg)?);
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let dev_null = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .map_err(SpawnError::DevNull)?
            .into();
        Ok(PreparedExec {
            path,
            _argv: argv,
            argv_ptrs,
            envp_ptrs: vec![std::ptr::null()],
            dev_null,
        })
    }

    /// clone3(flags) + execve + waitpid; Ok only when the child exited 0.
    pub fn clone_exec_wait(&self, flags: u64) -> Result<(), SpawnError> {
        self.clone_run_exec_wait(flags, || true)
    }

    /// The same with `before_exec` run in the child first; when it returns
    /// false the child exits 126. It must keep to what the child may do: no
    /// allocation, no lock another thread may hold.
    pub fn clone_run_exec_wait<F: Fn() -> bool>(
        &self,
        flags: u64,
        before_exec: F,
    ) -> Result<(), SpawnError> {
        // SAFETY: the child branch only calls async-signal-safe functions on
        // memory prepared before clone (NUL-terminated strings and NULL-ended
        // pointer arrays), and `before_exec` under the contract above, then
        // execs or _exits; it never returns.
        match unsafe { sys::clone3(flags, false) } {
            Ok(Forked::Child) => {
                if !before_exec() {
                    sys::exit_now(126)
                }
                let _ = sys::dup2(self.dev_null.as_raw_fd(), 1);
                sys::execve(&self.path, &self.argv_ptrs, &self.envp_ptrs);
                sys::exit_now(127)
            }
            Ok(Forked::Parent { pid, .. }) => wait_success(pid, flags),
            Err(e) => Err(SpawnError::Clone3 {
                flags,
                source: e.into(),
            }),
        }
    }
}

/// waitpid(pid); Ok only when it exited 0.
pub fn wait_success(pid: i32, flags: u64) -> Result<(), SpawnError> {
    let status =
        waitpid(Pid::from_raw(pid), None).map_err(|source| SpawnError::Wait { pid, source })?;
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        status => Err(SpawnError::ChildFailed { pid, flags, status }),
    }
}

/// A child that only sleeps in pause(2), for timing what is done to a
/// process from outside (moving it into a cgroup). Killed and reaped on drop.
#[derive(Debug)]
pub struct IdleChild {
    pid: i32,
}

impl IdleChild {
    pub fn start() -> Result<IdleChild, SpawnError> {
        // SAFETY: the child calls only pause and _exit (async-signal-safe)
        // and never returns.
        let ret = match unsafe { sys::clone3(0, false) } {
            Ok(Forked::Child) => loop {
                // SAFETY: pause takes no arguments; we are the child.
                unsafe { libc::pause() };
            },
            Ok(Forked::Parent { pid, .. }) => i64::from(pid),
            Err(_) => -1,
        };
        if ret < 0 {
            return Err(SpawnError::Clone3 {
                flags: 0,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(IdleChild { pid: ret as i32 })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }
}

impl Drop for IdleChild {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = waitpid(pid, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_flags_cover_the_six_namespaces_once_each() {
        let flags = all_container_flags();
        assert_eq!(flags.count_ones(), 6);
        for ns in CONTAINER_NAMESPACES {
            assert_eq!(ns.clone_flag.count_ones(), 1, "{}", ns.name);
            assert_ne!(flags & ns.clone_flag, 0, "{}", ns.name);
        }
    }

    #[test]
    fn idle_child_stays_until_dropped() {
        let child = IdleChild::start().expect("idle child");
        let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.pid()));
        assert!(proc_dir.exists());
        drop(child);
        assert!(!proc_dir.exists(), "reaped on drop");
    }

    #[test]
    fn plain_fork_exec_of_true_succeeds_and_false_is_reported() {
        let ok = PreparedExec::new(Path::new("/bin/true"), &[]).expect("prepare true");
        ok.clone_exec_wait(0).expect("fork+exec /bin/true");
        let bad = PreparedExec::new(Path::new("/bin/false"), &[]).expect("prepare false");
        assert!(matches!(
            bad.clone_exec_wait(0),
            Err(SpawnError::ChildFailed { .. })
        ));
    }
}

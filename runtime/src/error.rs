//! The runtime's top-level error, and the allocation-free failure record the
//! child sends back over the handshake socket.

use nix::errno::Errno;
use std::fmt;
use std::path::PathBuf;

use crate::rootfs::RootfsError;
use crate::spec::SpecError;

/// Everything `Container` can fail with. Each variant names the step.
///
/// A wrapped error is printed inside this one's message and so is *not*
/// also its `source()`: a printer of the whole chain (anyhow's `{:#}`)
/// would print it twice ("... in the child: execve /x: ENOENT: execve /x:
/// ENOENT"). Hence the `From` impls below instead of `#[from]`, and the
/// OS error's field is not named `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid spec: {0}")]
    Spec(SpecError),
    #[error("preparing the rootfs: {0}")]
    Rootfs(RootfsError),
    #[error("container setup failed in the child: {0}")]
    Child(ChildError),
    #[error("{step}{}: {error}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Os {
        step: &'static str,
        path: Option<PathBuf>,
        error: std::io::Error,
    },
    #[error("{field} {value} on pid {pid}: {reason}")]
    ProcessLimit {
        field: &'static str,
        value: String,
        pid: i32,
        reason: String,
    },
    #[error("parent_setup hook #{index} failed: {message}")]
    ParentSetup { index: usize, message: String },
    #[error("handshake with the child: {0}")]
    Handshake(String),
    #[error("{what}: {value:?} contains a NUL byte")]
    Nul { what: &'static str, value: String },
    #[error("capabilities: {0}")]
    Caps(crate::caps::CapsError),
    #[error("{0}")]
    Seccomp(crate::seccomp::SeccompError),
    #[error("cgroup: {0}")]
    Cgroup(crate::cgroups::CgroupError),
    #[error("network: {0}")]
    Network(crate::network::NetworkError),
}

/// `From` for each wrapped error (see [`Error`] for why not `#[from]`).
macro_rules! wraps {
    ($($variant:ident($inner:ty)),* $(,)?) => {
        $(impl From<$inner> for Error {
            fn from(e: $inner) -> Error {
                Error::$variant(e)
            }
        })*
    };
}

wraps!(
    Spec(SpecError),
    Rootfs(RootfsError),
    Child(ChildError),
    Caps(crate::caps::CapsError),
    Seccomp(crate::seccomp::SeccompError),
    Cgroup(crate::cgroups::CgroupError),
    Network(crate::network::NetworkError),
);

impl Error {
    pub(crate) fn os(step: &'static str, source: impl Into<std::io::Error>) -> Error {
        Error::Os {
            step,
            path: None,
            error: source.into(),
        }
    }

    pub(crate) fn os_path(
        step: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<std::io::Error>,
    ) -> Error {
        Error::Os {
            step,
            path: Some(path.into()),
            error: source.into(),
        }
    }
}

/// The steps the child (or an exec helper) goes through, in running order.
/// Sent over the wire as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Step {
    Stdio = 1,
    ParentDeathSignal,
    WaitForParent,
    SetGroups,
    SetGid,
    SetUid,
    UnshareCgroup,
    UnshareTime,
    WriteTimeOffsets,
    EnterTimeNamespace,
    SetHostname,
    LoopbackUp,
    MakeRootSlave,
    MountOverlay,
    BindImage,
    CreateMountTarget,
    BindMount,
    RemountReadonly,
    VerifyReadonly,
    ReadMountinfo,
    MountDevTmpfs,
    BindDevNode,
    MountDevPts,
    MountDevShm,
    DevSymlink,
    MountProc,
    ProcSysReadonly,
    MaskProcFile,
    MountSys,
    BindHostSys,
    MountTmp,
    BindHostCgroupfs,
    PivotRoot,
    DetachOldRoot,
    RemoveOldRoot,
    Chroot,
    Chdir,
    DropBoundingCaps,
    SetCaps,
    SetAmbientCaps,
    VerifyCaps,
    NoNewPrivs,
    CloseFds,
    Execve,
    JoinNamespaces,
    ForkIntoPidNamespace,
    PathTooLong,
    JoinCgroup,
    OpenNewRoot,
    Seccomp,
    ReadonlyPath,
    LockMounts,
}

impl Step {
    const ALL: [Step; 52] = [
        Step::Stdio,
        Step::ParentDeathSignal,
        Step::WaitForParent,
        Step::SetGroups,
        Step::SetGid,
        Step::SetUid,
        Step::UnshareCgroup,
        Step::UnshareTime,
        Step::WriteTimeOffsets,
        Step::EnterTimeNamespace,
        Step::SetHostname,
        Step::LoopbackUp,
        Step::MakeRootSlave,
        Step::MountOverlay,
        Step::BindImage,
        Step::CreateMountTarget,
        Step::BindMount,
        Step::RemountReadonly,
        Step::VerifyReadonly,
        Step::ReadMountinfo,
        Step::MountDevTmpfs,
        Step::BindDevNode,
        Step::MountDevPts,
        Step::MountDevShm,
        Step::DevSymlink,
        Step::MountProc,
        Step::ProcSysReadonly,
        Step::MaskProcFile,
        Step::MountSys,
        Step::BindHostSys,
        Step::MountTmp,
        Step::BindHostCgroupfs,
        Step::PivotRoot,
        Step::DetachOldRoot,
        Step::RemoveOldRoot,
        Step::Chroot,
        Step::Chdir,
        Step::DropBoundingCaps,
        Step::SetCaps,
        Step::SetAmbientCaps,
        Step::VerifyCaps,
        Step::NoNewPrivs,
        Step::CloseFds,
        Step::Execve,
        Step::JoinNamespaces,
        Step::ForkIntoPidNamespace,
        Step::PathTooLong,
        Step::JoinCgroup,
        Step::OpenNewRoot,
        Step::Seccomp,
        Step::ReadonlyPath,
        Step::LockMounts,
    ];

    pub fn from_u8(b: u8) -> Option<Step> {
        Step::ALL.iter().copied().find(|s| *s as u8 == b)
    }

    /// The step's name as it appears in messages (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stdio => "stdio",
            Step::ParentDeathSignal => "parent_death_signal",
            Step::WaitForParent => "wait_for_parent",
            Step::SetGroups => "setgroups",
            Step::SetGid => "setresgid",
            Step::SetUid => "setresuid",
            Step::UnshareCgroup => "unshare_cgroup",
            Step::UnshareTime => "unshare_time",
            Step::WriteTimeOffsets => "write_time_offsets",
            Step::EnterTimeNamespace => "enter_time_namespace",
            Step::SetHostname => "sethostname",
            Step::LoopbackUp => "loopback_up",
            Step::MakeRootSlave => "make_root_slave",
            Step::MountOverlay => "mount_overlay",
            Step::BindImage => "bind_image",
            Step::CreateMountTarget => "create_mount_target",
            Step::BindMount => "bind_mount",
            Step::RemountReadonly => "remount_readonly",
            Step::VerifyReadonly => "verify_readonly",
            Step::ReadMountinfo => "read_mountinfo",
            Step::MountDevTmpfs => "mount_dev_tmpfs",
            Step::BindDevNode => "bind_dev_node",
            Step::MountDevPts => "mount_devpts",
            Step::MountDevShm => "mount_dev_shm",
            Step::DevSymlink => "dev_symlink",
            Step::MountProc => "mount_proc",
            Step::ProcSysReadonly => "proc_sys_readonly",
            Step::MaskProcFile => "mask_proc_file",
            Step::MountSys => "mount_sys",
            Step::BindHostSys => "bind_host_sys",
            Step::MountTmp => "mount_tmp",
            Step::BindHostCgroupfs => "bind_host_cgroupfs",
            Step::PivotRoot => "pivot_root",
            Step::DetachOldRoot => "detach_old_root",
            Step::RemoveOldRoot => "remove_old_root",
            Step::Chroot => "chroot",
            Step::Chdir => "chdir",
            Step::DropBoundingCaps => "drop_bounding_caps",
            Step::SetCaps => "set_caps",
            Step::SetAmbientCaps => "set_ambient_caps",
            Step::VerifyCaps => "verify_caps",
            Step::NoNewPrivs => "no_new_privs",
            Step::CloseFds => "close_fds",
            Step::Execve => "execve",
            Step::JoinNamespaces => "join_namespaces",
            Step::ForkIntoPidNamespace => "fork_into_pid_namespace",
            Step::PathTooLong => "path_too_long",
            Step::JoinCgroup => "join_cgroup",
            Step::OpenNewRoot => "open_new_root",
            Step::Seccomp => "seccomp",
            Step::ReadonlyPath => "readonly_path",
            Step::LockMounts => "lock_mounts",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest path a failure carries (longer ones are cut).
pub const FAILURE_PATH_MAX: usize = 256;
/// Size of a failure on the wire: step, errno, path length, path.
pub const FAILURE_WIRE_LEN: usize = 1 + 4 + 2 + FAILURE_PATH_MAX;

/// A failed step in the child: fixed size and `Copy`, so building one needs
/// no allocation (the child must not allocate freely; see `process`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StepFailure {
    pub step: Step,
    pub errno: i32,
    path: [u8; FAILURE_PATH_MAX],
    path_len: u16,
}

impl StepFailure {
    pub fn new(step: Step, errno: Errno, path: &[u8]) -> StepFailure {
        let mut buf = [0u8; FAILURE_PATH_MAX];
        let n = path.len().min(FAILURE_PATH_MAX);
        buf[..n].copy_from_slice(&path[..n]);
        StepFailure {
            step,
            errno: errno as i32,
            path: buf,
            path_len: n as u16,
        }
    }

    pub fn path(&self) -> &[u8] {
        &self.path[..self.path_len as usize]
    }

    pub fn encode(&self) -> [u8; FAILURE_WIRE_LEN] {
        let mut out = [0u8; FAILURE_WIRE_LEN];
        out[0] = self.step as u8;
        out[1..5].copy_from_slice(&self.errno.to_le_bytes());
        out[5..7].copy_from_slice(&self.path_len.to_le_bytes());
        out[7..].copy_from_slice(&self.path);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<StepFailure> {
        if bytes.len() != FAILURE_WIRE_LEN {
            return None;
        }
        let step = Step::from_u8(bytes[0])?;
        let errno = i32::from_le_bytes(bytes[1..5].try_into().ok()?);
        let path_len = u16::from_le_bytes(bytes[5..7].try_into().ok()?);
        if path_len as usize > FAILURE_PATH_MAX {
            return None;
        }
        let mut path = [0u8; FAILURE_PATH_MAX];
        path.copy_from_slice(&bytes[7..]);
        Some(StepFailure {
            step,
            errno,
            path,
            path_len,
        })
    }
}

impl fmt::Debug for StepFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepFailure")
            .field("step", &self.step)
            .field("errno", &Errno::from_raw(self.errno))
            .field("path", &String::from_utf8_lossy(self.path()))
            .finish()
    }
}

/// A step that failed in the child, as the parent reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{step} {path}: {} ({errno:?})", errno.desc())]
pub struct ChildError {
    pub step: Step,
    pub errno: Errno,
    pub path: String,
}

impl From<StepFailure> for ChildError {
    fn from(f: StepFailure) -> ChildError {
        ChildError {
            step: f.step,
            errno: Errno::from_raw(f.errno),
            path: String::from_utf8_lossy(f.path()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_byte() {
        for s in Step::ALL {
            assert_eq!(Step::from_u8(s as u8), Some(s));
        }
        assert_eq!(Step::from_u8(0), None);
    }

    #[test]
    fn failure_round_trips_and_names_step_path_and_errno() {
        let f = StepFailure::new(Step::Execve, Errno::ENOENT, b"/bin/nope");
        let back = StepFailure::decode(&f.encode()).expect("decodes");
        assert_eq!(back, f);
        let msg = ChildError::from(back).to_string();
        assert_eq!(msg, "execve /bin/nope: No such file or directory (ENOENT)");
    }

    /// The message and every source below it, as anyhow's `{:#}` prints them.
    fn chain(err: &dyn std::error::Error) -> String {
        let mut line = err.to_string();
        let mut next = err.source();
        while let Some(e) = next {
            line.push_str(&format!(": {e}"));
            next = e.source();
        }
        line
    }

    #[test]
    fn a_child_failure_names_step_path_and_errno_once() {
        let err = Error::from(ChildError::from(StepFailure::new(
            Step::VerifyReadonly,
            Errno::ENOENT,
            b"/data",
        )));
        let want = "container setup failed in the child: verify_readonly /data: No such file or directory (ENOENT)";
        assert_eq!(err.to_string(), want);
        assert_eq!(chain(&err), want);
        let os = Error::os_path("open", "/x", Errno::EACCES);
        assert_eq!(chain(&os), "open /x: Permission denied (os error 13)");
    }

    #[test]
    fn long_paths_are_cut_not_refused() {
        let long = vec![b'a'; 1000];
        let f = StepFailure::new(Step::BindMount, Errno::EPERM, &long);
        assert_eq!(f.path().len(), FAILURE_PATH_MAX);
    }
}

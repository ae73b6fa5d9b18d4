//! The child's wire types: the steps it goes through and the fixed-size,
//! allocation-free record of the one that failed. A leaf: everything that
//! runs in the child reports through these, and the parent turns them into
//! [`crate::error::Error`].

use nix::errno::Errno;
use std::fmt;

/// The steps the child (or an exec helper) goes through, in running order.
/// Sent over the wire as one byte.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    strum::EnumIter,
    strum::FromRepr,
    strum::IntoStaticStr,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
#[repr(u8)]
pub enum Step {
    Stdio = 1,
    ParentDeathSignal,
    WaitForParent,
    #[strum(serialize = "setgroups")]
    SetGroups,
    #[strum(serialize = "setresgid")]
    SetGid,
    #[strum(serialize = "setresuid")]
    SetUid,
    UnshareCgroup,
    UnshareTime,
    WriteTimeOffsets,
    EnterTimeNamespace,
    #[strum(serialize = "sethostname")]
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
    #[strum(serialize = "mount_devpts")]
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
    #[strum(serialize = "setrlimit")]
    SetRlimit,
}

impl Step {
    pub fn from_u8(b: u8) -> Option<Step> {
        Step::from_repr(b)
    }

    /// The step's name as it appears in messages (snake_case).
    pub fn as_str(self) -> &'static str {
        self.into()
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
    use strum::IntoEnumIterator;

    #[test]
    fn every_step_round_trips_through_its_byte() {
        for s in Step::iter() {
            assert_eq!(Step::from_u8(s as u8), Some(s));
        }
        assert_eq!(Step::from_u8(0), None);
    }

    #[test]
    fn long_paths_are_cut_not_refused() {
        let long = vec![b'a'; 1000];
        let f = StepFailure::new(Step::BindMount, Errno::EPERM, &long);
        assert_eq!(f.path().len(), FAILURE_PATH_MAX);
    }

    #[test]
    fn failure_round_trips_and_names_step_path_and_errno() {
        let f = StepFailure::new(Step::Execve, Errno::ENOENT, b"/bin/nope");
        let back = StepFailure::decode(&f.encode()).expect("decodes");
        assert_eq!(back, f);
        let msg = ChildError::from(back).to_string();
        assert_eq!(msg, "execve /bin/nope: No such file or directory (ENOENT)");
    }

    #[test]
    fn step_names_are_the_ones_messages_used() {
        assert_eq!(Step::SetGid.as_str(), "setresgid");
        assert_eq!(Step::MountDevPts.to_string(), "mount_devpts");
        assert_eq!(
            Step::ForkIntoPidNamespace.as_str(),
            "fork_into_pid_namespace"
        );
        assert_eq!(Step::Stdio as u8, 1);
    }
}

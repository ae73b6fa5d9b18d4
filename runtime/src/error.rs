//! The runtime's top-level error: it only aggregates the errors of the
//! modules below (the child's wire types live in [`crate::step`]).

use std::path::PathBuf;

use crate::rootfs::RootfsError;
use crate::spec::SpecError;
pub use crate::step::{ChildError, Step, StepFailure};

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

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

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
}

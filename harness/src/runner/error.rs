//! Why a half stopped before its expectations could be checked. The text
//! becomes the observation's `error` and the half's failure, so each
//! variant names the step (and the path or value) it failed on.

use crate::fixtures::FixtureError;
use crate::measure::MeasureError;
use crate::nettestbed::TestbedError;
use isocheck_runtime::cgroups::CgroupError;
use isocheck_runtime::network::NetworkError;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// `isocheck run` was asked to stop.
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("{step}: {source}")]
    Io {
        step: String,
        source: std::io::Error,
    },
    #[error("{step}: {source}")]
    Sys { step: String, source: nix::Error },
    #[error("{step}: {source}")]
    Container {
        step: String,
        source: isocheck_runtime::Error,
    },
    #[error("{step}: {source}")]
    Cgroup {
        step: &'static str,
        source: CgroupError,
    },
    #[error("the probe never said ready; it printed: {0:?}")]
    NeverReady(String),
    #[error("the probe printed no observation; it printed: {0:?}")]
    NoObservation(String),
    /// The scenario file asks for an interaction without what it needs
    /// (the loader checks most of this; the runner does not guess).
    #[error("interaction {interaction} needs {what}")]
    Needs {
        interaction: &'static str,
        what: &'static str,
    },
    #[error("read PID 1's namespaces (/proc/{pid}/ns): only {inodes:?}")]
    Namespaces {
        pid: i32,
        inodes: BTreeMap<String, u64>,
    },
    /// Something the half relies on is not there.
    #[error("{0}")]
    Missing(&'static str),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// The scenario's container spec could not be built (`proof::build_spec`
    /// words its errors itself).
    #[error("{0}")]
    Spec(String),
    /// The OCI runtime refused the half's config (its own words): the
    /// scenario is unsupported with that runtime, never a pass or a fail.
    #[error("{0}")]
    Refused(String),
    /// The OCI runtime's half failed for another reason.
    #[error("{0}")]
    Oci(String),
}

/// Builders for the step-naming variants, for `map_err`.
impl ObserveError {
    pub fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> ObserveError {
        move |source| ObserveError::Io {
            step: step.into(),
            source,
        }
    }

    pub fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> ObserveError {
        move |source| ObserveError::Sys {
            step: step.into(),
            source,
        }
    }

    pub fn container(
        step: impl Into<String>,
    ) -> impl FnOnce(isocheck_runtime::Error) -> ObserveError {
        move |source| ObserveError::Container {
            step: step.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts the String errors had, which reports and people rely on.
    #[test]
    fn each_error_names_its_step_as_before() {
        let needs = ObserveError::Needs {
            interaction: "exec",
            what: "a companion probe",
        };
        assert_eq!(
            needs.to_string(),
            "interaction exec needs a companion probe"
        );
        let io = ObserveError::io("copy the image")(std::io::Error::from_raw_os_error(2));
        assert_eq!(
            io.to_string(),
            "copy the image: No such file or directory (os error 2)"
        );
        let sys = ObserveError::sys("stat the stand-in's /")(nix::Error::EACCES);
        assert_eq!(
            sys.to_string(),
            "stat the stand-in's /: EACCES: Permission denied"
        );
        assert_eq!(
            ObserveError::NeverReady("oops".into()).to_string(),
            "the probe never said ready; it printed: \"oops\""
        );
        assert_eq!(ObserveError::Interrupted.to_string(), "interrupted");
    }
}

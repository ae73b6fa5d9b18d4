//! What the harness reads on the stand-in host's side of a half: its
//! clocks and mount table, where it puts its marker mount, and the
//! container's cgroup counters.

use super::error::ObserveError;
use crate::fixtures::RoBindSource;
use crate::scenario::Interaction;
use isocheck_runtime::Container;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// CLOCK_MONOTONIC and CLOCK_BOOTTIME of the stand-in host, in seconds.
pub(super) fn host_clocks() -> Result<(f64, f64), ObserveError> {
    use nix::time::{clock_gettime, ClockId};
    let secs = |id| {
        clock_gettime(id)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
            .map_err(ObserveError::sys(format!("clock_gettime({id:?})")))
    };
    Ok((
        secs(ClockId::CLOCK_MONOTONIC)?,
        secs(ClockId::CLOCK_BOOTTIME)?,
    ))
}

/// The stand-in's own mount table; a read that fails fails the check.
fn own_mountinfo() -> Result<Vec<u8>, ObserveError> {
    std::fs::read("/proc/self/mountinfo")
        .map_err(ObserveError::io("read the stand-in's /proc/self/mountinfo"))
}

/// Whether a mount point of the stand-in's contains `name`.
pub(super) fn own_mounts_contain(name: &str) -> Result<bool, ObserveError> {
    let info = own_mountinfo()?;
    let all = isocheck_runtime::mounts::mount_points_under(&info, Path::new("/"));
    if all.is_empty() {
        return Err(ObserveError::Missing(
            "the stand-in's /proc/self/mountinfo lists no mount",
        ));
    }
    Ok(all.iter().any(|p| p.to_string_lossy().contains(name)))
}

/// The stand-in's mount points at or below `dir`.
pub(super) fn own_mounts_under(dir: &Path) -> Result<Vec<std::ffi::CString>, ObserveError> {
    Ok(isocheck_runtime::mounts::mount_points_under(
        &own_mountinfo()?,
        dir,
    ))
}

/// Where the harness mounts its marker tmpfs: in the run's directory
/// (mount-leak), or under the bind source the container has (one-way
/// propagation into the container).
pub(super) fn host_marker_dir(
    interaction: Interaction,
    rundir: &Path,
    robind: Option<&RoBindSource>,
    token: &str,
) -> Result<PathBuf, ObserveError> {
    let parent = match interaction {
        Interaction::MountUnderBindSource => {
            robind
                .map(|r| r.path.as_path())
                .ok_or(ObserveError::Needs {
                    interaction: "mount-under-bind-source",
                    what: "fixture ro-bind-source",
                })?
        }
        _ => rundir,
    };
    Ok(parent.join(format!("hostmark-{token}")))
}

/// The container's cgroup counters as the observation's `cgroup` object,
/// or `{"error": why}` when they cannot be read: every expectation on a
/// counter then fails, naming the reason (never a default of zero).
pub(super) fn cgroup_stats(container: &Container) -> Value {
    match container.cgroup().map(|c| c.stats()) {
        Some(Ok(stats)) => json!(stats),
        Some(Err(e)) => json!({ "error": format!("read the cgroup's counters: {e}") }),
        None => json!({ "error": "the container has no cgroup" }),
    }
}

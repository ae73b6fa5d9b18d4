//! The runtime's start-up stages that run in the container's child, timed
//! alone (see `stage`): building the root (`rootfs/setup`) and dropping
//! capabilities (`caps/drop`).

use crate::spawn::all_container_flags;
use crate::stage::{time_in_child, StageError};
use isocheck_runtime::caps::CapPlan;
use isocheck_runtime::mounts::{build_root, NulInPath, RootPlan};
use isocheck_runtime::rootfs::{prepare, RootfsError};
use isocheck_runtime::sys::RealSyscalls;
use isocheck_runtime::ContainerSpec;
use std::time::{Duration, Instant};

/// Size of the mountinfo scratch buffer the runtime hands its child.
const MOUNTINFO_SCRATCH: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StagesError {
    #[error("preparing the rootfs: {0}")]
    Prepare(#[from] RootfsError),
    #[error("planning the root: {0}")]
    Plan(#[from] NulInPath),
    #[error(transparent)]
    Stage(#[from] StageError),
}

/// `rootfs/setup`: the parent's part (temp dir with overlay upper/work, the
/// root plan, the scratch buffer) plus the child's part (rslave /, overlay,
/// /dev, /proc, /sys, /tmp, pivot_root, detach the old root) in a child
/// with the six namespaces. Clone, exit and the temp dir's removal are not
/// counted.
pub fn rootfs_setup_once(
    spec: &ContainerSpec,
    run_id: &str,
    name: &str,
) -> Result<Duration, StagesError> {
    let start = Instant::now();
    let prepared = prepare(spec, run_id, name, None)?;
    let plan = RootPlan::new(spec, &prepared.new_root, prepared.image.clone())?;
    let mut scratch = vec![0u8; MOUNTINFO_SCRATCH];
    let in_parent = start.elapsed();
    let in_child = time_in_child(all_container_flags(), || {
        build_root(&mut RealSyscalls, &plan, &mut scratch).is_ok()
    })?;
    // The overlay went with the child's mount namespace; now the temp dir.
    drop(prepared);
    Ok(in_parent + in_child)
}

/// `caps/drop`: applying a drop-everything plan (bounding, inheritable,
/// effective, permitted, ambient) and reading it back, in a plain child.
pub fn caps_drop_once(plan: &CapPlan) -> Result<Duration, StagesError> {
    Ok(time_in_child(0, || {
        plan.apply(&mut isocheck_runtime::sys::RealSyscalls).is_ok()
    })?)
}

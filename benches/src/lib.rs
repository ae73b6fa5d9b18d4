//! isocheck-benches: what container isolation costs at start-up, measured
//! with criterion next to the kernel's floor and the runtimes people use
//! instead, so every figure is a ratio from one run on one machine.
//!
//! The bench binary (`benches/start.rs`) wires these modules together; the
//! `bench-summary` binary prints medians, p95s and the issue-7 ratios.

pub mod bare_root;
pub mod cgroup_tree;
pub mod full;
pub mod oci;
pub mod peers;
pub mod probe;
pub mod rootfs;
pub mod settle;
pub mod spawn;
pub mod stage;
pub mod stages;

pub mod summary;

use std::path::{Path, PathBuf};

/// The workspace root (this crate sits one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

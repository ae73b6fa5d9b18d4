//! The one error type of the cgroups module. Every variant names the step
//! that failed and carries the path (and the value written), so a message
//! reads like `write 12 to /sys/fs/cgroup/pids/isocheck/x/pids.max: ...`.

use std::io;
use std::path::PathBuf;

use super::Controller;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("read mount table {path}: {source}")]
    ReadMountinfo { path: PathBuf, source: io::Error },
    #[error("no cgroup or cgroup2 filesystem is mounted (mount table has none)")]
    NoCgroupFs,
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("controller {controller} is not available on this host (needed for {needed_for})")]
    ControllerUnavailable {
        controller: Controller,
        needed_for: &'static str,
    },
    #[error("cgroup v1 has no {file} (needed for {needed_for})")]
    NotInV1 {
        file: &'static str,
        needed_for: &'static str,
    },
    #[error("create cgroup {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("remove cgroup {path}: {source}")]
    RemoveDir { path: PathBuf, source: io::Error },
    #[error("list cgroup {path}: {source}")]
    ListDir { path: PathBuf, source: io::Error },
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("write {value} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("parse {path}: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("send SIGKILL to pid {pid} (member of {path}): {source}")]
    Signal {
        pid: i32,
        path: PathBuf,
        source: nix::errno::Errno,
    },
    #[error("cgroup {name} has no freezer (no v1 freezer hierarchy, no cgroup.freeze)")]
    NoFreezer { name: String },
    #[error("{device}: {reason}")]
    Device { device: PathBuf, reason: String },
    #[error("freeze {path}: still {state:?} after {waited_ms} ms")]
    FreezeTimeout {
        path: PathBuf,
        state: String,
        waited_ms: u128,
    },
    #[error("kill {path}: pids {remaining:?} still present after {waited_ms} ms")]
    KillTimeout {
        path: PathBuf,
        remaining: Vec<i32>,
        waited_ms: u128,
    },
    #[error("owner record {path}: {reason}")]
    OwnerRecord { path: PathBuf, reason: String },
    #[error("{path}: expected {expected}, found {found}")]
    Verify {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error("device program for {path}: {step}: {source}")]
    Bpf {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error(
        "the device allowlist cannot be enforced here: no v1 devices hierarchy and no cgroup2 node"
    )]
    NoDeviceController,
    #[error("refusing to touch {path}: it is not inside an isocheck cgroup parent")]
    NotOurs { path: PathBuf },
    #[error("{count} step(s) failed, first: {first}")]
    Several {
        count: usize,
        first: Box<CgroupError>,
    },
}

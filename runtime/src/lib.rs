//! isocheck-runtime: a minimal container runtime built from the kernel's own
//! parts. Data flows one way: [`ContainerSpec`] (plain data) →
//! [`Container::spawn`] → a running [`Container`] → `wait` / `exec` /
//! `kill_init` → `Drop` cleans up.
//!
//! One module per kernel concept: `spec`, `process`, `rootfs`, `mounts`,
//! `cgroups`, `network`, `caps`, and `sys` (the one home of raw libc calls).

pub mod caps;
pub mod cgroups;
pub mod error;
pub mod mount_lock;
pub mod mounts;
pub mod network;
pub mod owner;
pub mod process;
pub mod protection;
pub mod reaper;
mod rlimits;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod standin;
pub mod step;
pub mod sys;
pub mod timeline;

pub use error::Error;
pub use process::{Container, ExecChild, ExitStatus, ParentSetup, SpawnOptions, StdioMode};
pub use protection::Protection;
pub use rootfs::{minimal_rootfs, RootfsError};
pub use spec::{ContainerSpec, SpecError};
pub use step::{ChildError, Step};

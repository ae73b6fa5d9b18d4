//! isocheck-runtime: a minimal container runtime built from the kernel's own
//! parts. Data flows one way: [`ContainerSpec`] (plain data) →
//! `Container::spawn` → a running `Container` → `wait` / `exec` / `kill` →
//! `Drop` cleans up.
//!
//! One module per kernel concept: `spec`, `process`, `rootfs`, `mounts`,
//! `cgroups`, `network`, `caps`, and `sys` (the one home of raw libc calls).

pub mod cgroups;
pub mod network;
pub mod spec;

pub use spec::ContainerSpec;

//! isocheck-harness: scenarios (TOML data), the runner that proves each
//! guarantee with its control, the stand-in host, reports, and the kernel
//! matrix. The `isocheck` binary is a thin CLI over this library.

pub mod catalog;
pub mod cleanup;
pub mod container;
pub mod expect;
pub mod fixtures;
pub mod lanes;
pub mod loopdev;
pub mod matrix;
pub mod measure;
pub mod nettestbed;
pub mod oci;
pub mod proof;
pub mod report;
pub mod requirements;
pub mod runner;
pub mod scenario;
pub mod signals;
pub mod suite;
pub mod vm;

/// The stand-in host lives in the runtime (the benches enter it too).
pub use isocheck_runtime::standin;

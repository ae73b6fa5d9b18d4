//! Other runtimes: the container a scenario asks for as an OCI bundle
//! (config.json built with the oci-spec crate), for runc, crun or youki.

pub mod config;

pub use config::{build_config, oci_meaning, BundleInputs, ConfigError};

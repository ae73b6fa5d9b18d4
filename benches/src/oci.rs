//! The OCI bundle the OCI peers (runc, crun, youki) run. There is one OCI
//! code path: config.json is built by the harness's bundle builder
//! (`isocheck_harness::oci::build_config`, the one `isocheck run --runtime`
//! uses) from the same `ContainerSpec` as `start/full`, so a peer is asked
//! for exactly the container ours starts, as far as the runtime spec can
//! say it.

use isocheck_harness::oci::{build_config, Bundle, BundleInputs, ConfigError};
use isocheck_runtime::spec::RootfsSource;
use isocheck_runtime::ContainerSpec;
use std::path::PathBuf;

/// The limits every bench container gets (the full start and the peers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchLimits {
    pub memory_bytes: u64,
    pub pids: u64,
    pub cpu_quota_us: u64,
    pub cpu_period_us: u64,
}

pub const BENCH_LIMITS: BenchLimits = BenchLimits {
    memory_bytes: 64 * 1024 * 1024,
    pids: 32,
    cpu_quota_us: 50_000,
    cpu_period_us: 100_000,
};

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("creating temp dir isocheck-bench-bundle-*: {0}")]
    TempDir(std::io::Error),
    #[error("the peers run a directory rootfs; the spec's is {0:?}")]
    Rootfs(RootfsSource),
    #[error("config.json: {0}")]
    Config(#[from] ConfigError),
    #[error("bundle: {0}")]
    Bundle(String),
}

/// A bundle directory (isocheck-bench-bundle-*) holding config.json for
/// `spec`, with `linux.cgroupsPath` `cgroups_path`. The rootfs is the
/// spec's directory as it is, named by absolute path: an overlay of ours
/// would be mounted once per bundle, not per start, so it would not be part
/// of what a peer's start costs. Removed on drop (the harness's [`Bundle`]).
pub fn bundle(spec: &ContainerSpec, cgroups_path: &str) -> Result<Bundle, OciError> {
    let rootfs = match &spec.rootfs.source {
        RootfsSource::Dir(dir) => dir.clone(),
        other => return Err(OciError::Rootfs(other.clone())),
    };
    let dir: PathBuf = tempfile::Builder::new()
        .prefix("isocheck-bench-bundle-")
        .tempdir()
        .map_err(OciError::TempDir)?
        .keep();
    // From here the harness's Bundle owns the directory and removes it.
    let bundle = Bundle::create(&dir, &rootfs, false).map_err(OciError::Bundle)?;
    let config = build_config(
        spec,
        &BundleInputs {
            rootfs: bundle.rootfs(&rootfs),
            netns: None,
            cgroups_path: cgroups_path.to_string(),
        },
    )?;
    bundle.write_config(&config).map_err(OciError::Bundle)?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::path::Path;

    fn spec(root: &Path) -> ContainerSpec {
        let mut spec = crate::full::full_spec_in(root, &["/probe", "noop"]);
        spec.rootfs.overlay = false;
        spec
    }

    #[test]
    fn config_carries_namespaces_limits_and_the_noop() {
        let root = tempfile::tempdir().expect("root");
        let bundle = bundle(&spec(root.path()), "/isocheck/b/runc").expect("bundle");
        let cfg: Value = serde_json::from_slice(
            &std::fs::read(bundle.dir.join("config.json")).expect("read config.json"),
        )
        .expect("parse");
        let ns: Vec<&str> = cfg["linux"]["namespaces"]
            .as_array()
            .expect("namespaces array")
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert_eq!(ns, ["pid", "mount", "uts", "ipc", "network", "cgroup"]);
        assert_eq!(
            cfg["linux"]["resources"]["memory"]["limit"],
            64 * 1024 * 1024
        );
        assert_eq!(cfg["linux"]["resources"]["pids"]["limit"], 32);
        assert_eq!(cfg["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(cfg["linux"]["cgroupsPath"], "/isocheck/b/runc");
        assert_eq!(cfg["process"]["args"], json!(["/probe", "noop"]));
        assert_eq!(cfg["process"]["noNewPrivileges"], true);
        assert_eq!(cfg["root"]["path"], json!(root.path()));
        assert_eq!(cfg["hostname"], "isocheck");
        let bounding = &cfg["process"]["capabilities"]["bounding"];
        assert!(
            bounding.is_null() || bounding == &json!([]),
            "no capability kept: {bounding}"
        );
    }

    #[test]
    fn the_bundle_is_removed_on_drop_and_a_non_directory_rootfs_is_refused() {
        let root = tempfile::tempdir().expect("root");
        let b = bundle(&spec(root.path()), "/isocheck/b/x").expect("bundle");
        let dir = b.dir.clone();
        assert!(dir.join("config.json").is_file());
        drop(b);
        assert!(!dir.exists());
        let mut tar = spec(root.path());
        tar.rootfs.source = RootfsSource::Tar("/r.tar".into());
        let err = bundle(&tar, "/isocheck/b/x").expect_err("tar rootfs");
        assert!(err.to_string().contains("r.tar"), "{err}");
    }
}

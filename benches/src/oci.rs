//! The OCI bundle the OCI peers (runc, crun, youki) run: the same rootfs,
//! namespaces, limits and no-op as `start/full`, as far as the runtime spec
//! can say it.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

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
    #[error("writing {path}: {source}")]
    WriteConfig {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// config.json: namespaces pid, mount, uts, ipc, network, cgroup; memory,
/// pids and cpu limits in `cgroups_path`; no capabilities at all;
/// no_new_privs; /proc, a tmpfs /dev, a read-only /sys and a tmpfs /tmp;
/// argv `/probe noop`.
pub fn config(rootfs: &Path, cgroups_path: &str, limits: BenchLimits, args: &[&str]) -> Value {
    let no_caps: [&str; 0] = [];
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": args,
            "env": ["PATH=/bin:/sbin:/usr/bin:/usr/sbin"],
            "cwd": "/",
            "capabilities": {
                "bounding": no_caps, "effective": no_caps, "inheritable": no_caps,
                "permitted": no_caps, "ambient": no_caps
            },
            "noNewPrivileges": true
        },
        "root": { "path": rootfs, "readonly": false },
        "hostname": "isocheck",
        "mounts": [
            { "destination": "/proc", "type": "proc", "source": "proc",
              "options": ["nosuid", "noexec", "nodev"] },
            { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { "destination": "/sys", "type": "sysfs", "source": "sysfs",
              "options": ["nosuid", "noexec", "nodev", "ro"] },
            { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
              "options": ["nosuid", "nodev", "mode=1777"] }
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" }, { "type": "mount" }, { "type": "uts" },
                { "type": "ipc" }, { "type": "network" }, { "type": "cgroup" }
            ],
            "cgroupsPath": cgroups_path,
            "resources": {
                "memory": { "limit": limits.memory_bytes },
                "pids": { "limit": limits.pids },
                "cpu": { "quota": limits.cpu_quota_us, "period": limits.cpu_period_us }
            }
        }
    })
}

/// A bundle directory (isocheck-bench-bundle-*) holding only config.json;
/// the rootfs stays where it is (`root.path` is absolute). Removed on drop.
#[derive(Debug)]
pub struct Bundle {
    dir: tempfile::TempDir,
}

impl Bundle {
    pub fn write(config: &Value) -> Result<Self, OciError> {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-bench-bundle-")
            .tempdir()
            .map_err(OciError::TempDir)?;
        let path = dir.path().join("config.json");
        std::fs::write(&path, config.to_string())
            .map_err(|source| OciError::WriteConfig { path, source })?;
        Ok(Bundle { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_carries_namespaces_limits_and_the_noop() {
        let cfg = config(
            Path::new("/r"),
            "/isocheck/b/runc",
            BENCH_LIMITS,
            &["/probe", "noop"],
        );
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
        assert_eq!(cfg["root"]["path"], "/r");
        assert_eq!(cfg["process"]["capabilities"]["bounding"], json!([]));
    }

    #[test]
    fn bundle_writes_config_json_and_is_removed_on_drop() {
        let cfg = config(Path::new("/r"), "/isocheck/b/x", BENCH_LIMITS, &["/probe"]);
        let bundle = Bundle::write(&cfg).expect("bundle");
        let dir = bundle.path().to_path_buf();
        let back: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("read"))
                .expect("parse");
        assert_eq!(back, cfg);
        drop(bundle);
        assert!(!dir.exists());
    }
}

//! The rootfs every bench shares: a temp directory holding only the probe
//! (as /probe) and the empty mount points the runtimes mount onto.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Where the probe sits inside the rootfs, and what every peer executes.
pub const PROBE_IN_ROOT: &str = "/probe";

/// Mount points created up front so no runtime has to create them (and so
/// none pays for a mkdir the others do not).
const MOUNT_POINTS: [&str; 4] = ["proc", "dev", "sys", "tmp"];

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("creating temp dir isocheck-bench-rootfs-*: {0}")]
    TempDir(std::io::Error),
    #[error("creating mount point {path}: {source}")]
    MountPoint {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("copying the probe {from} to {to}: {source}")]
    CopyProbe {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// A minimal rootfs, removed on drop.
#[derive(Debug)]
pub struct MinimalRootfs {
    dir: TempDir,
}

impl MinimalRootfs {
    pub fn new(probe: &Path) -> Result<Self, RootfsError> {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-bench-rootfs-")
            .tempdir()
            .map_err(RootfsError::TempDir)?;
        // The temp dir is 0700; runtimes that check the root's mode want 0755.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(RootfsError::TempDir)?;
        for name in MOUNT_POINTS {
            let path = dir.path().join(name);
            std::fs::create_dir(&path)
                .map_err(|source| RootfsError::MountPoint { path, source })?;
        }
        let to = dir.path().join(PROBE_IN_ROOT.trim_start_matches('/'));
        std::fs::copy(probe, &to).map_err(|source| RootfsError::CopyProbe {
            from: probe.to_path_buf(),
            to: to.clone(),
            source,
        })?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).map_err(
            |source| RootfsError::CopyProbe {
                from: probe.to_path_buf(),
                to: to.clone(),
                source,
            },
        )?;
        Ok(MinimalRootfs { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The probe's host path inside this rootfs.
    pub fn probe(&self) -> PathBuf {
        self.dir.path().join(PROBE_IN_ROOT.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rootfs_holds_the_probe_and_mount_points_and_vanishes_on_drop() {
        let fake_probe = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(fake_probe.path(), b"#!/bin/true\n").expect("write");
        let root = MinimalRootfs::new(fake_probe.path()).expect("rootfs");
        let path = root.path().to_path_buf();
        assert!(path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("isocheck-")));
        assert_eq!(
            std::fs::read(root.probe()).expect("read probe"),
            b"#!/bin/true\n"
        );
        for name in MOUNT_POINTS {
            assert!(path.join(name).is_dir(), "{name}");
        }
        drop(root);
        assert!(!path.exists());
    }
}

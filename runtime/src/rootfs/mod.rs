//! Where the root filesystem comes from: a directory, a tar(.gz) unpacked
//! safely, or an OCI image layout whose layers become overlay lowerdirs.
//! Everything the run writes lives in one temp dir
//! `isocheck-<run_id>-<name>-*` (overlay upper/work, unpacked images, the
//! mount point of the new root), removed when the container is dropped.

use flate2::read::GzDecoder;
use std::ffi::CString;
use std::fs;
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use crate::spec::{ContainerSpec, RootfsSource};

mod minimal;
mod oci_layout;
mod tarball;
#[cfg(test)]
mod tests;
pub use minimal::*;
pub use oci_layout::*;
pub use tarball::*;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("{step} {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{archive}: entry {entry:?} refused: {reason}")]
    UnsafeEntry {
        archive: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("OCI layout {path}: {message}")]
    Oci { path: PathBuf, message: String },
    #[error(transparent)]
    BlobMismatch(Box<BlobMismatch>),
    #[error("{path}: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
}

/// A blob whose size or digest is not its descriptor's (boxed in
/// [`RootfsError`]: every error of the runtime carries that enum).
#[derive(Debug, thiserror::Error)]
#[error(
    "OCI blob {path} does not match its descriptor {digest}: {what} is {found}, not {expected}"
)]
pub struct BlobMismatch {
    pub path: PathBuf,
    pub digest: String,
    /// "size" or "digest".
    pub what: &'static str,
    pub expected: String,
    pub found: String,
}

fn io_err<'p>(step: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> RootfsError + 'p {
    move |source| RootfsError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// How the image is placed at the new root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageMount {
    /// overlayfs with these options (lowerdir=...,upperdir=...,workdir=...).
    Overlay { options: CString },
    /// The image directory itself, bound read-write (controls only).
    Bind { source: CString },
}

/// The run's temp dir and how the image goes at the new root.
#[derive(Debug)]
pub struct PreparedRootfs {
    /// `isocheck-<run_id>-<name>-*`; removed on drop.
    pub dir: crate::owner::MarkedDir,
    /// Empty directory the image is mounted on (inside `dir`).
    pub new_root: PathBuf,
    pub image: ImageMount,
}

/// Where containers' temp dirs go: `$TMPDIR` when set, else /dev/shm when
/// it is a tmpfs, else the system's temp dir. A temp dir holds the new
/// root's mount point and the overlay's upper and work dirs, made and
/// removed around every start: on a disk filesystem that was about 1 ms of
/// each start (ext4 journals every mkdir, rmdir and unlink), on tmpfs a few
/// microseconds. What a container writes to its root lives in memory then,
/// charged to its memory cgroup.
pub fn temp_base() -> PathBuf {
    if std::env::var_os("TMPDIR").is_none() {
        let shm = Path::new("/dev/shm");
        if nix::sys::statfs::statfs(shm)
            .is_ok_and(|st| st.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        {
            return shm.to_path_buf();
        }
    }
    std::env::temp_dir()
}

/// Every directory a temp dir of ours may be in: [`temp_base`] for
/// containers', the system's temp dir for the harness's run dirs (once and
/// the same when they coincide). Cleanup and leftover checks look in each.
pub fn temp_bases() -> Vec<PathBuf> {
    let mut bases = vec![temp_base(), std::env::temp_dir()];
    bases.dedup();
    bases
}

/// The prefix of every temp dir a container creates.
pub fn temp_prefix(run_id: &str, name: &str) -> String {
    format!("isocheck-{run_id}-{name}-")
}

/// Lays out the run's temp dir and unpacks the image if needed. With a
/// user mapping, the overlay's upper and work dirs are handed to the
/// container's root (`owner`, host ids of uid/gid 0 inside).
pub fn prepare(
    spec: &ContainerSpec,
    run_id: &str,
    name: &str,
    owner: Option<(u32, u32)>,
) -> Result<PreparedRootfs, RootfsError> {
    let tmp = temp_base();
    let dir = tempfile::Builder::new()
        .prefix(&temp_prefix(run_id, name))
        .tempdir_in(&tmp)
        .map_err(io_err("create temp dir in", &tmp))?;
    let base = dir.path().to_path_buf();
    // Who owns this dir: `isocheck cleanup` removes only what has a record.
    let dir =
        crate::owner::MarkedDir::mark(dir, run_id).map_err(io_err("mark the owner of", &base))?;
    let new_root = base.join("root");
    mkdir(&new_root, 0o755)?;

    let lowerdirs: Vec<PathBuf> = match &spec.rootfs.source {
        RootfsSource::Dir(p) => vec![fs::canonicalize(p).map_err(io_err("resolve", p))?],
        RootfsSource::Tar(p) => {
            let image = base.join("image");
            mkdir(&image, 0o755)?;
            unpack_tar(p, &image)?;
            vec![image]
        }
        RootfsSource::OciLayout(p) => unpack_oci_layout(p, &base.join("layers"))?,
    };

    let image = if spec.rootfs.overlay {
        let upper = base.join("upper");
        let work = base.join("work");
        mkdir(&upper, 0o755)?;
        mkdir(&work, 0o700)?;
        if let Some((uid, gid)) = owner {
            for d in [&upper, &work, &new_root] {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).map_err(io_err("chown", d))?;
            }
        }
        ImageMount::Overlay {
            options: overlay_options(&lowerdirs, &upper, &work)?,
        }
    } else {
        let Some(only) = lowerdirs.first().filter(|_| lowerdirs.len() == 1) else {
            return Err(RootfsError::BadPath {
                path: base,
                reason: "a bind root needs exactly one image directory",
            });
        };
        ImageMount::Bind {
            source: c_path(only)?,
        }
    };
    Ok(PreparedRootfs {
        dir,
        new_root,
        image,
    })
}

fn mkdir(path: &Path, mode: u32) -> Result<(), RootfsError> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .map_err(io_err("mkdir", path))
}

fn c_path(p: &Path) -> Result<CString, RootfsError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| RootfsError::BadPath {
        path: p.to_path_buf(),
        reason: "contains a NUL byte",
    })
}

/// `lowerdir=TOP:...:BOTTOM,upperdir=..,workdir=..`. `lowerdirs` is given
/// bottom layer first (OCI order).
pub fn overlay_options(
    lowerdirs: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<CString, RootfsError> {
    for p in lowerdirs.iter().map(PathBuf::as_path).chain([upper, work]) {
        let b = p.as_os_str().as_bytes();
        if b.iter().any(|c| matches!(c, b':' | b',' | b'\\')) {
            return Err(RootfsError::BadPath {
                path: p.to_path_buf(),
                reason: "overlay paths cannot contain ':', ',' or '\\'",
            });
        }
    }
    let lower: Vec<String> = lowerdirs
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    );
    CString::new(opts).map_err(|_| RootfsError::BadPath {
        path: upper.to_path_buf(),
        reason: "contains a NUL byte",
    })
}

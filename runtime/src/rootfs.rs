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
use tempfile::TempDir;

use crate::mounts::ImageMount;
use crate::spec::{ContainerSpec, RootfsSource};

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
    #[error("{path}: {reason}")]
    BadPath { path: PathBuf, reason: &'static str },
}

fn io_err<'p>(step: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> RootfsError + 'p {
    move |source| RootfsError::Io {
        step,
        path: path.to_path_buf(),
        source,
    }
}

/// The run's temp dir and how the image goes at the new root.
#[derive(Debug)]
pub struct PreparedRootfs {
    /// `isocheck-<run_id>-<name>-*`; removed on drop.
    pub dir: TempDir,
    /// Empty directory the image is mounted on (inside `dir`).
    pub new_root: PathBuf,
    pub image: ImageMount,
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
    let tmp = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix(&temp_prefix(run_id, name))
        .tempdir_in(&tmp)
        .map_err(io_err("create temp dir in", &tmp))?;
    let base = dir.path().to_path_buf();
    // Who owns this dir: `isocheck cleanup` removes only what has a record.
    crate::owner::mark_dir(&base, run_id).map_err(io_err("mark the owner of", &base))?;
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

// ---------------------------------------------------------------------------
// Tar
// ---------------------------------------------------------------------------

/// Unpacks a tar or tar.gz (sniffed by its magic) into `dest`, refusing
/// anything that could write outside it.
pub fn unpack_tar(archive: &Path, dest: &Path) -> Result<(), RootfsError> {
    let mut file = fs::File::open(archive).map_err(io_err("open", archive))?;
    let mut magic = [0u8; 2];
    let gz = file.read(&mut magic).map_err(io_err("read", archive))? == 2 && magic == [0x1f, 0x8b];
    file.rewind().map_err(io_err("rewind", archive))?;
    let reader = BufReader::new(file);
    if gz {
        unpack_tar_reader(
            GzDecoder::new(reader),
            archive,
            dest,
            false,
            &UnpackLimits::DEFAULT,
        )
    } else {
        unpack_tar_reader(reader, archive, dest, false, &UnpackLimits::DEFAULT)
    }
}

/// Why an entry's name or link is refused, if it is.
fn unsafe_name(path: &Path) -> Option<&'static str> {
    for c in path.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => return Some("absolute path"),
            Component::ParentDir => return Some("path contains .."),
            _ => {}
        }
    }
    None
}

/// Whether a symlink at `link` (relative to the root) pointing to `target`
/// stays inside the root when resolved lexically. Absolute targets are
/// rooted at the container's root, so only `..` past the top escapes.
fn symlink_escapes(link: &Path, target: &Path) -> bool {
    let mut depth: i64 = if target.is_absolute() {
        0
    } else {
        link.parent()
            .map(|p| {
                p.components()
                    .filter(|c| matches!(c, Component::Normal(_)))
                    .count() as i64
            })
            .unwrap_or(0)
    };
    for c in target.components() {
        match c {
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

/// Refuses when any existing ancestor of `rel` under `dest` is a symlink:
/// writing through it could land outside `dest`.
fn ancestor_is_symlink(dest: &Path, rel: &Path) -> Option<PathBuf> {
    let mut cur = dest.to_path_buf();
    let parent = rel.parent()?;
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.file_type().is_symlink() => return Some(cur),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The unpacking loop. With `layer`, OCI whiteouts become overlayfs
/// whiteouts (a 0/0 character device) and opaque markers an xattr.
/// How much an archive may unpack to: a hostile image must not fill the
/// disk or the inode table before anything runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Sum of the entries' sizes.
    pub bytes: u64,
    pub entries: u64,
}

impl UnpackLimits {
    /// 8 GiB and a million entries: far above any image a test needs.
    pub const DEFAULT: UnpackLimits = UnpackLimits {
        bytes: 8 << 30,
        entries: 1_000_000,
    };
}

pub fn unpack_tar_reader<R: Read>(
    reader: R,
    archive_name: &Path,
    dest: &Path,
    layer: bool,
    limits: &UnpackLimits,
) -> Result<(), RootfsError> {
    let refuse = |entry: &Path, reason: &str| RootfsError::UnsafeEntry {
        archive: archive_name.to_path_buf(),
        entry: entry.display().to_string(),
        reason: reason.to_string(),
    };
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(nix::unistd::geteuid().is_root());
    ar.set_overwrite(true);
    let entries = ar
        .entries()
        .map_err(io_err("read entries of", archive_name))?;
    let (mut bytes, mut count) = (0u64, 0u64);
    for entry in entries {
        let mut entry = entry.map_err(io_err("read entry of", archive_name))?;
        let path = entry
            .path()
            .map_err(io_err("read entry name in", archive_name))?
            .into_owned();
        // Checked from the headers, before the entry is written.
        bytes = bytes.saturating_add(entry.header().size().unwrap_or(u64::MAX));
        count += 1;
        if bytes > limits.bytes {
            return Err(refuse(
                &path,
                &format!("the archive unpacks to more than {} bytes", limits.bytes),
            ));
        }
        if count > limits.entries {
            return Err(refuse(
                &path,
                &format!("the archive has more than {} entries", limits.entries),
            ));
        }
        if let Some(reason) = unsafe_name(&path) {
            return Err(refuse(&path, reason));
        }
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_pax_local_extensions()
            || kind.is_gnu_longname()
            || kind.is_gnu_longlink()
        {
            continue;
        }
        if kind.is_character_special() || kind.is_block_special() {
            return Err(refuse(&path, "device nodes are not unpacked"));
        }
        if !(kind.is_file()
            || kind.is_dir()
            || kind.is_symlink()
            || kind.is_hard_link()
            || kind.is_fifo()
            || kind.is_contiguous())
        {
            return Err(refuse(&path, "unsupported entry type"));
        }
        if let Some(link) = entry
            .link_name()
            .map_err(io_err("read link name in", archive_name))?
        {
            let link = link.into_owned();
            if kind.is_hard_link() {
                if let Some(reason) = unsafe_name(&link) {
                    return Err(refuse(
                        &path,
                        &format!("hard link target {}: {reason}", link.display()),
                    ));
                }
            } else if symlink_escapes(&path, &link) {
                return Err(refuse(
                    &path,
                    &format!("symlink to {} leaves the root", link.display()),
                ));
            }
        }
        if let Some(via) = ancestor_is_symlink(dest, &path) {
            return Err(refuse(
                &path,
                &format!("would be written through the symlink {}", via.display()),
            ));
        }
        if layer {
            if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                if name == OPAQUE_MARKER {
                    let dir = dest.join(path.parent().unwrap_or(Path::new("")));
                    fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
                    mark_opaque(&dir)?;
                    continue;
                }
                if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
                    let target = dest.join(path.with_file_name(hidden));
                    if let Some(parent) = target.parent() {
                        fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
                    }
                    make_whiteout(&target)?;
                    continue;
                }
            }
        }
        // A short read here is a truncated archive: name it, not just dest.
        let inside = entry
            .unpack_in(dest)
            .map_err(|e| RootfsError::UnsafeEntry {
                archive: archive_name.to_path_buf(),
                entry: path.display().to_string(),
                reason: format!("cannot unpack (truncated or corrupt archive?): {e}"),
            })?;
        if !inside {
            return Err(refuse(&path, "resolves outside the destination"));
        }
    }
    Ok(())
}

/// An overlayfs whiteout: a character device 0/0 hides the lower file.
fn make_whiteout(target: &Path) -> Result<(), RootfsError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let _ = fs::remove_file(target);
    mknod(target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| RootfsError::Io {
        step: "mknod whiteout",
        path: target.to_path_buf(),
        source: e.into(),
    })
}

/// trusted.overlay.opaque=y: the directory hides what the lower layers had.
fn mark_opaque(dir: &Path) -> Result<(), RootfsError> {
    let c = c_path(dir)?;
    crate::sys::set_xattr(&c, c"trusted.overlay.opaque", b"y").map_err(|e| RootfsError::Io {
        step: "set opaque xattr on",
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

// ---------------------------------------------------------------------------
// OCI image layout
// ---------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
struct OciManifest {
    layers: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
}

fn blob_path(layout: &Path, digest: &str) -> Result<PathBuf, RootfsError> {
    let (algo, hex) = digest.split_once(':').ok_or_else(|| RootfsError::Oci {
        path: layout.to_path_buf(),
        message: format!("digest {digest:?} has no algorithm"),
    })?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if !ok(algo) || !ok(hex) {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?} is not algo:hex"),
        });
    }
    Ok(layout.join("blobs").join(algo).join(hex))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RootfsError> {
    let text = fs::read(path).map_err(io_err("read", path))?;
    serde_json::from_slice(&text).map_err(|e| RootfsError::Oci {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// index.json → first manifest → its layers, each unpacked (whiteouts as
/// overlay whiteouts) into `into/<n>`. Returns the layer dirs bottom first.
pub fn unpack_oci_layout(layout: &Path, into: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    let index: OciIndex = read_json(&layout.join("index.json"))?;
    let first = index.manifests.first().ok_or_else(|| RootfsError::Oci {
        path: layout.to_path_buf(),
        message: "index.json lists no manifest".into(),
    })?;
    let manifest: OciManifest = read_json(&blob_path(layout, &first.digest)?)?;
    if manifest.layers.is_empty() {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: "the manifest has no layers".into(),
        });
    }
    fs::create_dir_all(into).map_err(io_err("mkdir", into))?;
    let mut dirs = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        let blob = blob_path(layout, &layer.digest)?;
        let dir = into.join(n.to_string());
        mkdir(&dir, 0o755)?;
        let file = fs::File::open(&blob).map_err(io_err("open layer", &blob))?;
        let reader = BufReader::new(file);
        if layer.media_type.ends_with("gzip") {
            unpack_tar_reader(
                GzDecoder::new(reader),
                &blob,
                &dir,
                true,
                &UnpackLimits::DEFAULT,
            )?;
        } else if layer.media_type.ends_with("tar") || layer.media_type.is_empty() {
            unpack_tar_reader(reader, &blob, &dir, true, &UnpackLimits::DEFAULT)?;
        } else {
            return Err(RootfsError::Oci {
                path: blob,
                message: format!(
                    "layer media type {} is not tar or tar+gzip",
                    layer.media_type
                ),
            });
        }
        dirs.push(dir);
    }
    Ok(dirs)
}

// ---------------------------------------------------------------------------
// A minimal rootfs built on the spot
// ---------------------------------------------------------------------------

/// Creates the skeleton of a rootfs in `dir` (bin, dev, proc, sys, tmp, mnt,
/// etc with passwd, group and hostname) and copies each host binary to its
/// path inside (mode 0755). The binaries must be static.
pub fn minimal_rootfs(dir: &Path, binaries: &[(&Path, &str)]) -> Result<(), RootfsError> {
    for sub in ["bin", "dev", "proc", "sys", "tmp", "etc", "mnt", "root"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(io_err("mkdir", &p))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &tmp))?;
    for (name, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "isocheck\n"),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).map_err(io_err("write", &p))?;
    }
    for (host, inside) in binaries {
        let rel = Path::new(inside);
        if !rel.is_absolute()
            || rel.components().any(|c| c == Component::ParentDir)
            || rel == Path::new("/")
        {
            return Err(RootfsError::BadPath {
                path: rel.to_path_buf(),
                reason: "a binary's path inside must be absolute, without ..",
            });
        }
        let target = dir.join(rel.strip_prefix("/").unwrap_or(rel));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
        }
        fs::copy(host, &target).map_err(io_err("copy binary to", &target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use tar::{EntryType, Header};

    /// Appends an entry with a raw name, as a hostile archive would carry it
    /// (tar::Builder's path setters refuse these names).
    fn raw(ar: &mut tar::Builder<Vec<u8>>, name: &str, kind: EntryType, link: &str, data: &[u8]) {
        let mut h = Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.name[..name.len()].copy_from_slice(name.as_bytes());
            gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        h.set_size(data.len() as u64);
        h.set_uid(u64::from(nix::unistd::geteuid().as_raw()));
        h.set_gid(u64::from(nix::unistd::getegid().as_raw()));
        h.set_mtime(0);
        h.set_cksum();
        ar.append(&h, data).expect("append to memory");
    }

    #[test]
    fn oversized_and_overfull_archives_are_refused() {
        let sb = Sandbox::new();
        let mut ar = tar::Builder::new(Vec::new());
        raw(&mut ar, "a", EntryType::Regular, "", &[0u8; 600]);
        raw(&mut ar, "b", EntryType::Regular, "", &[0u8; 600]);
        let bytes = ar.into_inner().expect("tar");
        let small = UnpackLimits {
            bytes: 1000,
            entries: 10,
        };
        let e = unpack_tar_reader(&bytes[..], Path::new("big.tar"), &sb.dest(), false, &small)
            .expect_err("over the byte budget");
        assert!(e.to_string().contains("more than 1000 bytes"), "{e}");
        assert!(e.to_string().contains("\"b\""), "names the entry: {e}");
        let few = UnpackLimits {
            bytes: 1 << 20,
            entries: 1,
        };
        let e = unpack_tar_reader(&bytes[..], Path::new("big.tar"), &sb.dest(), false, &few)
            .expect_err("over the entry budget");
        assert!(e.to_string().contains("more than 1 entries"), "{e}");
        assert!(sb.outside_entries().len() <= 2, "nothing escaped");
    }

    #[test]
    fn a_truncated_archive_is_an_error_naming_it() {
        let sb = Sandbox::new();
        let mut ar = tar::Builder::new(Vec::new());
        raw(&mut ar, "file", EntryType::Regular, "", &[7u8; 4096]);
        let bytes = ar.into_inner().expect("tar");
        let cut = &bytes[..512 + 1000];
        let e = unpack_tar_reader(
            cut,
            Path::new("cut.tar"),
            &sb.dest(),
            false,
            &UnpackLimits::DEFAULT,
        )
        .expect_err("truncated");
        assert!(e.to_string().contains("cut.tar"), "{e}");
    }

    struct Sandbox {
        dir: TempDir,
    }

    impl Sandbox {
        fn new() -> Sandbox {
            let dir = tempfile::Builder::new()
                .prefix("isocheck-unit-")
                .tempdir()
                .expect("temp dir");
            fs::create_dir(dir.path().join("dest")).expect("dest");
            fs::create_dir(dir.path().join("outside")).expect("outside");
            fs::write(dir.path().join("outside/sentinel"), "keep").expect("sentinel");
            Sandbox { dir }
        }
        fn dest(&self) -> PathBuf {
            self.dir.path().join("dest")
        }
        fn unpack(&self, bytes: &[u8]) -> Result<(), RootfsError> {
            unpack_tar_reader(
                bytes,
                Path::new("test.tar"),
                &self.dest(),
                false,
                &UnpackLimits::DEFAULT,
            )
        }
        /// Everything outside dest/, without following symlinks.
        fn outside_entries(&self) -> BTreeSet<PathBuf> {
            let mut out = BTreeSet::new();
            let mut stack = vec![self.dir.path().to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).expect("readable") {
                    let p = e.expect("entry").path();
                    if p == self.dest() {
                        continue;
                    }
                    if fs::symlink_metadata(&p).expect("stat").is_dir() {
                        stack.push(p.clone());
                    }
                    out.insert(
                        p.strip_prefix(self.dir.path())
                            .expect("inside")
                            .to_path_buf(),
                    );
                }
            }
            out
        }
        fn untouched(&self) -> bool {
            let want: BTreeSet<PathBuf> = ["outside", "outside/sentinel"]
                .iter()
                .map(PathBuf::from)
                .collect();
            self.outside_entries() == want
                && fs::read_to_string(self.dir.path().join("outside/sentinel"))
                    .ok()
                    .as_deref()
                    == Some("keep")
        }
    }

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut ar = tar::Builder::new(Vec::new());
        build(&mut ar);
        ar.into_inner().expect("finish")
    }

    #[test]
    fn a_plain_archive_unpacks() {
        let s = Sandbox::new();
        let bytes = archive(|ar| {
            raw(ar, "bin/", EntryType::Directory, "", b"");
            raw(ar, "bin/busybox", EntryType::Regular, "", b"ELF");
            raw(ar, "bin/sh", EntryType::Symlink, "busybox", b"");
            raw(ar, "bin/abs", EntryType::Symlink, "/bin/busybox", b"");
            raw(ar, "bin/hard", EntryType::Link, "bin/busybox", b"");
        });
        s.unpack(&bytes).expect("unpacks");
        assert_eq!(fs::read(s.dest().join("bin/sh")).expect("via link"), b"ELF");
        assert_eq!(
            fs::read(s.dest().join("bin/hard")).expect("hard link"),
            b"ELF"
        );
        assert!(s.untouched());
    }

    #[test]
    fn gzip_is_sniffed() {
        let s = Sandbox::new();
        let bytes = archive(|ar| raw(ar, "f", EntryType::Regular, "", b"x"));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).expect("compress");
        let path = s.dir.path().join("img.tar.gz");
        fs::write(&path, gz.finish().expect("finish")).expect("write");
        unpack_tar(&path, &s.dest()).expect("unpacks");
        assert_eq!(fs::read(s.dest().join("f")).expect("file"), b"x");
    }

    #[rstest::rstest]
    #[case("../outside/evil", EntryType::Regular, "", "path contains ..")]
    #[case("/abs", EntryType::Regular, "", "absolute path")]
    #[case("a/../../x", EntryType::Regular, "", "path contains ..")]
    #[case(
        "l",
        EntryType::Symlink,
        "../outside",
        "symlink to ../outside leaves the root"
    )]
    #[case(
        "a/l",
        EntryType::Symlink,
        "../../x",
        "symlink to ../../x leaves the root"
    )]
    #[case(
        "h",
        EntryType::Link,
        "/etc/passwd",
        "hard link target /etc/passwd: absolute path"
    )]
    #[case(
        "h",
        EntryType::Link,
        "../outside/sentinel",
        "hard link target ../outside/sentinel: path contains .."
    )]
    #[case("dev/sda", EntryType::Block, "", "device nodes are not unpacked")]
    #[case("dev/mem", EntryType::Char, "", "device nodes are not unpacked")]
    fn escapes_are_refused_by_name(
        #[case] name: &str,
        #[case] kind: EntryType,
        #[case] link: &str,
        #[case] reason: &str,
    ) {
        let s = Sandbox::new();
        let bytes = archive(|ar| raw(ar, name, kind, link, b""));
        let err = s.unpack(&bytes).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!("test.tar: entry {name:?} refused: {reason}")
        );
        assert!(s.untouched());
    }

    #[test]
    fn writing_through_an_absolute_symlink_is_refused() {
        let s = Sandbox::new();
        let outside = s.dir.path().join("outside");
        // Absolute symlinks are fine in an image (they resolve inside the
        // container) but must never be followed while unpacking.
        let bytes = archive(|ar| {
            raw(
                ar,
                "l",
                EntryType::Symlink,
                outside.to_str().expect("utf8"),
                b"",
            );
            raw(ar, "l/evil", EntryType::Regular, "", b"x");
        });
        let err = s.unpack(&bytes).expect_err("refused");
        assert!(
            err.to_string()
                .contains("would be written through the symlink"),
            "{err}"
        );
        assert!(s.untouched());
    }

    #[test]
    fn overlay_options_put_the_top_layer_first() {
        let opts = overlay_options(
            &["/l/0".into(), "/l/1".into()],
            Path::new("/u"),
            Path::new("/w"),
        )
        .expect("valid");
        assert_eq!(
            opts.to_str(),
            Ok("lowerdir=/l/1:/l/0,upperdir=/u,workdir=/w")
        );
        let err =
            overlay_options(&["/a:b".into()], Path::new("/u"), Path::new("/w")).expect_err("colon");
        assert_eq!(
            err.to_string(),
            "/a:b: overlay paths cannot contain ':', ',' or '\\'"
        );
    }

    #[test]
    fn oci_layout_layers_unpack_in_order() {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        fs::create_dir_all(layout.join("blobs/sha256")).expect("mkdir");
        let blob = |name: &str, bytes: &[u8]| {
            fs::write(layout.join("blobs/sha256").join(name), bytes).expect("blob");
            format!("sha256:{name}")
        };
        let l0 = blob(
            "aa",
            &archive(|ar| raw(ar, "etc/os", EntryType::Regular, "", b"base")),
        );
        let l1 = blob(
            "bb",
            &archive(|ar| raw(ar, "etc/app", EntryType::Regular, "", b"app")),
        );
        let manifest = blob(
            "cc",
            format!(r#"{{"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l0}"}},{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{l1}"}}]}}"#).as_bytes(),
        );
        fs::write(
            layout.join("index.json"),
            format!(r#"{{"manifests":[{{"digest":"{manifest}"}}]}}"#),
        )
        .expect("index");
        let dirs = unpack_oci_layout(&layout, &s.dest().join("layers")).expect("unpacks");
        assert_eq!(dirs.len(), 2);
        assert_eq!(fs::read(dirs[0].join("etc/os")).expect("l0"), b"base");
        assert_eq!(fs::read(dirs[1].join("etc/app")).expect("l1"), b"app");

        fs::write(
            layout.join("index.json"),
            r#"{"manifests":[{"digest":"sha256:../../x"}]}"#,
        )
        .expect("index");
        let err = unpack_oci_layout(&layout, &s.dest().join("layers2")).expect_err("bad digest");
        assert!(err.to_string().contains("is not algo:hex"), "{err}");
    }

    #[test]
    fn minimal_rootfs_has_the_skeleton_and_the_binary() {
        let s = Sandbox::new();
        let bin = s.dir.path().join("outside/sentinel");
        minimal_rootfs(&s.dest(), &[(&bin, "/probe"), (&bin, "/usr/bin/tool")]).expect("builds");
        for d in ["bin", "dev", "proc", "sys", "tmp", "etc", "mnt"] {
            assert!(s.dest().join(d).is_dir(), "{d}");
        }
        assert!(fs::read_to_string(s.dest().join("etc/passwd"))
            .expect("passwd")
            .starts_with("root:x:0:0:"));
        let mode = fs::metadata(s.dest().join("probe"))
            .expect("probe")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
        assert!(s.dest().join("usr/bin/tool").is_file());
        let err = minimal_rootfs(&s.dest(), &[(&bin, "../x")]).expect_err("relative");
        assert!(err.to_string().contains("must be absolute"), "{err}");
    }

    fn entry() -> impl Strategy<Value = (String, u8, String)> {
        let prefix = prop::sample::select(vec![
            "", "../", "/", "a/", "a/../../", "l/", "./", "a/b/", "la/",
        ]);
        let leaf = "[a-c]{1,2}";
        let target = prop::sample::select(vec![
            "../../outside",
            "..",
            "../x",
            "a",
            "/",
            "/etc",
            "../../../outside/sentinel",
            "b/../..",
            "outside",
        ]);
        (prefix, leaf, 0u8..4, target)
            .prop_map(|(p, l, k, t)| (format!("{p}{l}"), k, t.to_string()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn nothing_is_ever_written_outside(entries in prop::collection::vec(entry(), 1..8)) {
            let s = Sandbox::new();
            let abs_outside = s.dir.path().join("outside");
            let bytes = archive(|ar| {
                // A symlink to the absolute outside dir first, so later
                // entries under `la/` try to write through it.
                raw(ar, "la", EntryType::Symlink, abs_outside.to_str().unwrap_or("/"), b"");
                for (name, kind, target) in &entries {
                    let kind = [EntryType::Regular, EntryType::Directory, EntryType::Symlink, EntryType::Link][*kind as usize];
                    let link = if matches!(kind, EntryType::Symlink | EntryType::Link) { target.as_str() } else { "" };
                    raw(ar, name, kind, link, b"data");
                }
            });
            let _ = s.unpack(&bytes);
            prop_assert!(s.untouched(), "outside changed: {:?}", s.outside_entries());
        }
    }
}

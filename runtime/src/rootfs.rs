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

fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Why a hard link's source is refused, if it is: reached through a
/// symlink, or a symlink itself (either could name a file outside `dest`).
fn hard_link_source_refused<R: Read>(
    dest: &Path,
    entry: &tar::Entry<'_, R>,
    archive_name: &Path,
) -> Result<Option<String>, RootfsError> {
    let Some(link) = entry
        .link_name()
        .map_err(io_err("read link name in", archive_name))?
    else {
        return Ok(None);
    };
    if let Some(via) = ancestor_is_symlink(dest, &link) {
        return Ok(Some(format!(
            "hard link target {} goes through the symlink {}",
            link.display(),
            via.display()
        )));
    }
    if is_symlink(&dest.join(&link)) {
        return Ok(Some(format!(
            "hard link target {} is a symlink",
            link.display()
        )));
    }
    Ok(None)
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
        // A directory's mode and times are set on its path, which would
        // follow a symlink the archive put there before.
        if kind.is_dir() && is_symlink(&dest.join(&path)) {
            return Err(refuse(
                &path,
                &format!(
                    "would be written through the symlink {}",
                    dest.join(&path).display()
                ),
            ));
        }
        if kind.is_hard_link() {
            if let Some(reason) = hard_link_source_refused(dest, &entry, archive_name)? {
                return Err(refuse(&path, &reason));
            }
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
    config: OciDescriptor,
    layers: Vec<OciDescriptor>,
}

#[derive(serde::Deserialize)]
struct OciDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    /// Bytes of the blob; required by the image spec.
    size: u64,
}

/// The digest algorithms a descriptor may name, with their hex length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DigestAlgo {
    Sha256,
    Sha512,
}

impl DigestAlgo {
    fn parse(name: &str) -> Option<(DigestAlgo, usize)> {
        match name {
            "sha256" => Some((DigestAlgo::Sha256, 64)),
            "sha512" => Some((DigestAlgo::Sha512, 128)),
            _ => None,
        }
    }
}

/// A descriptor's digest, checked for its shape, and the blob file it names.
struct Blob {
    algo: DigestAlgo,
    /// `algo:hex` as the descriptor wrote it.
    digest: String,
    hex: String,
    size: u64,
    path: PathBuf,
}

fn blob(layout: &Path, d: &OciDescriptor) -> Result<Blob, RootfsError> {
    let digest = &d.digest;
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
    let Some((kind, len)) = DigestAlgo::parse(algo) else {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?}: algorithm {algo} is not sha256 or sha512"),
        });
    };
    if hex.len() != len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: format!("digest {digest:?} is not {len} lowercase hex digits"),
        });
    }
    Ok(Blob {
        algo: kind,
        digest: digest.clone(),
        hex: hex.to_owned(),
        size: d.size,
        path: layout.join("blobs").join(algo).join(hex),
    })
}

/// Counts and hashes every byte read through it.
struct Verifying<R> {
    inner: R,
    hash: Hasher,
    bytes: u64,
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl<R: Read> Verifying<R> {
    fn new(inner: R, algo: DigestAlgo) -> Verifying<R> {
        use sha2::Digest;
        let hash = match algo {
            DigestAlgo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            DigestAlgo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        };
        Verifying {
            inner,
            hash,
            bytes: 0,
        }
    }

    /// Reads what is left, then compares size and digest with `blob`'s.
    fn finish(mut self, blob: &Blob) -> Result<(), RootfsError> {
        io::copy(&mut self, &mut io::sink()).map_err(io_err("read blob", &blob.path))?;
        use sha2::Digest;
        let found = match self.hash {
            Hasher::Sha256(h) => hex(&h.finalize()),
            Hasher::Sha512(h) => hex(&h.finalize()),
        };
        if self.bytes != blob.size {
            return Err(blob.mismatch("size", blob.size.to_string(), self.bytes.to_string()));
        }
        if found != blob.hex {
            let algo = blob.digest.split_once(':').map_or("", |(a, _)| a);
            return Err(blob.mismatch("digest", blob.digest.clone(), format!("{algo}:{found}")));
        }
        Ok(())
    }
}

impl<R: Read> Read for Verifying<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use sha2::Digest;
        let n = self.inner.read(buf)?;
        match &mut self.hash {
            Hasher::Sha256(h) => h.update(&buf[..n]),
            Hasher::Sha512(h) => h.update(&buf[..n]),
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Blob {
    fn mismatch(&self, what: &'static str, expected: String, found: String) -> RootfsError {
        RootfsError::BlobMismatch(Box::new(BlobMismatch {
            path: self.path.clone(),
            digest: self.digest.clone(),
            what,
            expected,
            found,
        }))
    }

    fn open(&self) -> Result<fs::File, RootfsError> {
        let file = fs::File::open(&self.path).map_err(io_err("open blob", &self.path))?;
        let len = file
            .metadata()
            .map_err(io_err("stat blob", &self.path))?
            .len();
        // The cheap check first: a wrong size is refused before any read.
        if len != self.size {
            return Err(self.mismatch("size", self.size.to_string(), len.to_string()));
        }
        Ok(file)
    }

    /// The whole blob, verified (manifests and configs: small, and parsed
    /// from the very bytes that were hashed).
    fn read_verified(&self) -> Result<Vec<u8>, RootfsError> {
        let mut v = Verifying::new(self.open()?, self.algo);
        let mut bytes = Vec::new();
        v.read_to_end(&mut bytes)
            .map_err(io_err("read blob", &self.path))?;
        v.finish(self)?;
        Ok(bytes)
    }

    /// Checks size and digest of the whole file, then rewinds it.
    fn verify(&self, file: &mut fs::File) -> Result<(), RootfsError> {
        Verifying::new(&mut *file, self.algo).finish(self)?;
        file.rewind().map_err(io_err("rewind blob", &self.path))
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, RootfsError> {
    serde_json::from_slice(bytes).map_err(|e| RootfsError::Oci {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The compression a layer's media type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LayerCompression {
    None,
    Gzip,
    Zstd,
}

impl LayerCompression {
    /// `application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]` (and the
    /// nondistributable and Docker spellings, which end the same way).
    fn of(media_type: &str) -> Option<LayerCompression> {
        if media_type.ends_with("gzip") {
            Some(LayerCompression::Gzip)
        } else if media_type.ends_with("zstd") {
            Some(LayerCompression::Zstd)
        } else if media_type.ends_with("tar") || media_type.is_empty() {
            Some(LayerCompression::None)
        } else {
            None
        }
    }
}

/// A zstd stream of one or more frames, as zstd(1) writes them
/// concatenated (ruzstd decodes one frame at a time). Pure Rust: nothing
/// in C for the static build.
struct ZstdFrames<R: io::BufRead> {
    frame: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
}

impl<R: io::BufRead> ZstdFrames<R> {
    fn new(inner: R) -> io::Result<ZstdFrames<R>> {
        let frame = ruzstd::decoding::StreamingDecoder::new(inner).map_err(io::Error::other)?;
        Ok(ZstdFrames { frame: Some(frame) })
    }
}

impl<R: io::BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(frame) = self.frame.as_mut() else {
                return Ok(0);
            };
            let n = frame.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // This frame is done: another may follow.
            let Some(frame) = self.frame.take() else {
                return Ok(0);
            };
            let (mut inner, decoder) = frame.into_parts();
            if inner.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.frame = Some(
                ruzstd::decoding::StreamingDecoder::new_with_decoder(inner, decoder)
                    .map_err(io::Error::other)?,
            );
        }
    }
}

/// index.json → first manifest → its layers, each unpacked (whiteouts as
/// overlay whiteouts) into `into/<n>`. Returns the layer dirs bottom first.
/// Every blob (manifest, config, layers) is checked against its
/// descriptor's size and digest before it is used; a layer is hashed again
/// while it unpacks, so a blob changed in between is caught too.
pub fn unpack_oci_layout(layout: &Path, into: &Path) -> Result<Vec<PathBuf>, RootfsError> {
    let index_path = layout.join("index.json");
    let index: OciIndex = parse_json(
        &index_path,
        &fs::read(&index_path).map_err(io_err("read", &index_path))?,
    )?;
    let first = index.manifests.first().ok_or_else(|| RootfsError::Oci {
        path: layout.to_path_buf(),
        message: "index.json lists no manifest".into(),
    })?;
    let manifest_blob = blob(layout, first)?;
    let manifest: OciManifest = parse_json(&manifest_blob.path, &manifest_blob.read_verified()?)?;
    blob(layout, &manifest.config)?.read_verified()?;
    if manifest.layers.is_empty() {
        return Err(RootfsError::Oci {
            path: layout.to_path_buf(),
            message: "the manifest has no layers".into(),
        });
    }
    fs::create_dir_all(into).map_err(io_err("mkdir", into))?;
    let mut dirs = Vec::new();
    for (n, layer) in manifest.layers.iter().enumerate() {
        let blob = blob(layout, layer)?;
        let Some(compression) = LayerCompression::of(&layer.media_type) else {
            return Err(RootfsError::Oci {
                path: blob.path,
                message: format!(
                    "layer media type {} is not tar, tar+gzip or tar+zstd",
                    layer.media_type
                ),
            });
        };
        let mut file = blob.open()?;
        blob.verify(&mut file)?;
        let dir = into.join(n.to_string());
        mkdir(&dir, 0o755)?;
        let mut verifying = Verifying::new(file, blob.algo);
        let reader = BufReader::new(&mut verifying);
        let limits = &UnpackLimits::DEFAULT;
        match compression {
            LayerCompression::None => unpack_tar_reader(reader, &blob.path, &dir, true, limits)?,
            LayerCompression::Gzip => {
                unpack_tar_reader(GzDecoder::new(reader), &blob.path, &dir, true, limits)?
            }
            LayerCompression::Zstd => {
                let zstd = ZstdFrames::new(reader).map_err(|e| RootfsError::Oci {
                    path: blob.path.clone(),
                    message: format!("not a zstd stream: {e}"),
                })?;
                unpack_tar_reader(zstd, &blob.path, &dir, true, limits)?
            }
        }
        verifying.finish(&blob)?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Writes a minimal OCI image layout at `layout`: each layer blob (with its
/// media type), an empty config, the manifest and index.json, every
/// descriptor with its real sha256 and size. For tests and fixtures.
pub fn write_oci_layout(layout: &Path, layers: &[(&str, &[u8])]) -> io::Result<()> {
    use sha2::Digest;
    let blobs = layout.join("blobs/sha256");
    fs::create_dir_all(&blobs)?;
    let put = |media_type: &str, bytes: &[u8]| -> io::Result<serde_json::Value> {
        let hex = hex(&sha2::Sha256::digest(bytes));
        fs::write(blobs.join(&hex), bytes)?;
        Ok(serde_json::json!({
            "mediaType": media_type,
            "digest": format!("sha256:{hex}"),
            "size": bytes.len(),
        }))
    };
    let config = put("application/vnd.oci.image.config.v1+json", b"{}")?;
    let layers = layers
        .iter()
        .map(|(media_type, bytes)| put(media_type, bytes))
        .collect::<io::Result<Vec<_>>>()?;
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": layers,
    });
    let manifest = put(
        "application/vnd.oci.image.manifest.v1+json",
        manifest.to_string().as_bytes(),
    )?;
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [manifest]});
    fs::write(layout.join("index.json"), index.to_string())
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
    use tempfile::TempDir;

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
        /// Mode and modification time of the outside dir and its sentinel
        /// (a chmod or utime through a symlink would change them).
        fn outside_stat(&self) -> Vec<(u32, i64, i64)> {
            use std::os::unix::fs::MetadataExt;
            ["outside", "outside/sentinel"]
                .iter()
                .map(|p| {
                    let m = fs::metadata(self.dir.path().join(p)).expect("stat");
                    (m.mode(), m.mtime(), m.mtime_nsec())
                })
                .collect()
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

    /// An archive puts a symlink to the outside dir (`l`) and to the
    /// sentinel (`f`), then a second entry at or through it. Absolute
    /// symlinks are fine in an image (they resolve inside the container)
    /// but are never followed while unpacking.
    #[rstest::rstest]
    #[case::file_through_a_symlink(
        "l/evil",
        EntryType::Regular,
        "",
        Some("would be written through the symlink")
    )]
    #[case::dir_over_a_symlink(
        "l",
        EntryType::Directory,
        "",
        Some("would be written through the symlink")
    )]
    #[case::file_over_a_symlink("l", EntryType::Regular, "", None)]
    #[case::file_over_a_symlink_to_a_file("f", EntryType::Regular, "", None)]
    #[case::fifo_over_a_symlink("l", EntryType::Fifo, "", None)]
    #[case::symlink_over_a_symlink("f", EntryType::Symlink, "elsewhere", None)]
    #[case::hard_link_through_a_symlink(
        "h",
        EntryType::Link,
        "l/sentinel",
        Some("hard link target l/sentinel goes through the symlink")
    )]
    #[case::hard_link_to_a_symlink(
        "h",
        EntryType::Link,
        "f",
        Some("hard link target f is a symlink")
    )]
    #[case::whiteout_through_a_symlink(
        "l/.wh.sentinel",
        EntryType::Regular,
        "",
        Some("would be written through the symlink")
    )]
    #[case::opaque_through_a_symlink(
        "l/.wh..wh..opq",
        EntryType::Regular,
        "",
        Some("would be written through the symlink")
    )]
    fn an_entry_at_or_through_a_symlink_never_reaches_outside(
        #[case] name: &str,
        #[case] kind: EntryType,
        #[case] link: &str,
        #[case] refused: Option<&str>,
    ) {
        let s = Sandbox::new();
        let outside = s.dir.path().join("outside");
        let before = s.outside_stat();
        let bytes = archive(|ar| {
            raw(
                ar,
                "l",
                EntryType::Symlink,
                outside.to_str().expect("utf8"),
                b"",
            );
            let sentinel = outside.join("sentinel");
            raw(
                ar,
                "f",
                EntryType::Symlink,
                sentinel.to_str().expect("utf8"),
                b"",
            );
            raw(ar, name, kind, link, b"");
        });
        // As a plain archive and as an OCI layer (whiteouts interpreted).
        for layer in [false, true] {
            let dest = s.dest().join(format!("{layer}"));
            fs::create_dir(&dest).expect("dest");
            let got = unpack_tar_reader(
                &bytes[..],
                Path::new("test.tar"),
                &dest,
                layer,
                &UnpackLimits::DEFAULT,
            );
            match (refused, got) {
                (Some(why), Err(e)) => assert!(e.to_string().contains(why), "{e}"),
                (None, Ok(())) => {
                    let m = fs::symlink_metadata(dest.join(name)).expect("unpacked");
                    assert_eq!(m.file_type().is_symlink(), kind == EntryType::Symlink);
                }
                (_, Err(e)) if name.contains(".wh.") && !layer => {
                    panic!("a plain archive takes .wh. names as files: {e}")
                }
                (want, got) => panic!("{name}: wanted {want:?}, got {got:?}"),
            }
            assert!(s.untouched(), "{name}: {:?}", s.outside_entries());
            assert_eq!(s.outside_stat(), before, "{name}: mode or times changed");
        }
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

    const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
    const TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    const TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes).expect("compress");
        gz.finish().expect("finish")
    }

    fn zstd(bytes: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn one_file(name: &str, data: &[u8]) -> Vec<u8> {
        archive(|ar| raw(ar, name, EntryType::Regular, "", data))
    }

    /// The blob file of the `n`th layer of the layout's manifest, and its
    /// digest.
    fn layer_blob(layout: &Path, n: usize) -> (PathBuf, String) {
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index"))
                .expect("json");
        let digest = |d: &serde_json::Value| d["digest"].as_str().expect("digest").to_owned();
        let path = |d: &str| layout.join("blobs").join(d.replace(':', "/"));
        let manifest: serde_json::Value = serde_json::from_slice(
            &fs::read(path(&digest(&index["manifests"][0]))).expect("manifest"),
        )
        .expect("json");
        let d = digest(&manifest["layers"][n]);
        (path(&d), d)
    }

    #[test]
    fn oci_layout_layers_unpack_in_order() {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        let l0 = one_file("etc/os", b"base");
        let l1 = gzip(&one_file("etc/app", b"app"));
        let l2 = zstd(&one_file("etc/extra", b"zstd"));
        write_oci_layout(&layout, &[(TAR, &l0), (TAR_GZIP, &l1), (TAR_ZSTD, &l2)]).expect("layout");
        let dirs = unpack_oci_layout(&layout, &s.dest().join("layers")).expect("unpacks");
        assert_eq!(dirs.len(), 3);
        assert_eq!(fs::read(dirs[0].join("etc/os")).expect("l0"), b"base");
        assert_eq!(fs::read(dirs[1].join("etc/app")).expect("l1"), b"app");
        assert_eq!(fs::read(dirs[2].join("etc/extra")).expect("l2"), b"zstd");

        fs::write(
            layout.join("index.json"),
            r#"{"manifests":[{"digest":"sha256:../../x","size":1}]}"#,
        )
        .expect("index");
        let err = unpack_oci_layout(&layout, &s.dest().join("layers2")).expect_err("bad digest");
        assert!(err.to_string().contains("is not algo:hex"), "{err}");
    }

    #[test]
    fn a_zstd_layer_of_several_frames_unpacks() {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        let tar = archive(|ar| {
            raw(ar, "a", EntryType::Regular, "", &[b'a'; 3000]);
            raw(ar, "b", EntryType::Regular, "", b"bee");
        });
        // zstd(1) on concatenated input: one frame after another.
        let mut frames = zstd(&tar[..1536]);
        frames.extend(zstd(&tar[1536..]));
        write_oci_layout(&layout, &[(TAR_ZSTD, &frames)]).expect("layout");
        let dirs = unpack_oci_layout(&layout, &s.dest().join("layers")).expect("unpacks");
        assert_eq!(fs::read(dirs[0].join("a")).expect("a"), vec![b'a'; 3000]);
        assert_eq!(fs::read(dirs[0].join("b")).expect("b"), b"bee");
    }

    #[rstest::rstest]
    #[case::plain(TAR)]
    #[case::gzip(TAR_GZIP)]
    #[case::zstd(TAR_ZSTD)]
    fn a_tampered_layer_is_refused_naming_digest_and_file(#[case] media_type: &str) {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        let tar = one_file("etc/os", b"genuine");
        let blob = match media_type {
            TAR_GZIP => gzip(&tar),
            TAR_ZSTD => zstd(&tar),
            _ => tar,
        };
        write_oci_layout(&layout, &[(media_type, &blob)]).expect("layout");
        let (file, digest) = layer_blob(&layout, 0);
        let mut bytes = fs::read(&file).expect("blob");
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x01;
        fs::write(&file, &bytes).expect("tamper");
        let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("tampered");
        let msg = err.to_string();
        assert!(
            matches!(&err, RootfsError::BlobMismatch(m) if m.what == "digest"),
            "{msg}"
        );
        assert!(msg.contains(&digest), "names the digest: {msg}");
        assert!(
            msg.contains(&file.display().to_string()),
            "names the file: {msg}"
        );
        assert!(
            !s.dest().join("layers/0/etc/os").exists(),
            "nothing unpacked from it"
        );
    }

    #[test]
    fn a_layer_of_the_wrong_size_is_refused() {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        write_oci_layout(&layout, &[(TAR, &one_file("f", b"x"))]).expect("layout");
        let (file, digest) = layer_blob(&layout, 0);
        let mut bytes = fs::read(&file).expect("blob");
        bytes.extend_from_slice(&[0u8; 512]);
        fs::write(&file, &bytes).expect("grow");
        let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("size");
        assert_eq!(
            err.to_string(),
            format!(
                "OCI blob {} does not match its descriptor {digest}: size is {}, not {}",
                file.display(),
                bytes.len(),
                bytes.len() - 512
            )
        );
    }

    #[rstest::rstest]
    #[case::manifest("manifests")]
    #[case::config("config")]
    fn a_tampered_manifest_or_config_is_refused(#[case] which: &str) {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        write_oci_layout(&layout, &[(TAR, &one_file("f", b"x"))]).expect("layout");
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index"))
                .expect("json");
        let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest");
        let blob_of = |d: &str| layout.join("blobs").join(d.replace(':', "/"));
        let digest = if which == "config" {
            let manifest: serde_json::Value =
                serde_json::from_slice(&fs::read(blob_of(manifest_digest)).expect("manifest"))
                    .expect("json");
            manifest["config"]["digest"]
                .as_str()
                .expect("digest")
                .to_owned()
        } else {
            manifest_digest.to_owned()
        };
        // Same size, other content: only the digest can tell.
        let file = blob_of(&digest);
        let mut bytes = fs::read(&file).expect("blob");
        bytes[0] = if bytes[0] == b' ' { b'\n' } else { b' ' };
        fs::write(&file, &bytes).expect("tamper");
        let err = unpack_oci_layout(&layout, &s.dest().join("layers")).expect_err("tampered");
        let msg = err.to_string();
        assert!(msg.contains(&digest), "{msg}");
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }

    #[test]
    fn descriptors_need_a_size_and_a_known_algorithm() {
        let s = Sandbox::new();
        let layout = s.dir.path().join("oci");
        fs::create_dir_all(&layout).expect("layout");
        let sha = "a".repeat(64);
        for (index, want) in [
            (
                format!(r#"{{"manifests":[{{"digest":"sha256:{sha}"}}]}}"#),
                "missing field `size`".to_owned(),
            ),
            (
                format!(r#"{{"manifests":[{{"digest":"md5:{sha}","size":1}}]}}"#),
                "algorithm md5 is not sha256 or sha512".to_owned(),
            ),
            (
                r#"{"manifests":[{"digest":"sha256:ABCD","size":1}]}"#.to_owned(),
                "is not 64 lowercase hex digits".to_owned(),
            ),
        ] {
            fs::write(layout.join("index.json"), index).expect("index");
            let err = unpack_oci_layout(&layout, &s.dest().join("l")).expect_err("refused");
            assert!(err.to_string().contains(&want), "{err}");
        }
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

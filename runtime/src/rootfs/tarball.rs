//! Unpacking a tar or tar.gz safely: nothing it names may land outside the
//! destination (no absolute or `..` names, no write through a symlink, no
//! hard link to outside), with size and entry limits, and OCI whiteouts.

use super::*;

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
pub(super) fn unsafe_name(path: &Path) -> Option<&'static str> {
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
pub(super) fn symlink_escapes(link: &Path, target: &Path) -> bool {
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
pub(super) fn ancestor_is_symlink(dest: &Path, rel: &Path) -> Option<PathBuf> {
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

pub(super) fn is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// Why a hard link's source is refused, if it is: reached through a
/// symlink, or a symlink itself (either could name a file outside `dest`).
pub(super) fn hard_link_source_refused<R: Read>(
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

pub(super) const WHITEOUT_PREFIX: &str = ".wh.";
pub(super) const OPAQUE_MARKER: &str = ".wh..wh..opq";

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
pub(super) fn make_whiteout(target: &Path) -> Result<(), RootfsError> {
    use nix::sys::stat::{mknod, Mode, SFlag};
    let _ = fs::remove_file(target);
    mknod(target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| RootfsError::Io {
        step: "mknod whiteout",
        path: target.to_path_buf(),
        source: e.into(),
    })
}

/// trusted.overlay.opaque=y: the directory hides what the lower layers had.
pub(super) fn mark_opaque(dir: &Path) -> Result<(), RootfsError> {
    let c = c_path(dir)?;
    crate::sys::set_xattr(&c, c"trusted.overlay.opaque", b"y").map_err(|e| RootfsError::Io {
        step: "set opaque xattr on",
        path: dir.to_path_buf(),
        source: e.into(),
    })
}

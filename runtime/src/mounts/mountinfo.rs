//! Reading /proc/self/mountinfo: in the child without allocating (lines of
//! a scratch buffer, octal escapes decoded in place), and in the parent to
//! detach what a control without rslave let propagate.

use super::*;

/// The mountinfo lines whose mount id is one of `ids`.
pub(super) fn mounts_among<'a>(
    info: &'a [u8],
    ids: &'a [u64],
) -> impl Iterator<Item = MountLine<'a>> + 'a {
    info.split(|&b| b == b'\n')
        .filter_map(MountLine::parse)
        .filter(move |m| ids.contains(&m.id))
}

/// One line of /proc/self/mountinfo, borrowed.
#[derive(Debug, PartialEq, Eq)]
pub struct MountLine<'a> {
    pub id: u64,
    pub parent: u64,
    /// Still octal-escaped as the kernel prints it.
    pub mount_point: &'a [u8],
    /// Per-mount options (rw/ro, nosuid...).
    pub options: &'a [u8],
}

impl<'a> MountLine<'a> {
    pub fn parse(line: &'a [u8]) -> Option<MountLine<'a>> {
        let mut fields = line.split(|&b| b == b' ');
        let id = ascii_u64(fields.next()?)?;
        let parent = ascii_u64(fields.next()?)?;
        let _devno = fields.next()?;
        let _root = fields.next()?;
        let mount_point = fields.next()?;
        let options = fields.next()?;
        Some(MountLine {
            id,
            parent,
            mount_point,
            options,
        })
    }
}

pub(super) fn ascii_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// The bytes of a mountinfo field with its octal escapes (\040 for
/// space...) undone.
fn unescaped(field: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *field.get(i)?;
        if b == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0');
            i += 4;
            Some(v)
        } else {
            i += 1;
            Some(b)
        }
    })
}

/// Undoes mountinfo's octal escapes into a C string.
pub(super) fn unescape<'b>(field: &[u8], buf: &'b mut [u8; PATH_MAX]) -> Option<&'b CStr> {
    let mut n = 0;
    for b in unescaped(field) {
        if n + 1 >= PATH_MAX {
            return None;
        }
        buf[n] = b;
        n += 1;
    }
    buf[n] = 0;
    CStr::from_bytes_with_nul(&buf[..=n]).ok()
}

/// The ids of the mount on top at `target` and of every mount below it
/// (children by parent id). ENOENT when nothing is mounted at `target`.
pub fn subtree_ids(
    info: &[u8],
    target: &[u8],
    ids: &mut [u64; SUBTREE_MAX],
) -> Result<usize, Errno> {
    let mut top = None;
    for line in info.split(|&b| b == b'\n') {
        let Some(m) = MountLine::parse(line) else {
            continue;
        };
        // Compared as decoded, without a copy: this runs for every line.
        if unescaped(m.mount_point).eq(target.iter().copied()) {
            // Later lines are mounted over earlier ones at the same place.
            top = Some(m.id);
        }
    }
    let top = top.ok_or(Errno::ENOENT)?;
    ids[0] = top;
    let mut n = 1;
    // Children may be listed before a re-parented parent; repeat until stable.
    loop {
        let before = n;
        for line in info.split(|&b| b == b'\n') {
            let Some(m) = MountLine::parse(line) else {
                continue;
            };
            if ids[..n].contains(&m.parent) && !ids[..n].contains(&m.id) {
                if n == SUBTREE_MAX {
                    return Err(Errno::ENOBUFS);
                }
                ids[n] = m.id;
                n += 1;
            }
        }
        if n == before {
            return Ok(n);
        }
    }
}

/// The mount points at or below `dir` in a mountinfo text, unescaped, in
/// the order listed (a path mounted over twice is listed twice). What a
/// container built without rslave leaves in the namespace it was cloned
/// from; the harness counts them, [`detach_all_under`] removes them.
pub fn mount_points_under(info: &[u8], dir: &Path) -> Vec<CString> {
    let prefix = dir.as_os_str().as_bytes();
    let prefix = match prefix {
        [rest @ .., b'/'] if !rest.is_empty() => rest,
        p => p,
    };
    info.split(|&b| b == b'\n')
        .filter_map(MountLine::parse)
        .filter_map(|m| {
            let mut buf = [0u8; PATH_MAX];
            let p = unescape(m.mount_point, &mut buf)?.to_owned();
            let b = p.to_bytes();
            let under = b.starts_with(prefix)
                && (b.len() == prefix.len()
                    || b.get(prefix.len()) == Some(&b'/')
                    || prefix == b"/");
            under.then_some(p)
        })
        .collect()
}

/// Detaches every mount at or below `dir` in the caller's mount namespace,
/// deepest first (parent side: allocates).
pub fn detach_all_under(dir: &Path) -> std::io::Result<()> {
    // thread-self: the namespace umount2 acts on is this thread's, which
    // differs from the leader's (/proc/self) after a per-thread unshare.
    let info = std::fs::read("/proc/thread-self/mountinfo")?;
    let mut points = mount_points_under(&info, dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_bytes().len()));
    points.dedup();
    // Keeps going past a failure (one stuck mount must not leave the rest),
    // then reports the first.
    let mut first = None;
    for p in points {
        match nix::mount::umount2(p.as_c_str(), MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => {
                first.get_or_insert_with(|| {
                    std::io::Error::other(format!("detach {}: {e}", p.to_string_lossy()))
                });
            }
        }
    }
    first.map_or(Ok(()), Err)
}

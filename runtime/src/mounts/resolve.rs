//! Resolving a target inside the new root: openat2(RESOLVE_IN_ROOT) from an fd of
//! the root, missing parts made relative to the resolved parent, and the mount
//! going onto the resolved fd through its /proc/self/fd path.

use super::*;

/// The new root, open. Every target below it is resolved from this fd,
/// never by joining strings: an image's symlink (`/proc -> /etc`,
/// `/dev -> ../../../host`, `/a -> /` under a bind at `/a/b`) is resolved
/// as the container will see it, inside the root, while the host's `/` is
/// still reachable from here.
pub(super) struct Root<'p, F> {
    pub(super) fd: F,
    /// For messages only (the run's temp dir, chosen by the parent).
    pub(super) path: &'p CStr,
}

/// What a resolved target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leaf {
    /// A directory, created with its parents when missing.
    Dir,
    /// A file to bind a non-directory onto, created empty (its parents as
    /// directories) when missing.
    File,
    /// Whatever is there (what a fresh proc or tmpfs provides); missing is
    /// ENOENT.
    Existing,
}

/// Opens the new root once the image is on it (the fd must be the image's
/// root, not the empty directory under it).
pub(super) fn open_root<'p, S: Syscalls>(
    sys: &mut S,
    plan: &'p RootPlan,
) -> Result<Root<'p, S::Fd>, StepFailure> {
    let path = plan.new_root.as_c_str();
    let fd = sys
        .open_dir(path)
        .map_err(|e| fail(Step::OpenNewRoot, e, path))?;
    Ok(Root { fd, path })
}

impl<F> Root<'_, F> {
    /// A failure naming `rel` (absolute inside the container) under the
    /// root's path.
    pub(super) fn fail(&self, step: Step, errno: Errno, rel: &[u8]) -> StepFailure {
        let mut buf = [0u8; PATH_MAX];
        match join(&mut buf, self.path, rel) {
            Ok(p) => fail(step, errno, p),
            Err(too_long) => too_long,
        }
    }
}

/// `bytes` as a C string in `buf`.
pub(super) fn c_in<'a>(buf: &'a mut [u8; PATH_MAX], bytes: &[u8]) -> Result<&'a CStr, StepFailure> {
    if bytes.len() + 1 > PATH_MAX {
        return Err(StepFailure::new(
            Step::PathTooLong,
            Errno::ENAMETOOLONG,
            bytes,
        ));
    }
    buf[..bytes.len()].copy_from_slice(bytes);
    buf[bytes.len()] = 0;
    CStr::from_bytes_with_nul(&buf[..=bytes.len()])
        .map_err(|_| StepFailure::new(Step::PathTooLong, Errno::EINVAL, bytes))
}

/// Resolves `rel` (absolute inside the container) in the root with
/// openat2(RESOLVE_IN_ROOT), creating what is missing (per `leaf`) one
/// component at a time with mkdirat relative to the resolved parent, so
/// nothing is ever created outside the root. An entry that exists but does
/// not resolve (a dangling symlink) is refused, not created through.
pub(super) fn resolve<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    leaf: Leaf,
    step: Step,
) -> Result<S::Fd, StepFailure> {
    let mut buf = [0u8; PATH_MAX];
    let full = c_in(&mut buf, rel)?;
    match sys.open_in_root(&root.fd, full, leaf == Leaf::Dir) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) if leaf != Leaf::Existing => {}
        Err(e) => return Err(root.fail(step, e, rel)),
    }
    let mut parent: Option<S::Fd> = None;
    let mut start = 0;
    while start < rel.len() {
        let end = rel[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(rel.len(), |i| start + i);
        let name = &rel[start..end];
        start = end + 1;
        if name.is_empty() || name == b"." {
            continue;
        }
        let last = rel[end..].iter().all(|&b| b == b'/');
        let dir = !last || leaf == Leaf::Dir;
        let prefix = &rel[..end];
        // The whole path did not resolve just above: its last part is made
        // without being tried again (unless `..`, which the walk may just
        // have made resolvable).
        let opened = if last && name != b".." {
            Err(Errno::ENOENT)
        } else {
            sys.open_in_root(&root.fd, c_in(&mut buf, prefix)?, dir)
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let at = parent.as_ref().unwrap_or(&root.fd);
                let mut name_buf = [0u8; PATH_MAX];
                let name = c_in(&mut name_buf, name)?;
                match make(sys, at, name, dir) {
                    Ok(()) => {}
                    // There, yet it did not resolve: a dangling symlink.
                    Err(Errno::EEXIST) => return Err(root.fail(step, Errno::ENOENT, prefix)),
                    Err(e) => return Err(root.fail(step, e, prefix)),
                }
                sys.open_in_root(&root.fd, c_in(&mut buf, prefix)?, dir)
                    .map_err(|e| root.fail(step, e, prefix))?
            }
            Err(e) => return Err(root.fail(step, e, prefix)),
        };
        parent = Some(fd);
    }
    parent.ok_or_else(|| root.fail(step, Errno::ENOENT, rel))
}

/// An empty directory or file `name` in `dir`.
fn make<S: Syscalls>(sys: &mut S, dir: &S::Fd, name: &CStr, is_dir: bool) -> Result<(), Errno> {
    if is_dir {
        sys.mkdirat(dir, name, 0o755)
    } else {
        sys.create_file_at(dir, name, 0o644)
    }
}

/// `name` made in `dir` and opened there, ready to mount on. Only for a
/// directory of a tmpfs we just mounted (/dev): it is empty, so nothing in
/// it can be there already or be a link, and the root need not be walked
/// again for each entry. `rel` names it in errors.
pub(super) fn make_in<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    dir: &S::Fd,
    name: &CStr,
    rel: &[u8],
    leaf: Leaf,
    step: Step,
) -> Result<Target<S::Fd>, StepFailure> {
    let is_dir = leaf == Leaf::Dir;
    make(sys, dir, name, is_dir).map_err(|e| root.fail(step, e, rel))?;
    sys.open_in_root(dir, name, is_dir)
        .map(Target::new)
        .map_err(|e| root.fail(step, e, rel))
}

/// A resolved target and the /proc/self/fd path the syscalls act through
/// (the fd must stay open while the path is used).
pub(super) struct Target<F> {
    _fd: F,
    via: ProcFdPath,
}

impl<F: AsRawFd> Target<F> {
    pub(super) fn new(fd: F) -> Target<F> {
        let via = ProcFdPath::new(fd.as_raw_fd());
        Target { _fd: fd, via }
    }

    pub(super) fn at(&self) -> &CStr {
        self.via.as_c_str()
    }
}

/// [`resolve`], ready to mount on.
pub(super) fn target<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    leaf: Leaf,
    step: Step,
) -> Result<Target<S::Fd>, StepFailure> {
    resolve(sys, root, rel, leaf, step).map(Target::new)
}

/// The mount now on top at `rel`: where the syscalls reach it and how
/// mountinfo names it (for the read-only remount and its read-back).
pub(super) struct Mounted<F> {
    pub(super) target: Target<F>,
    point: [u8; PATH_MAX],
}

impl<F> Mounted<F> {
    pub(super) fn point(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.point).unwrap_or(c"")
    }
}

pub(super) fn mounted<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    step: Step,
) -> Result<Mounted<S::Fd>, StepFailure> {
    let target = target(sys, root, rel, Leaf::Existing, step)?;
    mounted_on(sys, root, target, rel, step)
}

/// The mount just made on `target`, which was resolved before it: its fd
/// still reaches what is under the new mount, but its path is the one
/// mountinfo shows the new mount at (enough for a read-back, not for a
/// remount).
pub(super) fn mounted_on<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    target: Target<S::Fd>,
    rel: &[u8],
    step: Step,
) -> Result<Mounted<S::Fd>, StepFailure> {
    let mut point = [0u8; PATH_MAX];
    sys.fd_path(&target._fd, &mut point)
        .map_err(|e| root.fail(step, e, rel))?;
    Ok(Mounted { target, point })
}

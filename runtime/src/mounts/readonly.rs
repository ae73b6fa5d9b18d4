//! The spec's binds and read-only mounts: recursive binds, read-only
//! remounts (recursive with mount_setattr, each submount on older kernels),
//! and the read-back from mountinfo that proves it.

use super::*;

/// One bind from the spec: the target resolved in the root and created
/// there (in the overlay's upper layer) if the image lacks it, the source
/// bound with its submounts, and a read-only bind made read-only through
/// and through.
pub(super) fn mount_bind<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    bind: &PlannedBind,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let dest = bind.destination.to_bytes();
    let leaf = if bind.source_is_dir {
        Leaf::Dir
    } else {
        Leaf::File
    };
    let at = target(sys, root, dest, leaf, Step::CreateMountTarget)?;
    // MS_REC carries the source's submounts: a mount the host put over a
    // directory of the source keeps hiding it inside.
    let mut flags = MsFlags::MS_BIND;
    if plan.hardening.recursive_binds {
        flags |= MsFlags::MS_REC;
    }
    sys.mount(Some(&bind.source), at.at(), None, flags, None)
        .map_err(|e| root.fail(Step::BindMount, e, dest))?;
    if bind.readonly {
        let step = Step::RemountReadonly;
        let m = mounted(sys, root, dest, step)?;
        if plan.hardening.recursive_readonly {
            make_readonly_recursive(sys, &m, scratch)?;
        } else {
            make_readonly_top_only(sys, &m, scratch)?;
        }
    }
    Ok(())
}

/// Read-only for the mount at `target` and every mount below it, then
/// read back.
pub(super) fn make_readonly_recursive<S: Syscalls>(
    sys: &mut S,
    m: &Mounted<S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    set_readonly_recursive(sys, m, scratch)?;
    verify_readonly(sys, m.point(), scratch)
}

/// Read-only for the mount at `target` and every mount below it, not yet
/// read back. A plain MS_BIND|MS_RDONLY is ignored, and a remount reaches
/// one mount only, so: mount_setattr(AT_RECURSIVE) where the kernel has it
/// (5.12+), else a remount of each mount found in mountinfo.
pub(super) fn set_readonly_recursive<S: Syscalls>(
    sys: &mut S,
    m: &Mounted<S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    match sys.mount_setattr_readonly_recursive(m.target.at()) {
        Ok(()) => Ok(()),
        Err(Errno::ENOSYS) => remount_each_readonly(sys, m.point(), scratch),
        Err(e) => Err(fail(Step::RemountReadonly, e, m.point())),
    }
}

/// Switched off (a control): the mount at `target` alone is made read-only;
/// its submounts stay writable.
pub(super) fn make_readonly_top_only<S: Syscalls>(
    sys: &mut S,
    m: &Mounted<S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    remount_readonly(sys, m.target.at(), m.point())?;
    let mut ids = [0u64; SUBTREE_MAX];
    let (info, n) = read_subtree(sys, m.point(), scratch, &mut ids, Step::VerifyReadonly)?;
    check_readonly(mounts_among(info, &ids[..n.min(1)]))
}

pub(super) fn remount_each_readonly<S: Syscalls>(
    sys: &mut S,
    target: &CStr,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let mut ids = [0u64; SUBTREE_MAX];
    let (info, n) = read_subtree(sys, target, scratch, &mut ids, Step::RemountReadonly)?;
    for m in mounts_among(info, &ids[..n]) {
        let mut buf = [0u8; PATH_MAX];
        let path = unescape(m.mount_point, &mut buf)
            .ok_or_else(|| fail(Step::RemountReadonly, Errno::ENAMETOOLONG, target))?;
        remount_readonly(sys, path, path)?;
    }
    Ok(())
}

/// One mount made read-only by a bind remount (`shown` names it in errors).
pub(super) fn remount_readonly<S: Syscalls>(
    sys: &mut S,
    path: &CStr,
    shown: &CStr,
) -> Result<(), StepFailure> {
    // A remount must repeat the flags it keeps (nosuid, nodev...), and in a
    // user namespace the kernel refuses to clear locked ones.
    let keep = sys
        .mount_flags(path)
        .map_err(|e| fail(Step::RemountReadonly, e, shown))?;
    sys.mount(
        None,
        path,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None,
    )
    .map_err(|e| fail(Step::RemountReadonly, e, shown))
}

/// Reads mountinfo back: the mount on top at `target` and everything below
/// it must be `ro`. errno 0 in the failure means "the check failed".
pub(super) fn verify_readonly<S: Syscalls>(
    sys: &mut S,
    target: &CStr,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let info = read_mounts(sys, scratch)?;
    check_subtree_readonly(info, target.to_bytes())
}

/// Room for the mount points a [`ReadBack`] holds before it must read.
const READBACK_BYTES: usize = 2 * PATH_MAX;

/// Mounts made read-only whose read-back is put off so that one mountinfo
/// read proves them all: a read walks every mount of the namespace (the
/// host's copy too) and was most of the kernel paths' cost. Read back
/// before the masks, which put writable mounts below /proc.
pub(super) struct ReadBack {
    /// Mount points as mountinfo shows them, each NUL-terminated.
    points: [u8; READBACK_BYTES],
    len: usize,
}

impl ReadBack {
    pub(super) fn new() -> ReadBack {
        ReadBack {
            points: [0; READBACK_BYTES],
            len: 0,
        }
    }

    /// Queues the mount on top at `m` (made read-only through and
    /// through); when the queue is full, what it holds is read back first.
    pub(super) fn push<S: Syscalls>(
        &mut self,
        sys: &mut S,
        m: &Mounted<S::Fd>,
        scratch: &mut [u8],
    ) -> Result<(), StepFailure> {
        // Shorter than PATH_MAX (its buffer), so it fits an empty queue.
        let point = m.point().to_bytes_with_nul();
        if self.len + point.len() > READBACK_BYTES {
            self.verify(sys, scratch)?;
        }
        self.points[self.len..self.len + point.len()].copy_from_slice(point);
        self.len += point.len();
        Ok(())
    }

    /// One mountinfo read: each queued mount and every mount below it must
    /// be `ro` (a read that fails proves nothing and fails the step); the
    /// first that is not is named. Empties the queue.
    pub(super) fn verify<S: Syscalls>(
        &mut self,
        sys: &mut S,
        scratch: &mut [u8],
    ) -> Result<(), StepFailure> {
        if self.len == 0 {
            return Ok(());
        }
        let info = read_mounts(sys, scratch)?;
        let mut queued = &self.points[..self.len];
        while let Some(end) = queued.iter().position(|&b| b == 0) {
            check_subtree_readonly(info, &queued[..end])?;
            queued = &queued[end + 1..];
        }
        self.len = 0;
        Ok(())
    }
}

/// In a mountinfo text: the mount on top at `point` and every mount below
/// it are `ro`; nothing mounted there fails too.
fn check_subtree_readonly(info: &[u8], point: &[u8]) -> Result<(), StepFailure> {
    let mut ids = [0u64; SUBTREE_MAX];
    let n = subtree_ids(info, point, &mut ids)
        .map_err(|e| StepFailure::new(Step::VerifyReadonly, e, point))?;
    check_readonly(mounts_among(info, &ids[..n]))
}

/// Every one of `mounts` has `ro` among its options; errno 0 in the failure
/// means "the check failed".
pub(super) fn check_readonly<'a>(
    mounts: impl Iterator<Item = MountLine<'a>>,
) -> Result<(), StepFailure> {
    for m in mounts {
        if !m.options.split(|&b| b == b',').any(|o| o == b"ro") {
            return Err(StepFailure::new(
                Step::VerifyReadonly,
                Errno::UnknownErrno,
                m.mount_point,
            ));
        }
    }
    Ok(())
}

/// Reads mountinfo into `scratch` and fills `ids` with the mount on top at
/// `target` and every mount below it; returns the text and how many ids.
pub(super) fn read_subtree<'b, S: Syscalls>(
    sys: &mut S,
    target: &CStr,
    scratch: &'b mut [u8],
    ids: &mut [u64; SUBTREE_MAX],
    step: Step,
) -> Result<(&'b [u8], usize), StepFailure> {
    let info = read_mounts(sys, scratch)?;
    let n = subtree_ids(info, target.to_bytes(), ids).map_err(|e| fail(step, e, target))?;
    Ok((info, n))
}

/// /proc/self/mountinfo, whole, in `scratch`.
fn read_mounts<'b, S: Syscalls>(
    sys: &mut S,
    scratch: &'b mut [u8],
) -> Result<&'b [u8], StepFailure> {
    sys.read_mountinfo(scratch)
        .map_err(|e| fail(Step::ReadMountinfo, e, c"/proc/self/mountinfo"))
}

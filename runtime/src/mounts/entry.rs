//! Entering the new root: pivot_root and detaching the old root, or chroot
//! (controls and specs without pivot_root).

use super::*;

/// pivot_root into the new root and detach the old one, so no path leads
/// back to the host's tree (chroot alone is escapable). ChrootOnly exists
/// for the control that shows exactly that.
pub(super) fn enter_root<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    new_root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    let root = plan.new_root.as_c_str();
    match plan.entry {
        RootEntry::PivotRoot => {
            let put_old = target(
                sys,
                new_root,
                PUT_OLD.as_bytes(),
                Leaf::Dir,
                Step::PivotRoot,
            )?;
            sys.pivot_root(root, put_old.at())
                .map_err(|e| fail(Step::PivotRoot, e, root))?;
            // Switched off only in a control: the host's whole tree then
            // stays reachable under PUT_OLD.
            if plan.hardening.detach_old_root {
                let mut old_buf = [0u8; 64];
                let old = join_small_path(&mut old_buf, PUT_OLD.as_bytes());
                sys.umount2(old, MntFlags::MNT_DETACH)
                    .map_err(|e| fail(Step::DetachOldRoot, e, old))?;
                sys.rmdir(old)
                    .map_err(|e| fail(Step::RemoveOldRoot, e, old))?;
            }
            sys.chdir(c"/").map_err(|e| fail(Step::Chdir, e, c"/"))
        }
        RootEntry::ChrootOnly => {
            sys.chroot(root).map_err(|e| fail(Step::Chroot, e, root))?;
            sys.chdir(c"/").map_err(|e| fail(Step::Chdir, e, c"/"))
        }
    }
}

pub(super) fn join_small_path<'a>(buf: &'a mut [u8; 64], p: &[u8]) -> &'a CStr {
    let n = p.len().min(63);
    buf[..n].copy_from_slice(&p[..n]);
    buf[n] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/")
}

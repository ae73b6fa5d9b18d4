//! The system mounts: a minimal /dev, /proc with /proc/sys and the spec's
//! read-only paths bound read-only and its masked paths covered, /sys, /tmp,
//! and the host's cgroupfs kept out.

use super::*;

pub(super) const DEV_NODES: [&[u8]; 6] = [b"null", b"zero", b"full", b"random", b"urandom", b"tty"];

/// A tmpfs /dev with the host's harmless nodes bound in (mknod is not
/// allowed in a user namespace; a bind is), a private devpts and /dev/shm.
pub(super) fn mount_dev<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    let dev = target(sys, root, b"/dev", Leaf::Dir, Step::MountDevTmpfs)?;
    sys.mount(
        Some(c"tmpfs"),
        dev.at(),
        Some(c"tmpfs"),
        nosuid(plan) | noexec(plan) | MsFlags::MS_STRICTATIME | nodev(plan),
        Some(c"mode=755,size=65536k"),
    )
    .map_err(|e| root.fail(Step::MountDevTmpfs, e, b"/dev"))?;

    for node in DEV_NODES {
        let mut host = [0u8; 32];
        let host = join_small(&mut host, b"/dev/", node);
        let mut rel = [0u8; 32];
        let rel = join_small(&mut rel, b"/dev/", node).to_bytes();
        let node = target(sys, root, rel, Leaf::File, Step::BindDevNode)?;
        sys.mount(Some(host), node.at(), None, MsFlags::MS_BIND, None)
            .map_err(|e| root.fail(Step::BindDevNode, e, rel))?;
    }

    let pts = target(sys, root, b"/dev/pts", Leaf::Dir, Step::MountDevPts)?;
    sys.mount(
        Some(c"devpts"),
        pts.at(),
        Some(c"devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(|e| root.fail(Step::MountDevPts, e, b"/dev/pts"))?;

    let shm = target(sys, root, b"/dev/shm", Leaf::Dir, Step::MountDevShm)?;
    sys.mount(
        Some(c"shm"),
        shm.at(),
        Some(c"tmpfs"),
        nosuid(plan) | noexec(plan) | nodev(plan),
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(|e| root.fail(Step::MountDevShm, e, b"/dev/shm"))?;

    // In the tmpfs now on top at /dev (the fd above is the directory under it).
    let dev = resolve(sys, root, b"/dev", Leaf::Existing, Step::DevSymlink)?;
    for (target, name, rel) in [
        (c"pts/ptmx", c"ptmx", &b"/dev/ptmx"[..]),
        (c"/proc/self/fd", c"fd", b"/dev/fd"),
        (c"/proc/self/fd/0", c"stdin", b"/dev/stdin"),
        (c"/proc/self/fd/1", c"stdout", b"/dev/stdout"),
        (c"/proc/self/fd/2", c"stderr", b"/dev/stderr"),
    ] {
        sys.symlinkat(target, &dev, name)
            .map_err(|e| root.fail(Step::DevSymlink, e, rel))?;
    }
    Ok(())
}

/// Joins two short byte strings into a C string (for /dev/<node>).
pub(super) fn join_small<'a>(buf: &'a mut [u8; 32], a: &[u8], b: &[u8]) -> &'a CStr {
    let n = (a.len() + b.len()).min(31);
    let a_len = a.len().min(n);
    buf[..a_len].copy_from_slice(&a[..a_len]);
    buf[a_len..n].copy_from_slice(&b[..n - a_len]);
    buf[n] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"")
}

/// A fresh procfs (it shows the container's pid namespace), /proc/sys
/// read-only, and the two files that act on the host masked.
pub(super) fn mount_proc<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let proc_ = target(sys, root, b"/proc", Leaf::Dir, Step::MountProc)?;
    sys.mount(
        Some(c"proc"),
        proc_.at(),
        Some(c"proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
    .map_err(|e| root.fail(Step::MountProc, e, b"/proc"))?;

    if plan.kernel_files.proc_sys_readonly {
        bind_in_place_readonly(sys, root, b"/proc/sys", Step::ProcSysReadonly, scratch)?;
    }
    Ok(())
}

/// The spec's read-only paths (/proc/bus, /proc/fs, /proc/irq,
/// /proc/sysrq-trigger by default), each bound onto itself and made
/// read-only with everything below it, then read back. A path this kernel
/// lacks is skipped. Before the masks, so a path in both lists ends masked.
pub(super) fn readonly_kernel_paths<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    if !plan.kernel_files.readonly_paths {
        return Ok(());
    }
    for path in &plan.readonly_paths {
        match bind_in_place_readonly(sys, root, path.to_bytes(), Step::ReadonlyPath, scratch) {
            Err(f) if f.step == Step::ReadonlyPath && f.errno == Errno::ENOENT as i32 => {}
            other => other?,
        }
    }
    Ok(())
}

/// `rel` (resolved in the root) bound onto itself with its submounts, then
/// made read-only through and through and read back. A failing step is
/// `step`.
pub(super) fn bind_in_place_readonly<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    step: Step,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let at = target(sys, root, rel, Leaf::Existing, step)?;
    sys.mount(
        Some(at.at()),
        at.at(),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| root.fail(step, e, rel))?;
    let bound = mounted(sys, root, rel, step)?;
    make_readonly_recursive(sys, &bound, scratch)
}

/// The spec's masked paths: a file gets /dev/null bound over it (opening
/// it reaches nothing), a directory an empty read-only tmpfs (the bind of a
/// file onto it fails with ENOTDIR: try the call, no stat). A path this
/// kernel lacks (ENOENT) is skipped: there is nothing to hide.
pub(super) fn mask_kernel_paths<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    if !plan.kernel_files.mask_proc_files {
        return Ok(());
    }
    for path in &plan.masked_paths {
        let rel = path.to_bytes();
        let masked = match target(sys, root, rel, Leaf::Existing, Step::MaskProcFile) {
            Ok(t) => t,
            // A kernel without the path has nothing to hide.
            Err(e) if e.errno == Errno::ENOENT as i32 => continue,
            Err(e) => return Err(e),
        };
        match sys.mount(
            Some(c"/dev/null"),
            masked.at(),
            None,
            MsFlags::MS_BIND,
            None,
        ) {
            // Gone between the lookup and the mount: nothing to hide either.
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => sys
                .mount(
                    Some(c"tmpfs"),
                    masked.at(),
                    Some(c"tmpfs"),
                    MsFlags::MS_RDONLY
                        | MsFlags::MS_NOSUID
                        | MsFlags::MS_NODEV
                        | MsFlags::MS_NOEXEC,
                    Some(c"mode=555,size=4k,nr_inodes=1"),
                )
                .map_err(|e| root.fail(Step::MaskProcFile, e, rel))?,
            Err(e) => return Err(root.fail(Step::MaskProcFile, e, rel)),
        }
    }
    Ok(())
}

/// sysfs of our own network namespace, or (sharing the host's network, where
/// a fresh sysfs is refused) the host's /sys bound in; read-only by default.
pub(super) fn mount_sys<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let ro = plan.kernel_files.sys_readonly;
    let at = target(sys, root, b"/sys", Leaf::Dir, Step::MountSys)?;
    if plan.fresh_sysfs {
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        if ro {
            flags |= MsFlags::MS_RDONLY;
        }
        sys.mount(Some(c"sysfs"), at.at(), Some(c"sysfs"), flags, None)
            .map_err(|e| root.fail(Step::MountSys, e, b"/sys"))?;
        if ro {
            let m = mounted(sys, root, b"/sys", Step::VerifyReadonly)?;
            verify_readonly(sys, m.point(), scratch)?;
        }
    } else {
        sys.mount(
            Some(c"/sys"),
            at.at(),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| root.fail(Step::BindHostSys, e, b"/sys"))?;
        if ro {
            let m = mounted(sys, root, b"/sys", Step::RemountReadonly)?;
            make_readonly_recursive(sys, &m, scratch)?;
        }
    }
    Ok(())
}

pub(super) fn mount_tmp<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    let at = target(sys, root, b"/tmp", Leaf::Dir, Step::MountTmp)?;
    sys.mount(
        Some(c"tmpfs"),
        at.at(),
        Some(c"tmpfs"),
        nosuid(plan) | nodev(plan),
        Some(c"mode=1777"),
    )
    .map_err(|e| root.fail(Step::MountTmp, e, b"/tmp"))
}

/// Controls only: the host's cgroup filesystems, writable, with the host's
/// view (what kernel_files.host_cgroupfs_rw switches on).
pub(super) fn bind_host_cgroupfs<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    let rel = b"/sys/fs/cgroup";
    let at = target(sys, root, rel, Leaf::Dir, Step::BindHostCgroupfs)?;
    sys.mount(
        Some(c"/sys/fs/cgroup"),
        at.at(),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| root.fail(Step::BindHostCgroupfs, e, rel))
}

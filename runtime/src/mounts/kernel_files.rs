//! The system mounts: a minimal /dev, /proc with /proc/sys and the spec's
//! read-only paths bound read-only and its masked paths covered, /sys, /tmp,
//! and the host's cgroupfs kept out.

use super::*;

/// The host device nodes bound into every container's /dev.
pub const DEV_NODES: [&CStr; 6] = [c"null", c"zero", c"full", c"random", c"urandom", c"tty"];

/// The symlinks made in every container's /dev: (target, name).
pub const DEV_LINKS: [(&CStr, &CStr); 5] = [
    (c"pts/ptmx", c"ptmx"),
    (c"/proc/self/fd", c"fd"),
    (c"/proc/self/fd/0", c"stdin"),
    (c"/proc/self/fd/1", c"stdout"),
    (c"/proc/self/fd/2", c"stderr"),
];

/// A tmpfs /dev with the host's harmless nodes bound in (mknod is not
/// allowed in a user namespace; a bind is), a private devpts and /dev/shm.
pub(super) fn mount_dev<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
) -> Result<(), StepFailure> {
    let under = target(sys, root, b"/dev", Leaf::Dir, Step::MountDevTmpfs)?;
    sys.mount(
        Some(c"tmpfs"),
        under.at(),
        Some(c"tmpfs"),
        nosuid(plan) | noexec(plan) | MsFlags::MS_STRICTATIME | nodev(plan),
        Some(c"mode=755,size=65536k"),
    )
    .map_err(|e| root.fail(Step::MountDevTmpfs, e, b"/dev"))?;
    // The tmpfs now on top at /dev (the fd above is the directory under
    // it), opened once: everything below is made in it by name.
    let dev = resolve(sys, root, b"/dev", Leaf::Existing, Step::MountDevTmpfs)?;

    for node in DEV_NODES {
        let mut buf = [0u8; 32];
        let host = join_small(&mut buf, b"/dev/", node.to_bytes());
        let at = make_in(
            sys,
            root,
            &dev,
            node,
            host.to_bytes(),
            Leaf::File,
            Step::BindDevNode,
        )?;
        sys.mount(Some(host), at.at(), None, MsFlags::MS_BIND, None)
            .map_err(|e| root.fail(Step::BindDevNode, e, host.to_bytes()))?;
    }

    let pts = make_in(
        sys,
        root,
        &dev,
        c"pts",
        b"/dev/pts",
        Leaf::Dir,
        Step::MountDevPts,
    )?;
    sys.mount(
        Some(c"devpts"),
        pts.at(),
        Some(c"devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(c"newinstance,ptmxmode=0666,mode=620"),
    )
    .map_err(|e| root.fail(Step::MountDevPts, e, b"/dev/pts"))?;

    let shm = make_in(
        sys,
        root,
        &dev,
        c"shm",
        b"/dev/shm",
        Leaf::Dir,
        Step::MountDevShm,
    )?;
    sys.mount(
        Some(c"shm"),
        shm.at(),
        Some(c"tmpfs"),
        nosuid(plan) | noexec(plan) | nodev(plan),
        Some(c"mode=1777,size=65536k"),
    )
    .map_err(|e| root.fail(Step::MountDevShm, e, b"/dev/shm"))?;

    for (target, name) in DEV_LINKS {
        sys.symlinkat(target, &dev, name).map_err(|e| {
            let mut buf = [0u8; 32];
            let rel = join_small(&mut buf, b"/dev/", name.to_bytes());
            root.fail(Step::DevSymlink, e, rel.to_bytes())
        })?;
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

/// A fresh procfs (it shows the container's pid namespace) and /proc/sys
/// read-only (read back with the kernel paths).
pub(super) fn mount_proc<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    read_back: &mut ReadBack,
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
        let step = Step::ProcSysReadonly;
        bind_in_place_readonly(sys, root, b"/proc/sys", step, read_back, scratch)?;
    }
    Ok(())
}

/// The spec's read-only paths (/proc/bus, /proc/fs, /proc/irq,
/// /proc/sysrq-trigger by default), each bound onto itself and made
/// read-only with everything below it (read back once, after the last). A
/// path this kernel lacks is skipped. Before the masks, so a path in both
/// lists ends masked.
pub(super) fn readonly_kernel_paths<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    read_back: &mut ReadBack,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    if !plan.kernel_files.readonly_paths {
        return Ok(());
    }
    let step = Step::ReadonlyPath;
    for path in &plan.readonly_paths {
        match bind_in_place_readonly(sys, root, path.to_bytes(), step, read_back, scratch) {
            Err(f) if f.step == step && f.errno == Errno::ENOENT as i32 => {}
            other => other?,
        }
    }
    Ok(())
}

/// `rel` (resolved in the root) bound onto itself with its submounts, then
/// made read-only through and through and queued to be read back. A
/// failing step is `step`.
pub(super) fn bind_in_place_readonly<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    step: Step,
    read_back: &mut ReadBack,
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
    // Opened again: the fd above reaches the mount under the bind.
    let bound = mounted(sys, root, rel, step)?;
    set_readonly_recursive(sys, &bound, scratch)?;
    read_back.push(sys, &bound, scratch)
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
/// a fresh sysfs is refused) the host's /sys bound in; read-only by default
/// (read back with the kernel paths).
pub(super) fn mount_sys<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    root: &Root<'_, S::Fd>,
    read_back: &mut ReadBack,
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
            let m = mounted_on(sys, root, at, b"/sys", Step::VerifyReadonly)?;
            read_back.push(sys, &m, scratch)?;
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
            set_readonly_recursive(sys, &m, scratch)?;
            read_back.push(sys, &m, scratch)?;
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

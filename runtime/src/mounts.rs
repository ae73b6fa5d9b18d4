//! Building the container's root inside its own mount namespace, in
//! bubblewrap's order: rslave `/` so nothing propagates back; the image
//! (overlay, or a bind for controls) at the new root; a minimal /dev; /proc;
//! /sys; /tmp; the spec's binds (read-only ones remounted read-only
//! *recursively* and read back from mountinfo); then pivot_root and detach
//! the old root.
//!
//! Everything here runs in the freshly cloned child, so it goes through the
//! [`Syscalls`] seam and does not allocate: every string was prepared by the
//! parent in a [`RootPlan`], paths are built in stack buffers, and
//! mountinfo is read into a scratch buffer the parent sized.
//!
//! No target below the new root is reached by joining strings: the image
//! may hold a symlink at any of them (`/proc -> /etc`, `/dev -> ../../x`,
//! `/a -> /` under a bind at `/a/b`), and until pivot_root the host's `/` is
//! still ours to mkdir and mount on. Each target is resolved with
//! openat2(RESOLVE_IN_ROOT) from an fd of the new root, what is missing is
//! made with mkdirat relative to the resolved parent, and the mount goes
//! onto the resolved fd through its /proc/self/fd path (see `resolve`).
//!
//! System mounts come before the spec's binds (bubblewrap does them in
//! argument order): a bind below /tmp or /dev would otherwise be hidden by
//! the tmpfs mounted over it later.

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use std::ffi::{CStr, CString};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use crate::rootfs::ImageMount;
use crate::spec::{ContainerSpec, Hardening, KernelFiles, RootEntry};
use crate::step::{Step, StepFailure};
use crate::sys::{ProcFdPath, Syscalls};

/// Longest path we join (PATH_MAX).
const PATH_MAX: usize = 4096;
/// Mounts below one read-only bind that we can track.
const SUBTREE_MAX: usize = 512;
/// Name of the directory the old root is moved to by pivot_root.
const PUT_OLD: &str = "/.isocheck-put-old";

/// One bind from the spec, with the destination still relative to the new
/// root (absolute inside the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBind {
    pub source: CString,
    pub destination: CString,
    pub readonly: bool,
    pub source_is_dir: bool,
}

/// Everything the child needs to build the root, prepared by the parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootPlan {
    /// An empty directory the image is mounted on (in the run's temp dir).
    pub new_root: CString,
    pub image: ImageMount,
    pub binds: Vec<PlannedBind>,
    pub kernel_files: KernelFiles,
    /// sysfs can be mounted fresh only from a network namespace of our own;
    /// otherwise the host's /sys is bound.
    pub fresh_sysfs: bool,
    pub entry: RootEntry,
    pub hardening: Hardening,
    /// The spec's masked paths (absolute inside the container); applied
    /// when `kernel_files.mask_proc_files`.
    pub masked_paths: Vec<CString>,
    /// The spec's read-only paths; applied when `kernel_files.readonly_paths`.
    pub readonly_paths: Vec<CString>,
}

/// A path or option that cannot become a C string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {value:?} contains a NUL byte")]
pub struct NulInPath {
    pub what: &'static str,
    pub value: String,
}

pub(crate) fn cstring(what: &'static str, bytes: &[u8]) -> Result<CString, NulInPath> {
    CString::new(bytes).map_err(|_| NulInPath {
        what,
        value: String::from_utf8_lossy(bytes).into_owned(),
    })
}

impl RootPlan {
    pub fn new(
        spec: &ContainerSpec,
        new_root: &Path,
        image: ImageMount,
    ) -> Result<RootPlan, NulInPath> {
        let binds = spec
            .mounts
            .iter()
            .map(|m| {
                Ok(PlannedBind {
                    source: cstring("mounts.source", m.source.as_os_str().as_bytes())?,
                    destination: cstring(
                        "mounts.destination",
                        m.destination.as_os_str().as_bytes(),
                    )?,
                    readonly: m.readonly,
                    source_is_dir: m.source.is_dir(),
                })
            })
            .collect::<Result<Vec<_>, NulInPath>>()?;
        Ok(RootPlan {
            new_root: cstring("new root", new_root.as_os_str().as_bytes())?,
            image,
            binds,
            kernel_files: spec.kernel_files,
            fresh_sysfs: spec.namespaces.net,
            entry: spec.rootfs.entry,
            hardening: spec.hardening,
            masked_paths: kernel_paths("masked_paths", &spec.masked_paths)?,
            readonly_paths: kernel_paths("readonly_paths", &spec.readonly_paths)?,
        })
    }
}

fn kernel_paths(
    what: &'static str,
    paths: &[std::path::PathBuf],
) -> Result<Vec<CString>, NulInPath> {
    paths
        .iter()
        .map(|p| cstring(what, p.as_os_str().as_bytes()))
        .collect()
}

fn fail(step: Step, errno: Errno, path: &CStr) -> StepFailure {
    StepFailure::new(step, errno, path.to_bytes())
}

/// `root` + `rel` (which starts with '/') as a C string in `buf`.
fn join<'a>(buf: &'a mut [u8; PATH_MAX], root: &CStr, rel: &[u8]) -> Result<&'a CStr, StepFailure> {
    let root = root.to_bytes();
    let rel = if rel == b"/" { &b""[..] } else { rel };
    let n = root.len() + rel.len();
    if n + 1 > PATH_MAX {
        return Err(StepFailure::new(
            Step::PathTooLong,
            Errno::ENAMETOOLONG,
            rel,
        ));
    }
    buf[..root.len()].copy_from_slice(root);
    buf[root.len()..n].copy_from_slice(rel);
    buf[n] = 0;
    CStr::from_bytes_with_nul(&buf[..=n])
        .map_err(|_| StepFailure::new(Step::PathTooLong, Errno::EINVAL, rel))
}

/// The new root, open. Every target below it is resolved from this fd,
/// never by joining strings: an image's symlink (`/proc -> /etc`,
/// `/dev -> ../../../host`, `/a -> /` under a bind at `/a/b`) is resolved
/// as the container will see it, inside the root, while the host's `/` is
/// still reachable from here.
struct Root<'p, F> {
    fd: F,
    /// For messages only (the run's temp dir, chosen by the parent).
    path: &'p CStr,
}

/// What a resolved target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leaf {
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
fn open_root<'p, S: Syscalls>(
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
    fn fail(&self, step: Step, errno: Errno, rel: &[u8]) -> StepFailure {
        let mut buf = [0u8; PATH_MAX];
        match join(&mut buf, self.path, rel) {
            Ok(p) => fail(step, errno, p),
            Err(too_long) => too_long,
        }
    }
}

/// `bytes` as a C string in `buf`.
fn c_in<'a>(buf: &'a mut [u8; PATH_MAX], bytes: &[u8]) -> Result<&'a CStr, StepFailure> {
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
fn resolve<S: Syscalls>(
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
        let fd = match sys.open_in_root(&root.fd, c_in(&mut buf, prefix)?, dir) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let at = parent.as_ref().unwrap_or(&root.fd);
                let mut name_buf = [0u8; PATH_MAX];
                let name = c_in(&mut name_buf, name)?;
                let made = if dir {
                    sys.mkdirat(at, name, 0o755)
                } else {
                    sys.create_file_at(at, name, 0o644)
                };
                match made {
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

/// A resolved target and the /proc/self/fd path the syscalls act through
/// (the fd must stay open while the path is used).
struct Target<F> {
    _fd: F,
    via: ProcFdPath,
}

impl<F: AsRawFd> Target<F> {
    fn new(fd: F) -> Target<F> {
        let via = ProcFdPath::new(fd.as_raw_fd());
        Target { _fd: fd, via }
    }

    fn at(&self) -> &CStr {
        self.via.as_c_str()
    }
}

/// [`resolve`], ready to mount on.
fn target<S: Syscalls>(
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
struct Mounted<F> {
    target: Target<F>,
    point: [u8; PATH_MAX],
}

impl<F> Mounted<F> {
    fn point(&self) -> &CStr {
        CStr::from_bytes_until_nul(&self.point).unwrap_or(c"")
    }
}

fn mounted<S: Syscalls>(
    sys: &mut S,
    root: &Root<'_, S::Fd>,
    rel: &[u8],
    step: Step,
) -> Result<Mounted<S::Fd>, StepFailure> {
    let target = target(sys, root, rel, Leaf::Existing, step)?;
    let mut point = [0u8; PATH_MAX];
    sys.fd_path(&target._fd, &mut point)
        .map_err(|e| root.fail(step, e, rel))?;
    Ok(Mounted { target, point })
}

/// Builds the whole root and enters it. Returns the step that failed.
pub fn build_root<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    if plan.hardening.rslave_root {
        make_host_root_slave(sys)?;
    }
    mount_image(sys, plan)?;
    let root = open_root(sys, plan)?;
    mount_dev(sys, plan, &root)?;
    mount_proc(sys, plan, &root, scratch)?;
    mount_sys(sys, plan, &root, scratch)?;
    readonly_kernel_paths(sys, plan, &root, scratch)?;
    mask_kernel_paths(sys, plan, &root)?;
    mount_tmp(sys, plan, &root)?;
    if plan.kernel_files.host_cgroupfs_rw {
        bind_host_cgroupfs(sys, &root)?;
    }
    for bind in &plan.binds {
        mount_bind(sys, plan, &root, bind, scratch)?;
    }
    if !plan.hardening.rslave_root {
        // Switched off (a control): every mount above has propagated to
        // the host by now; pivot_root still needs a non-shared parent.
        make_host_root_slave(sys)?;
    }
    enter_root(sys, plan, &root)
}

/// MS_REC|MS_SLAVE on `/`: our mounts must never propagate back to the host,
/// while the host's later mounts may still reach us. Also what pivot_root
/// needs (no shared mounts around the new root).
fn make_host_root_slave<S: Syscalls>(sys: &mut S) -> Result<(), StepFailure> {
    sys.mount(None, c"/", None, MsFlags::MS_REC | MsFlags::MS_SLAVE, None)
        .map_err(|e| fail(Step::MakeRootSlave, e, c"/"))
}

/// The image at the new root: an overlay whose upper layer is a throw-away
/// temp dir, so the image is never written.
fn mount_image<S: Syscalls>(sys: &mut S, plan: &RootPlan) -> Result<(), StepFailure> {
    let root = plan.new_root.as_c_str();
    match &plan.image {
        ImageMount::Overlay { options } => sys
            .mount(
                Some(c"overlay"),
                root,
                Some(c"overlay"),
                MsFlags::empty(),
                Some(options),
            )
            .map_err(|e| fail(Step::MountOverlay, e, root)),
        ImageMount::Bind { source } => sys
            .mount(
                Some(source),
                root,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| fail(Step::BindImage, e, root)),
    }
}

const DEV_NODES: [&[u8]; 6] = [b"null", b"zero", b"full", b"random", b"urandom", b"tty"];

/// A tmpfs /dev with the host's harmless nodes bound in (mknod is not
/// allowed in a user namespace; a bind is), a private devpts and /dev/shm.
fn mount_dev<S: Syscalls>(
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

/// MS_NODEV for the writable mounts we make (/dev, /dev/shm, /tmp): a node
/// made there opens nothing. The nodes /dev needs are binds of the host's,
/// whose own mounts allow devices.
fn nodev(plan: &RootPlan) -> MsFlags {
    if plan.hardening.nodev {
        MsFlags::MS_NODEV
    } else {
        MsFlags::empty()
    }
}

/// MS_NOSUID for the writable mounts we make (/dev, /dev/shm, /tmp): a
/// set-user-ID binary put there runs with the caller's ids. (procfs, sysfs,
/// devpts and the masking tmpfs stay nosuid always: nothing executable can
/// be put in them, so switching it off would show nothing.)
fn nosuid(plan: &RootPlan) -> MsFlags {
    if plan.hardening.nosuid {
        MsFlags::MS_NOSUID
    } else {
        MsFlags::empty()
    }
}

/// MS_NOEXEC for /dev and /dev/shm: nothing written there can be run.
fn noexec(plan: &RootPlan) -> MsFlags {
    if plan.hardening.noexec {
        MsFlags::MS_NOEXEC
    } else {
        MsFlags::empty()
    }
}

/// Joins two short byte strings into a C string (for /dev/<node>).
fn join_small<'a>(buf: &'a mut [u8; 32], a: &[u8], b: &[u8]) -> &'a CStr {
    let n = (a.len() + b.len()).min(31);
    let a_len = a.len().min(n);
    buf[..a_len].copy_from_slice(&a[..a_len]);
    buf[a_len..n].copy_from_slice(&b[..n - a_len]);
    buf[n] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"")
}

/// A fresh procfs (it shows the container's pid namespace), /proc/sys
/// read-only, and the two files that act on the host masked.
fn mount_proc<S: Syscalls>(
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
fn readonly_kernel_paths<S: Syscalls>(
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
fn bind_in_place_readonly<S: Syscalls>(
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
fn mask_kernel_paths<S: Syscalls>(
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
fn mount_sys<S: Syscalls>(
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

fn mount_tmp<S: Syscalls>(
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
fn bind_host_cgroupfs<S: Syscalls>(sys: &mut S, root: &Root<'_, S::Fd>) -> Result<(), StepFailure> {
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

/// One bind from the spec: the target resolved in the root and created
/// there (in the overlay's upper layer) if the image lacks it, the source
/// bound with its submounts, and a read-only bind made read-only through
/// and through.
fn mount_bind<S: Syscalls>(
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

/// Read-only for the mount at `target` and every mount below it. A plain
/// MS_BIND|MS_RDONLY is ignored, and a remount reaches one mount only, so:
/// mount_setattr(AT_RECURSIVE) where the kernel has it (5.12+), else a
/// remount of each mount found in mountinfo. Then read back.
fn make_readonly_recursive<S: Syscalls>(
    sys: &mut S,
    m: &Mounted<S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    match sys.mount_setattr_readonly_recursive(m.target.at()) {
        Ok(()) => {}
        Err(Errno::ENOSYS) => remount_each_readonly(sys, m.point(), scratch)?,
        Err(e) => return Err(fail(Step::RemountReadonly, e, m.point())),
    }
    verify_readonly(sys, m.point(), scratch)
}

/// Switched off (a control): the mount at `target` alone is made read-only;
/// its submounts stay writable.
fn make_readonly_top_only<S: Syscalls>(
    sys: &mut S,
    m: &Mounted<S::Fd>,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    remount_readonly(sys, m.target.at(), m.point())?;
    let mut ids = [0u64; SUBTREE_MAX];
    let (info, n) = read_subtree(sys, m.point(), scratch, &mut ids, Step::VerifyReadonly)?;
    check_readonly(mounts_among(info, &ids[..n.min(1)]))
}

fn remount_each_readonly<S: Syscalls>(
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
fn remount_readonly<S: Syscalls>(
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
fn verify_readonly<S: Syscalls>(
    sys: &mut S,
    target: &CStr,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    let mut ids = [0u64; SUBTREE_MAX];
    let (info, n) = read_subtree(sys, target, scratch, &mut ids, Step::VerifyReadonly)?;
    check_readonly(mounts_among(info, &ids[..n]))
}

/// Every one of `mounts` has `ro` among its options; errno 0 in the failure
/// means "the check failed".
fn check_readonly<'a>(mounts: impl Iterator<Item = MountLine<'a>>) -> Result<(), StepFailure> {
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
fn read_subtree<'b, S: Syscalls>(
    sys: &mut S,
    target: &CStr,
    scratch: &'b mut [u8],
    ids: &mut [u64; SUBTREE_MAX],
    step: Step,
) -> Result<(&'b [u8], usize), StepFailure> {
    let info = sys
        .read_mountinfo(scratch)
        .map_err(|e| fail(Step::ReadMountinfo, e, c"/proc/self/mountinfo"))?;
    let n = subtree_ids(info, target.to_bytes(), ids).map_err(|e| fail(step, e, target))?;
    Ok((info, n))
}

/// The mountinfo lines whose mount id is one of `ids`.
fn mounts_among<'a>(info: &'a [u8], ids: &'a [u64]) -> impl Iterator<Item = MountLine<'a>> + 'a {
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

fn ascii_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |acc, &b| {
        b.is_ascii_digit()
            .then(|| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
            .flatten()
    })
}

/// Undoes mountinfo's octal escapes (\040 for space...) into a C string.
fn unescape<'b>(field: &[u8], buf: &'b mut [u8; PATH_MAX]) -> Option<&'b CStr> {
    let mut i = 0;
    let mut n = 0;
    while i < field.len() {
        if n + 1 >= PATH_MAX {
            return None;
        }
        let b = field[i];
        if b == b'\\'
            && i + 3 < field.len()
            && field[i + 1..i + 4]
                .iter()
                .all(|d| (b'0'..=b'7').contains(d))
        {
            let v = (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0');
            buf[n] = v;
            i += 4;
        } else {
            buf[n] = b;
            i += 1;
        }
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
        let mut buf = [0u8; PATH_MAX];
        if unescape(m.mount_point, &mut buf).is_some_and(|p| p.to_bytes() == target) {
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

/// pivot_root into the new root and detach the old one, so no path leads
/// back to the host's tree (chroot alone is escapable). ChrootOnly exists
/// for the control that shows exactly that.
fn enter_root<S: Syscalls>(
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

fn join_small_path<'a>(buf: &'a mut [u8; 64], p: &[u8]) -> &'a CStr {
    let n = p.len().min(63);
    buf[..n].copy_from_slice(&p[..n]);
    buf[n] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/")
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

/// Sets the hostname (UTS namespace) through the seam.
pub fn set_hostname<S: Syscalls>(sys: &mut S, name: &CStr) -> Result<(), StepFailure> {
    sys.sethostname(name.to_bytes())
        .map_err(|e| fail(Step::SetHostname, e, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{Call, RecordingSyscalls};

    const ROOT: &str = "/tmp/isocheck-r-c-x/root";

    fn plan() -> RootPlan {
        RootPlan {
            new_root: CString::new(ROOT).expect("no NUL"),
            image: ImageMount::Overlay {
                options: c"lowerdir=/img,upperdir=/u,workdir=/w".into(),
            },
            binds: vec![
                PlannedBind {
                    source: c"/srv/data".into(),
                    destination: c"/data".into(),
                    readonly: true,
                    source_is_dir: true,
                },
                PlannedBind {
                    source: c"/etc/resolv.conf".into(),
                    destination: c"/etc/resolv.conf".into(),
                    readonly: false,
                    source_is_dir: false,
                },
            ],
            kernel_files: KernelFiles::default(),
            fresh_sysfs: true,
            entry: RootEntry::PivotRoot,
            hardening: Hardening::default(),
            masked_paths: vec![c"/proc/kmsg".into(), c"/proc/sysrq-trigger".into()],
            readonly_paths: vec![],
        }
    }

    /// mountinfo as the kernel would show it after the mounts, every
    /// interesting one read-only unless listed in `rw`.
    fn mountinfo(rw: &[&str]) -> String {
        let mut s = String::from("1 0 8:1 / / rw,relatime - ext4 /dev/sda rw\n");
        for (i, mp) in [
            "/proc",
            "/proc/sys",
            "/sys",
            "/data",
            "/data/sub",
            "/data/sub/deeper",
        ]
        .iter()
        .enumerate()
        {
            let id = 10 + i;
            let parent = match *mp {
                "/proc/sys" => 10,
                "/data/sub" => 13,
                "/data/sub/deeper" => 14,
                _ => 1,
            };
            let opts = if rw.contains(mp) || *mp == "/proc" {
                "rw"
            } else {
                "ro"
            };
            s.push_str(&format!(
                "{id} {parent} 0:{id} / {ROOT}{mp} {opts},nosuid - x x rw\n"
            ));
        }
        s
    }

    fn run(sys: &mut RecordingSyscalls, plan: &RootPlan) -> Result<(), StepFailure> {
        let mut scratch = vec![0u8; 1 << 16];
        build_root(sys, plan, &mut scratch)
    }

    fn position(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
        calls.iter().position(pred).expect("call present")
    }

    fn is_mount_at(c: &Call, at: &str) -> bool {
        matches!(c, Call::Mount { target, .. } if target == at)
    }

    #[test]
    fn root_is_built_in_bubblewrap_order() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("builds");
        let calls = &sys.calls;
        assert_eq!(
            calls[0],
            Call::Mount {
                source: None,
                target: "/".into(),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_SLAVE,
                data: None
            }
        );
        assert_eq!(
            calls[1],
            Call::Mount {
                source: Some("overlay".into()),
                target: ROOT.into(),
                fstype: Some("overlay".into()),
                flags: MsFlags::empty(),
                data: Some("lowerdir=/img,upperdir=/u,workdir=/w".into())
            }
        );
        let dev = position(calls, |c| is_mount_at(c, &format!("{ROOT}/dev")));
        let proc_ = position(calls, |c| is_mount_at(c, &format!("{ROOT}/proc")));
        let sys_ = position(calls, |c| is_mount_at(c, &format!("{ROOT}/sys")));
        let tmp = position(calls, |c| is_mount_at(c, &format!("{ROOT}/tmp")));
        let data = position(calls, |c| is_mount_at(c, &format!("{ROOT}/data")));
        let data_ro = position(
            calls,
            |c| matches!(c, Call::MountSetattrReadonly { target } if *target == format!("{ROOT}/data")),
        );
        let pivot = position(calls, |c| matches!(c, Call::PivotRoot { .. }));
        let detach = position(calls, |c| matches!(c, Call::Umount2 { .. }));
        let rmdir = position(calls, |c| matches!(c, Call::Rmdir { .. }));
        assert!(
            1 < dev && dev < proc_ && proc_ < sys_ && sys_ < tmp && tmp < data,
            "{calls:#?}"
        );
        assert!(
            data < data_ro && data_ro < pivot,
            "ro remount after the bind, before pivot_root"
        );
        assert!(
            pivot < detach && detach < rmdir,
            "pivot_root before detaching the old root"
        );
        assert_eq!(calls.last(), Some(&Call::Chdir { path: "/".into() }));
        assert_eq!(
            calls[pivot],
            Call::PivotRoot {
                new_root: ROOT.into(),
                put_old: format!("{ROOT}{PUT_OLD}")
            }
        );
        assert_eq!(
            calls[detach],
            Call::Umount2 {
                target: PUT_OLD.into(),
                flags: MntFlags::MNT_DETACH
            }
        );
    }

    #[test]
    fn binds_are_recursive_and_sources_kept() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("builds");
        let data = sys
            .calls
            .iter()
            .find(|c| is_mount_at(c, &format!("{ROOT}/data")))
            .expect("bind");
        assert_eq!(
            *data,
            Call::Mount {
                source: Some("/srv/data".into()),
                target: format!("{ROOT}/data"),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None
            }
        );
        // A file source gets an empty file to bind onto, not a directory.
        let file = format!("{ROOT}/etc/resolv.conf");
        assert!(sys.calls.contains(&Call::CreateFile { path: file.clone() }));
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::Mkdir { path, .. } if *path == file)));
        // The rw bind is not made read-only.
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == file)));
    }

    #[test]
    fn proc_sys_is_bound_readonly_and_host_files_masked() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("builds");
        let ps = format!("{ROOT}/proc/sys");
        let bind = position(&sys.calls, |c| is_mount_at(c, &ps));
        let ro = position(
            &sys.calls,
            |c| matches!(c, Call::MountSetattrReadonly { target } if *target == ps),
        );
        assert!(bind < ro);
        for f in ["sysrq-trigger", "kmsg"] {
            let t = format!("{ROOT}/proc/{f}");
            assert!(
                sys.calls.iter().any(
                    |c| matches!(c, Call::Mount { source: Some(s), target, flags, .. }
                if s == "/dev/null" && *target == t && *flags == MsFlags::MS_BIND)
                ),
                "{f} masked"
            );
        }
        let sysfs = sys
            .calls
            .iter()
            .find(|c| is_mount_at(c, &format!("{ROOT}/sys")))
            .expect("sysfs");
        assert!(
            matches!(sysfs, Call::Mount { fstype: Some(t), flags, .. } if t == "sysfs" && flags.contains(MsFlags::MS_RDONLY))
        );
    }

    #[test]
    fn switched_off_hardening_is_skipped_or_weakened() {
        let mut p = plan();
        p.hardening = Hardening {
            rslave_root: false,
            detach_old_root: false,
            recursive_binds: false,
            recursive_readonly: false,
            ..Hardening::default()
        };
        let mut sys = RecordingSyscalls {
            // /data/sub stays writable: only the top is remounted.
            mountinfo: mountinfo(&["/data/sub", "/data/sub/deeper"]),
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        let calls = &sys.calls;
        let slave = position(
            calls,
            |c| matches!(c, Call::Mount { flags, .. } if *flags == MsFlags::MS_REC | MsFlags::MS_SLAVE),
        );
        let overlay = position(calls, |c| is_mount_at(c, ROOT));
        let pivot = position(calls, |c| matches!(c, Call::PivotRoot { .. }));
        assert!(overlay < slave && slave < pivot, "rslave late: {calls:#?}");
        assert!(!calls.iter().any(|c| matches!(c, Call::Umount2 { .. })));
        assert!(!calls.iter().any(|c| matches!(c, Call::Rmdir { .. })));
        let data = format!("{ROOT}/data");
        assert!(calls.iter().any(
            |c| matches!(c, Call::Mount { source: Some(s), target, flags, .. }
            if s == "/srv/data" && *target == data && *flags == MsFlags::MS_BIND)
        ));
        assert!(!calls
            .iter()
            .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == data)));
        assert!(calls
            .iter()
            .any(|c| matches!(c, Call::Mount { target, flags, .. }
            if *target == data && flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))));
    }

    #[test]
    fn controls_switch_protections_off() {
        let mut p = plan();
        p.kernel_files = KernelFiles {
            proc_sys_readonly: false,
            sys_readonly: false,
            host_cgroupfs_rw: true,
            mask_proc_files: false,
            readonly_paths: false,
        };
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        assert!(!sys
            .calls
            .iter()
            .any(|c| is_mount_at(c, &format!("{ROOT}/proc/sys"))));
        assert!(!sys
            .calls
            .iter()
            .any(|c| is_mount_at(c, &format!("{ROOT}/proc/kmsg"))));
        let cg = sys
            .calls
            .iter()
            .find(|c| is_mount_at(c, &format!("{ROOT}/sys/fs/cgroup")))
            .expect("cgroupfs");
        assert!(
            matches!(cg, Call::Mount { source: Some(s), flags, .. } if s == "/sys/fs/cgroup" && *flags == MsFlags::MS_BIND | MsFlags::MS_REC)
        );
    }

    #[test]
    fn kernel_paths_are_made_readonly_then_masked_by_kind() {
        let mut p = plan();
        p.readonly_paths = vec![c"/proc/bus".into()];
        p.masked_paths = vec![
            c"/proc/kmsg".into(),
            c"/proc/acpi".into(),
            c"/proc/kcore".into(),
        ];
        let acpi = format!("{ROOT}/proc/acpi");
        let kcore = format!("{ROOT}/proc/kcore");
        let sysrq = format!("{ROOT}/proc/sysrq-trigger");
        let mut info = mountinfo(&[]);
        info.push_str(&format!(
            "40 10 0:40 / {ROOT}/proc/bus ro,nosuid - proc proc rw\n"
        ));
        let mut sys = RecordingSyscalls {
            mountinfo: info,
            // /proc/acpi is a directory: a file cannot be bound onto it.
            fail_target: Some((acpi.clone(), Errno::ENOTDIR)),
            fail_once: true,
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        let calls = &sys.calls;
        let bus = format!("{ROOT}/proc/bus");
        let bind = position(calls, |c| {
            matches!(c, Call::Mount { source: Some(s), target, flags, .. }
                if *s == bus && *target == bus && *flags == MsFlags::MS_BIND | MsFlags::MS_REC)
        });
        let ro = position(
            calls,
            |c| matches!(c, Call::MountSetattrReadonly { target } if *target == bus),
        );
        let kmsg = format!("{ROOT}/proc/kmsg");
        let null = position(
            calls,
            |c| matches!(c, Call::Mount { source: Some(s), target, .. } if s == "/dev/null" && *target == kmsg),
        );
        let tmpfs = position(calls, |c| {
            matches!(c, Call::Mount { fstype: Some(t), target, flags, .. }
                if t == "tmpfs" && *target == acpi && flags.contains(MsFlags::MS_RDONLY))
        });
        assert!(bind < ro && ro < null && null < tmpfs, "{calls:#?}");
        assert!(calls.iter().any(|c| is_mount_at(c, &kcore)));

        // A read-only path the kernel lacks is skipped, not read back.
        let mut q = plan();
        q.readonly_paths = vec![c"/proc/sysrq-trigger".into()];
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            fail_target: Some((sysrq.clone(), Errno::ENOENT)),
            ..Default::default()
        };
        run(&mut sys, &q).expect("a missing read-only path is skipped");
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == sysrq)));

        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            fail_target: Some((kcore.clone(), Errno::ENOENT)),
            ..Default::default()
        };
        p.readonly_paths.clear();
        run(&mut sys, &p).expect("a missing path is skipped");
        let tmpfs_on_kcore = sys.calls.iter().any(
            |c| matches!(c, Call::Mount { fstype: Some(t), target, .. } if t == "tmpfs" && *target == kcore),
        );
        assert!(!tmpfs_on_kcore, "ENOENT is not a directory to mask");

        p.kernel_files.mask_proc_files = false;
        p.kernel_files.readonly_paths = false;
        p.readonly_paths = vec![c"/proc/bus".into()];
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        assert!(!sys
            .calls
            .iter()
            .any(|c| is_mount_at(c, &kmsg) || is_mount_at(c, &acpi) || is_mount_at(c, &bus)));
    }

    #[test]
    fn without_a_net_namespace_the_host_sys_is_bound_readonly() {
        let mut p = plan();
        p.fresh_sysfs = false;
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        let t = format!("{ROOT}/sys");
        let bind = position(
            &sys.calls,
            |c| matches!(c, Call::Mount { source: Some(s), target, .. } if s == "/sys" && *target == t),
        );
        let ro = position(
            &sys.calls,
            |c| matches!(c, Call::MountSetattrReadonly { target } if *target == t),
        );
        assert!(bind < ro);
    }

    #[test]
    fn old_kernels_remount_every_submount_readonly() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            no_mount_setattr: true,
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("builds");
        let remounts: Vec<&str> =
            sys.calls
                .iter()
                .filter_map(|c| match c {
                    Call::Mount { target, flags, .. } if flags.contains(MsFlags::MS_REMOUNT) => {
                        assert!(flags
                            .contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
                        Some(target.strip_prefix(ROOT).unwrap_or(target))
                    }
                    _ => None,
                })
                .collect();
        // A fresh sysfs is mounted read-only directly, not remounted.
        assert_eq!(
            remounts,
            ["/proc/sys", "/data", "/data/sub", "/data/sub/deeper"]
        );
    }

    #[test]
    fn a_writable_submount_fails_the_read_back() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&["/data/sub/deeper"]),
            ..Default::default()
        };
        let err = run(&mut sys, &plan()).expect_err("verification fails");
        assert_eq!(err.step, Step::VerifyReadonly);
        assert_eq!(err.path(), format!("{ROOT}/data/sub/deeper").as_bytes());
        assert!(
            !sys.calls
                .iter()
                .any(|c| matches!(c, Call::PivotRoot { .. })),
            "stops at the failure"
        );
    }

    #[test]
    fn chroot_only_skips_pivot_root() {
        let mut p = plan();
        p.entry = RootEntry::ChrootOnly;
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &p).expect("builds");
        let n = sys.calls.len();
        assert_eq!(sys.calls[n - 2], Call::Chroot { path: ROOT.into() });
        assert_eq!(sys.calls[n - 1], Call::Chdir { path: "/".into() });
        assert!(!sys
            .calls
            .iter()
            .any(|c| matches!(c, Call::PivotRoot { .. } | Call::Umount2 { .. })));
    }

    #[test]
    fn a_failing_mount_names_its_step_and_path() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            fail_target: Some((ROOT.into(), Errno::EINVAL)),
            ..Default::default()
        };
        let err = run(&mut sys, &plan()).expect_err("overlay fails");
        assert_eq!(
            (err.step, err.path()),
            (Step::MountOverlay, ROOT.as_bytes())
        );
        assert_eq!(Errno::from_raw(err.errno), Errno::EINVAL);
    }

    #[test]
    fn existing_directories_are_fine() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            existing: vec![
                format!("{ROOT}/dev"),
                format!("{ROOT}/proc"),
                format!("{ROOT}/data"),
            ],
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("EEXIST is not an error");
    }

    #[test]
    fn subtree_takes_the_mount_on_top() {
        let info = b"1 0 0:1 / / rw - x x rw\n5 1 0:5 / /m rw - x x rw\n6 1 0:6 / /m ro - x x rw\n7 6 0:7 / /m/a ro - x x rw\n8 5 0:8 / /m/b rw - x x rw\n";
        let mut ids = [0u64; SUBTREE_MAX];
        let n = subtree_ids(info, b"/m", &mut ids).expect("found");
        assert_eq!(&ids[..n], &[6, 7]);
        assert_eq!(subtree_ids(info, b"/nope", &mut ids), Err(Errno::ENOENT));
    }

    #[test]
    fn mount_points_under_a_dir_only() {
        let info = b"1 0 8:1 / / rw - x x rw\n2 1 0:2 / /tmp/isocheck-a rw - x x rw\n\
3 2 0:3 / /tmp/isocheck-a/root/my\\040dir rw - x x rw\n4 1 0:4 / /tmp/isocheck-ab rw - x x rw\n\
5 1 0:5 / /tmp/isocheck-a rw - x x rw\n";
        let got: Vec<CString> = mount_points_under(info, Path::new("/tmp/isocheck-a/"));
        let got: Vec<&[u8]> = got.iter().map(|c| c.to_bytes()).collect();
        assert_eq!(
            got,
            [
                &b"/tmp/isocheck-a"[..],
                b"/tmp/isocheck-a/root/my dir",
                b"/tmp/isocheck-a"
            ]
        );
        assert!(mount_points_under(info, Path::new("/tmp/isocheck-c")).is_empty());
        assert_eq!(mount_points_under(info, Path::new("/")).len(), 5);
    }

    #[test]
    fn mountinfo_escapes_are_undone() {
        let mut buf = [0u8; PATH_MAX];
        let p = unescape(br"/a\040b\134c", &mut buf).expect("fits");
        assert_eq!(p.to_bytes(), br"/a b\c");
    }

    /// Every path the build changed is the root or below it (mount sources
    /// from the host aside), and every mount target below the root was
    /// reached through a /proc/self/fd path, never a joined string.
    fn assert_stayed_inside(sys: &RecordingSyscalls) {
        let inside = |p: &str| p == ROOT || p.starts_with(&format!("{ROOT}/"));
        for c in &sys.calls {
            match c {
                Call::Mount { target, .. } | Call::MountSetattrReadonly { target } => {
                    assert!(target == "/" || inside(target), "{c:?}")
                }
                Call::Mkdir { path, .. } | Call::CreateFile { path } => {
                    assert!(inside(path), "{c:?}")
                }
                Call::Symlink { link, .. } => assert!(inside(link), "{c:?}"),
                Call::PivotRoot { put_old, .. } => assert!(inside(put_old), "{c:?}"),
                _ => {}
            }
        }
        for raw in &sys.raw_mount_targets {
            assert!(
                !raw.starts_with(&format!("{ROOT}/")),
                "a joined path was mounted on: {raw}"
            );
        }
    }

    /// The test plan with its first bind, read-write, at `dest`.
    fn plan_with_rw_bind_at(dest: &CStr) -> RootPlan {
        let mut p = plan();
        p.binds[0].destination = dest.into();
        p.binds[0].readonly = false;
        p
    }

    fn hostile(symlinks: &[(&str, &str)], existing: &[&str]) -> RecordingSyscalls {
        RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            symlinks: symlinks
                .iter()
                .map(|(l, t)| (format!("{ROOT}{l}"), (*t).to_owned()))
                .collect(),
            existing: existing.iter().map(|p| format!("{ROOT}{p}")).collect(),
            ..Default::default()
        }
    }

    #[rstest::rstest]
    #[case::absolute_at_proc("/proc", "/etc", "/etc")]
    #[case::dotdot_at_proc("/proc", "../../../../../etc", "/etc")]
    #[case::absolute_at_dev("/dev", "/host-dev", "/host-dev")]
    #[case::dotdot_at_sys("/sys", "../../../../../../host-sys", "/host-sys")]
    #[case::absolute_at_tmp("/tmp", "/var/tmp", "/var/tmp")]
    #[case::root_at_data("/data", "/", "")]
    #[case::absolute_at_data("/data", "/etc", "/etc")]
    fn a_symlinked_target_is_resolved_inside_the_root(
        #[case] link: &str,
        #[case] to: &str,
        #[case] lands: &str,
    ) {
        let mut sys = hostile(
            &[(link, to)],
            &["/etc", "/var", "/var/tmp", "/host-dev", "/host-sys"],
        );
        // mountinfo names the mounts where they landed.
        sys.mountinfo = sys
            .mountinfo
            .replace(&format!("{ROOT}{link}"), &format!("{ROOT}{lands}"));
        run(&mut sys, &plan()).expect("builds inside the root");
        assert_stayed_inside(&sys);
        let landed = format!("{ROOT}{lands}");
        assert!(
            sys.calls.iter().any(|c| is_mount_at(c, &landed)),
            "nothing mounted at {landed}: {:#?}",
            sys.calls
        );
        assert!(
            !sys.calls
                .iter()
                .any(|c| is_mount_at(c, &format!("{ROOT}{link}"))),
            "mounted on the link itself"
        );
    }

    #[test]
    fn a_parent_symlinked_to_root_keeps_a_bind_inside() {
        // /a -> / and a bind at /a/b: the target is /b of the container.
        let p = plan_with_rw_bind_at(c"/a/b");
        let mut sys = hostile(&[("/a", "/")], &[]);
        run(&mut sys, &p).expect("builds");
        assert_stayed_inside(&sys);
        let b = format!("{ROOT}/b");
        assert!(sys.calls.contains(&Call::Mkdir {
            path: b.clone(),
            mode: 0o755
        }));
        assert!(sys.calls.iter().any(|c| is_mount_at(c, &b)));
    }

    #[test]
    fn a_dangling_dotdot_parent_is_refused() {
        // /x -> ../../../../new with /new missing, and a bind at /x/deep:
        // nothing is created through the link, in the root or outside.
        let p = plan_with_rw_bind_at(c"/x/deep");
        let mut sys = hostile(&[("/x", "../../../../new")], &[]);
        let err = run(&mut sys, &p).expect_err("a dangling link is refused");
        assert_stayed_inside(&sys);
        assert_eq!(err.step, Step::CreateMountTarget);
        assert_eq!(err.path(), format!("{ROOT}/x").as_bytes());
        assert_eq!(Errno::from_raw(err.errno), Errno::ENOENT);
        assert!(
            !sys.calls
                .iter()
                .any(|c| matches!(c, Call::PivotRoot { .. })),
            "stops at the refusal"
        );
    }

    #[rstest::rstest]
    #[case::proc("/proc", Step::MountProc)]
    #[case::dev("/dev", Step::MountDevTmpfs)]
    #[case::sys("/sys", Step::MountSys)]
    #[case::tmp("/tmp", Step::MountTmp)]
    fn a_dangling_system_dir_is_refused_naming_step_and_path(
        #[case] dir: &str,
        #[case] step: Step,
    ) {
        let mut sys = hostile(&[(dir, "../../../../../tmp/isocheck-canary/x")], &[]);
        let err = run(&mut sys, &plan()).expect_err("refused");
        assert_stayed_inside(&sys);
        assert_eq!(
            (err.step, err.path()),
            (step, format!("{ROOT}{dir}").as_bytes())
        );
        let msg = crate::step::ChildError::from(err).to_string();
        assert!(msg.contains(&format!("{ROOT}{dir}")), "{msg}");
    }

    #[test]
    fn every_target_is_reached_through_its_fd() {
        let mut sys = RecordingSyscalls {
            mountinfo: mountinfo(&[]),
            ..Default::default()
        };
        run(&mut sys, &plan()).expect("builds");
        assert_stayed_inside(&sys);
        let via_fd = sys
            .raw_mount_targets
            .iter()
            .filter(|t| ProcFdPath::parse(t.as_bytes()).is_some())
            .count();
        // /dev, 6 nodes, pts, shm, /proc, /proc/sys, 2 masks, /sys, /tmp, 2 binds.
        assert_eq!(via_fd, 17, "{:#?}", sys.raw_mount_targets);
    }

    #[test]
    fn proc_fd_paths_round_trip() {
        for fd in [0, 7, 42, 1000, i32::MAX] {
            let p = ProcFdPath::new(fd);
            assert_eq!(
                p.as_c_str().to_str(),
                Ok(format!("/proc/self/fd/{fd}").as_str())
            );
            assert_eq!(ProcFdPath::parse(p.as_c_str().to_bytes()), Some(fd));
        }
        assert_eq!(ProcFdPath::parse(b"/proc/self/fd/"), None);
        assert_eq!(ProcFdPath::parse(b"/proc/self/fd/1/x"), None);
    }

    /// The real openat2 and mkdirat (no root needed) on an image in a temp
    /// dir whose symlinks point at a canary outside it.
    mod real {
        use super::super::*;
        use crate::sys::RealSyscalls;
        use std::collections::BTreeSet;
        use std::fs;
        use std::os::unix::fs::symlink;
        use std::path::PathBuf;

        struct Image {
            dir: tempfile::TempDir,
        }

        impl Image {
            fn new() -> Image {
                let dir = tempfile::Builder::new()
                    .prefix("isocheck-unit-")
                    .tempdir()
                    .expect("temp dir");
                fs::create_dir_all(dir.path().join("root/etc")).expect("root");
                fs::create_dir(dir.path().join("canary")).expect("canary");
                fs::write(dir.path().join("canary/keep"), "keep").expect("keep");
                Image { dir }
            }
            fn root(&self) -> PathBuf {
                self.dir.path().join("root")
            }
            fn canary(&self) -> BTreeSet<String> {
                fs::read_dir(self.dir.path().join("canary"))
                    .expect("canary")
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect()
            }
            fn resolve(&self, rel: &str, leaf: Leaf) -> Result<PathBuf, StepFailure> {
                let path = CString::new(self.root().as_os_str().as_bytes()).expect("no NUL");
                let mut sys = RealSyscalls;
                let fd = sys.open_dir(&path).expect("open root");
                let root = Root { fd, path: &path };
                let fd = resolve(
                    &mut sys,
                    &root,
                    rel.as_bytes(),
                    leaf,
                    Step::CreateMountTarget,
                )?;
                let mut buf = [0u8; PATH_MAX];
                let at = sys.fd_path(&fd, &mut buf).expect("readlink");
                Ok(PathBuf::from(at.to_str().expect("utf8")))
            }
        }

        #[test]
        fn absolute_and_dotdot_links_never_leave_the_root() {
            let img = Image::new();
            let canary = img.dir.path().join("canary");
            let depth = img.root().components().count();
            let up = "../".repeat(depth + 2);
            let rel_canary = format!("{up}{}", canary.display());
            symlink(&canary, img.root().join("abs")).expect("link");
            symlink(&rel_canary, img.root().join("dotdot")).expect("link");
            symlink("/", img.root().join("a")).expect("link");
            symlink(&canary, img.root().join("etc/file")).expect("link");
            fs::create_dir_all(img.root().join(canary.strip_prefix("/").expect("abs")))
                .expect("same path inside");

            let inside = img.root().join(canary.strip_prefix("/").expect("abs"));
            assert_eq!(
                img.resolve("/abs/new/dir", Leaf::Dir).expect("ok"),
                inside.join("new/dir")
            );
            assert_eq!(
                img.resolve("/dotdot/x", Leaf::Dir).expect("ok"),
                inside.join("x")
            );
            assert_eq!(
                img.resolve("/a/b", Leaf::Dir).expect("ok"),
                img.root().join("b")
            );
            assert_eq!(
                img.resolve("/a/etc/f", Leaf::File).expect("ok"),
                img.root().join("etc/f")
            );
            assert_eq!(img.resolve("/etc/file", Leaf::Dir).expect("ok"), inside);
            assert_eq!(img.canary(), BTreeSet::from(["keep".to_owned()]));
        }

        #[test]
        fn a_dangling_link_is_refused_not_created_through() {
            let img = Image::new();
            let canary = img.dir.path().join("canary");
            symlink(canary.join("missing"), img.root().join("proc")).expect("link");
            let err = img.resolve("/proc", Leaf::Dir).expect_err("dangling");
            assert_eq!(Errno::from_raw(err.errno), Errno::ENOENT);
            assert_eq!(err.path(), img.root().join("proc").as_os_str().as_bytes());
            let err = img
                .resolve("/proc/sub", Leaf::File)
                .expect_err("dangling parent");
            assert_eq!(err.path(), img.root().join("proc").as_os_str().as_bytes());
            assert_eq!(img.canary(), BTreeSet::from(["keep".to_owned()]));
        }

        #[test]
        fn a_file_where_a_directory_belongs_is_refused() {
            let img = Image::new();
            fs::write(img.root().join("proc"), "not a dir").expect("file");
            let err = img.resolve("/proc", Leaf::Dir).expect_err("not a dir");
            assert_eq!(Errno::from_raw(err.errno), Errno::ENOTDIR);
            let err = img.resolve("/proc/x", Leaf::Dir).expect_err("not a dir");
            assert_eq!(Errno::from_raw(err.errno), Errno::ENOTDIR);
        }
    }
}

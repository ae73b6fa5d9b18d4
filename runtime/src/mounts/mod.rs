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

mod entry;
mod kernel_files;
pub use kernel_files::{DEV_LINKS, DEV_NODES};
mod mountinfo;
mod readonly;
mod resolve;
#[cfg(test)]
mod tests;
use entry::*;
use kernel_files::*;
pub use mountinfo::*;
use readonly::*;
use resolve::*;

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

/// Builds the whole root and enters it. Returns the step that failed.
pub fn build_root<S: Syscalls>(
    sys: &mut S,
    plan: &RootPlan,
    scratch: &mut [u8],
) -> Result<(), StepFailure> {
    crate::timeline::point(crate::timeline::Point::RootStart);
    if plan.hardening.rslave_root {
        make_host_root_slave(sys)?;
    }
    crate::timeline::point(crate::timeline::Point::HostRootSlave);
    mount_image(sys, plan)?;
    crate::timeline::point(crate::timeline::Point::ImageMounted);
    let root = open_root(sys, plan)?;
    mount_dev(sys, plan, &root)?;
    crate::timeline::point(crate::timeline::Point::DevMounted);
    let mut read_back = ReadBack::new();
    mount_proc(sys, plan, &root, &mut read_back, scratch)?;
    crate::timeline::point(crate::timeline::Point::ProcMounted);
    mount_sys(sys, plan, &root, &mut read_back, scratch)?;
    crate::timeline::point(crate::timeline::Point::SysMounted);
    readonly_kernel_paths(sys, plan, &root, &mut read_back, scratch)?;
    // /proc/sys, /sys and the read-only paths in one mountinfo read, before
    // the masks put writable mounts among them.
    read_back.verify(sys, scratch)?;
    crate::timeline::point(crate::timeline::Point::KernelPathsReadonly);
    mask_kernel_paths(sys, plan, &root)?;
    crate::timeline::point(crate::timeline::Point::KernelPathsMasked);
    mount_tmp(sys, plan, &root)?;
    crate::timeline::point(crate::timeline::Point::TmpMounted);
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
    crate::timeline::point(crate::timeline::Point::BindsMounted);
    enter_root(sys, plan, &root)?;
    crate::timeline::point(crate::timeline::Point::RootEntered);
    Ok(())
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

/// Sets the hostname (UTS namespace) through the seam.
pub fn set_hostname<S: Syscalls>(sys: &mut S, name: &CStr) -> Result<(), StepFailure> {
    sys.sethostname(name.to_bytes())
        .map_err(|e| fail(Step::SetHostname, e, name))
}

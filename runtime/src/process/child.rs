//! The first process, from clone to execve: its steps in running order,
//! every call through the [`Syscalls`] seam, so the whole order is unit
//! tested with the recording double. Everything it uses was prepared by the
//! parent before clone (see the module docs of `process` on allocation).

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use nix::errno::Errno;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;

use super::handshake::{self, FromChild, GO};
use crate::caps::CapPlan;
use crate::error::Error;
use crate::mount_lock::{self, NestedMaps};
use crate::mounts::{self, RootPlan};
use crate::seccomp::SeccompProgram;
use crate::spec::SpecError;
use crate::step::{Step, StepFailure};
use crate::sys::{self, RealSyscalls, Syscalls};

/// The seam plus entering the locked mount namespace, which forks a map
/// writer of its own (`mount_lock`) and so is one step here.
pub(crate) trait ChildSyscalls: Syscalls {
    fn lock_mounts(&mut self, maps: &NestedMaps) -> Result<(), StepFailure>;
}

impl ChildSyscalls for RealSyscalls {
    fn lock_mounts(&mut self, maps: &NestedMaps) -> Result<(), StepFailure> {
        mount_lock::enter(maps)
    }
}

impl ChildSyscalls for sys::RecordingSyscalls {
    fn lock_mounts(&mut self, maps: &NestedMaps) -> Result<(), StepFailure> {
        self.process("lock_mounts", maps.uid_map().trim_end())
            .map_err(|e| StepFailure::new(Step::LockMounts, e, b""))
    }
}

/// argv and envp as C strings plus the NULL-terminated pointer arrays
/// execve wants, built before clone.
pub(crate) struct ExecArgs {
    path: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ExecArgs {
    pub(crate) fn new(argv: &[String], env: &[String]) -> Result<ExecArgs, Error> {
        let to_c = |what: &'static str, s: &String| {
            CString::new(s.as_bytes()).map_err(|_| Error::Nul {
                what,
                value: s.clone(),
            })
        };
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| to_c("command", a))
            .collect::<Result<_, _>>()?;
        let env: Vec<CString> = env
            .iter()
            .map(|e| to_c("env", e))
            .collect::<Result<_, _>>()?;
        let path = argv.first().cloned().ok_or_else(|| {
            Error::Spec(SpecError::Invalid {
                field: "command".into(),
                message: "is empty".into(),
            })
        })?;
        let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        Ok(ExecArgs {
            path,
            _argv: argv,
            _env: env,
            argv_ptrs,
            envp_ptrs,
        })
    }

    /// execve; what comes back is the failure.
    pub(crate) fn exec<S: Syscalls>(&self, sys: &mut S) -> StepFailure {
        let errno = sys.execve(&self.path, &self.argv_ptrs, &self.envp_ptrs);
        StepFailure::new(Step::Execve, errno, self.path.to_bytes())
    }
}

/// The ids a process switches to inside a user namespace (or, without one,
/// keeps while dropping its supplementary groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub clear_groups: bool,
}

/// What confines the process right before execve; shared by the first
/// process and every process exec'd into the container.
#[derive(Debug, Clone)]
pub(crate) struct Confinement {
    pub caps: CapPlan,
    pub no_new_privs: bool,
    /// Compiled by the parent; the child only hands it to the kernel.
    pub seccomp: Option<SeccompProgram>,
    pub close_host_fds: bool,
}

/// Everything the first process does between clone and execve.
pub(crate) struct ChildPlan {
    pub sock: RawFd,
    /// The parent's end of the socket pair, inherited by the fork: closed
    /// first, so that a parent that dies before the death signal is set
    /// leaves the child reading EOF, not waiting forever on an end it holds
    /// itself.
    pub parent_sock: RawFd,
    /// fds to dup2 onto 0, 1, 2.
    pub stdio: [Option<RawFd>; 3],
    /// Without a pid namespace, getppid() tells whether the parent already
    /// died before PR_SET_PDEATHSIG took effect.
    pub expected_ppid: Option<i32>,
    /// Build the root before `Ready` rather than after `GO`, while the
    /// parent makes the cgroup and the veth: without a user namespace
    /// nothing of the root waits on the parent. With one, the root waits
    /// for the id maps.
    pub root_before_go: bool,
    pub ids: Option<Ids>,
    pub unshare_cgroup: bool,
    /// Contents for /proc/self/timens_offsets.
    pub time_offsets: Option<CString>,
    pub hostname: Option<CString>,
    pub loopback_up: bool,
    pub root: Option<RootPlan>,
    pub scratch: crate::sys::AnonBuf,
    pub cwd: CString,
    /// Set when the container has a user namespace and locked mounts.
    pub lock_mounts: Option<NestedMaps>,
    /// RLIMIT_NOFILE / RLIMIT_NPROC (soft = hard), set by the child itself
    /// once its root is built: a low nofile set any earlier would count
    /// the fds the runtime still holds (the caller's, not yet closed, and
    /// the root's) and refuse the root's opens with EMFILE.
    pub rlimits: [Option<(crate::sys::Rlimit, u64)>; 2],
    pub confinement: Confinement,
    pub exec: ExecArgs,
}

/// The first process, from clone to execve. Never returns.
pub(crate) fn child_main(plan: &mut ChildPlan) -> ! {
    let mut sys = RealSyscalls;
    match child_steps(&mut sys, plan) {
        Ok(Proceed::ParentGone) => sys::exit_now(1),
        Err(f) => {
            let _ = handshake::send(&mut sys, plan.sock, &FromChild::Failed(f));
            sys::exit_now(127)
        }
    }
}

/// Why the child stopped without a failure to report.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Proceed {
    ParentGone,
}

pub(crate) fn step<T>(step: Step, path: &[u8], r: Result<T, Errno>) -> Result<T, StepFailure> {
    crate::timeline::step(step);
    r.map_err(|e| StepFailure::new(step, e, path))
}

/// The steps, in running order; returns only when they stop early (a
/// successful execve does not return).
pub(crate) fn child_steps<S: ChildSyscalls>(
    sys: &mut S,
    plan: &mut ChildPlan,
) -> Result<Proceed, StepFailure> {
    sys.reset_signals();
    step(Step::ParentDeathSignal, b"", sys.set_parent_death_kill())?;
    step(
        Step::WaitForParent,
        b"parent's end",
        sys.close(plan.parent_sock),
    )?;
    if let Some(ppid) = plan.expected_ppid {
        if sys.getppid() != ppid {
            return Ok(Proceed::ParentGone);
        }
    }
    for (target, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            step(Step::Stdio, b"", sys.dup2(*fd, target as RawFd))?;
        }
    }
    if plan.root_before_go {
        if let Some(root) = &plan.root {
            mounts::build_root(sys, root, &mut plan.scratch)?;
        }
    }
    step(
        Step::WaitForParent,
        b"ready",
        handshake::send(sys, plan.sock, &FromChild::Ready),
    )?;
    let mut go = [0u8; 8];
    let mut joins = [-1; sys::MAX_PASSED_FDS];
    let (n, fds) = step(
        Step::WaitForParent,
        b"go",
        sys.recv_with_fds(plan.sock, &mut go, &mut joins),
    )?;
    if n == 0 {
        // The parent died or gave up: nothing to report to.
        return Ok(Proceed::ParentGone);
    }
    if n != 1 || go[0] != GO {
        return Err(StepFailure::new(Step::WaitForParent, Errno::EPROTO, b"go"));
    }
    // Into its cgroup (the `tasks` files the parent opened once it made
    // the v1 directories) before anything of its own runs, and before it
    // unshares its cgroup namespace, whose root is where it is then.
    for fd in &joins[..fds] {
        step(Step::JoinCgroup, b"tasks", sys.write_all(*fd, b"0"))?;
        step(Step::JoinCgroup, b"tasks", sys.close(*fd))?;
    }

    if let Some(ids) = plan.ids {
        set_ids(sys, ids)?;
    }
    if plan.unshare_cgroup {
        // After the parent placed us in our cgroup, so that cgroup becomes
        // the namespace's root.
        step(Step::UnshareCgroup, b"", sys.unshare(sys::CLONE_NEWCGROUP))?;
    }
    if let Some(offsets) = &plan.time_offsets {
        enter_time_namespace(sys, offsets)?;
    }
    if let Some(name) = &plan.hostname {
        mounts::set_hostname(sys, name)?;
    }
    if plan.loopback_up {
        step(Step::LoopbackUp, b"lo", sys.loopback_up())?;
    }
    if !plan.root_before_go {
        if let Some(root) = &plan.root {
            mounts::build_root(sys, root, &mut plan.scratch)?;
        }
    }
    step(Step::Chdir, plan.cwd.to_bytes(), sys.chdir(&plan.cwd))?;
    if let Some(maps) = &plan.lock_mounts {
        sys.lock_mounts(maps)?;
    }

    for (resource, value) in plan.rlimits.iter().flatten() {
        set_rlimit(sys, *resource, *value)?;
    }
    confine(sys, &plan.confinement)?;
    crate::timeline::point(crate::timeline::Point::Confined);
    Err(plan.exec.exec(sys))
}

/// One limit, soft = hard = `value`, read back: a kernel that holds
/// anything else fails the step (errno 0: the check failed).
fn set_rlimit<S: Syscalls>(
    sys: &mut S,
    resource: crate::sys::Rlimit,
    value: u64,
) -> Result<(), StepFailure> {
    let name = resource.name().as_bytes();
    let held = step(Step::SetRlimit, name, sys.set_rlimit(resource, value))?;
    if held != (value, value) {
        return Err(StepFailure::new(Step::SetRlimit, Errno::UnknownErrno, name));
    }
    Ok(())
}

/// setgroups (empty), setresgid, setresuid.
pub(crate) fn set_ids<S: Syscalls>(sys: &mut S, ids: Ids) -> Result<(), StepFailure> {
    if ids.clear_groups {
        step(Step::SetGroups, b"", sys.clear_groups())?;
    }
    step(Step::SetGid, b"", sys.setresgid(ids.gid))?;
    step(Step::SetUid, b"", sys.setresuid(ids.uid))
}

/// Capabilities, no_new_privs, the seccomp filter and the fds, in the order
/// the kernel allows: installing a filter needs no_new_privs or
/// CAP_SYS_ADMIN, so with no_new_privs it comes last (the filter then sees
/// nothing of the runtime's own setup), without it before the capabilities
/// are dropped. The fds go last of all: nothing after them needs one.
pub(crate) fn confine<S: Syscalls>(sys: &mut S, c: &Confinement) -> Result<(), StepFailure> {
    let seccomp = c.seccomp.as_ref();
    if !c.no_new_privs {
        if let Some(p) = seccomp {
            step(Step::Seccomp, b"", sys.seccomp_set_filter(&p.instructions))?;
        }
    }
    c.caps.apply(sys)?;
    if c.no_new_privs {
        step(Step::NoNewPrivs, b"", sys.set_no_new_privs())?;
        if let Some(p) = seccomp {
            step(Step::Seccomp, b"", sys.seccomp_set_filter(&p.instructions))?;
        }
    }
    if c.close_host_fds {
        step(Step::CloseFds, b"", sys.cloexec_from(3))?;
    }
    Ok(())
}

/// A time namespace can only be entered with its offsets already written:
/// unshare makes one for our children, we write the offsets, then setns
/// into it so the first process itself runs on the shifted clocks.
fn enter_time_namespace<S: Syscalls>(sys: &mut S, offsets: &CStr) -> Result<(), StepFailure> {
    step(Step::UnshareTime, b"", sys.unshare(sys::CLONE_NEWTIME))?;
    let path = c"/proc/self/timens_offsets";
    step(
        Step::WriteTimeOffsets,
        path.to_bytes(),
        sys.write_file(path, offsets.to_bytes()),
    )?;
    let ns = c"/proc/self/ns/time_for_children";
    step(
        Step::EnterTimeNamespace,
        ns.to_bytes(),
        sys.setns_path(ns, sys::CLONE_NEWTIME),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mount_lock::NestedMaps;
    use crate::mounts::RootPlan;
    use crate::rootfs::ImageMount;
    use crate::seccomp::{compile, SeccompPolicy};
    use crate::spec::{ContainerSpec, IdMap};
    use crate::sys::{Call, RecordingSyscalls};

    /// Every optional step on: a user, cgroup, time, UTS and net namespace,
    /// a root, locked mounts, seccomp with no_new_privs, fds closed.
    fn full_plan() -> ChildPlan {
        let map = [IdMap {
            inside: 0,
            outside: 100_000,
            count: 65_536,
        }];
        let root = RootPlan::new(
            &ContainerSpec::default(),
            std::path::Path::new("/tmp/isocheck-r-c-x/root"),
            ImageMount::Bind {
                source: c"/img".into(),
            },
        )
        .expect("plan");
        ChildPlan {
            sock: 5,
            parent_sock: 6,
            stdio: [None, Some(7), Some(8)],
            expected_ppid: None,
            root_before_go: false,
            ids: Some(Ids {
                uid: 0,
                gid: 0,
                clear_groups: true,
            }),
            unshare_cgroup: true,
            time_offsets: Some(c"monotonic 0 0\n".into()),
            hostname: Some(c"box".into()),
            loopback_up: true,
            root: Some(root),
            scratch: crate::sys::AnonBuf::new(4096).expect("mmap"),
            cwd: c"/".into(),
            lock_mounts: Some(NestedMaps::identity_of(&map, &map)),
            rlimits: [
                Some((crate::sys::Rlimit::Nofile, 32)),
                Some((crate::sys::Rlimit::Nproc, 16)),
            ],
            confinement: Confinement {
                caps: CapPlan::new(&["CAP_CHOWN".into()]).expect("caps"),
                no_new_privs: true,
                seccomp: Some(compile(&SeccompPolicy::default(), true).expect("filter")),
                close_host_fds: true,
            },
            exec: ExecArgs::new(&["/probe".into(), "noop".into()], &[]).expect("args"),
        }
    }

    /// A double whose mountinfo shows the root's read-only mounts as the
    /// kernel would after them (/proc/sys and /sys read-only).
    fn recording() -> RecordingSyscalls {
        let root = "/tmp/isocheck-r-c-x/root";
        let mut mountinfo = format!(
            "1 0 8:1 / / rw - ext4 /dev/sda rw\n\
             10 1 0:10 / {root}/proc rw,nosuid - proc proc rw\n\
             11 10 0:11 / {root}/proc/sys ro,nosuid - proc proc rw\n\
             12 1 0:12 / {root}/sys ro,nosuid - sysfs sysfs rw\n"
        );
        for (i, p) in ContainerSpec::default().readonly_paths.iter().enumerate() {
            let id = 20 + i;
            let p = p.display();
            mountinfo.push_str(&format!(
                "{id} 10 0:10 / {root}{p} ro,nosuid - proc proc rw\n"
            ));
        }
        RecordingSyscalls {
            mountinfo,
            passed_fds: vec![11, 12],
            ..RecordingSyscalls::default()
        }
    }

    /// The calls by kind in order: process calls by name, the root's
    /// mounts as one "build_root" entry.
    fn order(sys: &RecordingSyscalls) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for call in &sys.calls {
            let name = match call {
                Call::Process { call, .. } if *call == "capbset_drop" => "capbset_drop*".into(),
                Call::Process { call, arg } if *call == "unshare" => format!("unshare({arg})"),
                Call::Process { call, .. } => call.to_string(),
                Call::Sethostname { .. } => "sethostname".into(),
                Call::Chdir { path } if path == "/" => "chdir".into(),
                _ => "build_root".into(),
            };
            let repeats = name.ends_with('*') || name == "build_root";
            if !(repeats && out.last() == Some(&name)) {
                out.push(name);
            }
        }
        out
    }

    #[test]
    fn the_child_runs_every_step_in_order_and_ends_in_execve() {
        let mut plan = full_plan();
        let mut sys = recording();
        let failure = child_steps(&mut sys, &mut plan).expect_err("the double's execve fails");
        assert_eq!(failure.step, Step::Execve, "{:?}", sys.calls);
        assert_eq!(
            order(&sys),
            [
                "reset_signals",
                "prctl_pdeathsig",
                "close", // the parent's end of the socket pair
                "dup2",
                "dup2",
                "write",   // Ready
                "recvmsg", // GO, with two v1 tasks files
                "write",   // "0" to a v1 tasks file: into its cgroup
                "close",
                "write",
                "close",
                "setgroups",
                "setresgid",
                "setresuid",
                "unshare(0x2000000)", // CLONE_NEWCGROUP, once in its cgroup
                "unshare(0x80)",      // CLONE_NEWTIME
                "write_file",
                "setns",
                "sethostname",
                "loopback_up",
                "build_root",
                "chdir", // to "/" after pivot_root, the root's last step
                "chdir", // to the spec's cwd
                "lock_mounts",
                "setrlimit", // nofile: after the root's opens
                "setrlimit", // nproc
                "capbset_drop*",
                "capset",
                "ambient_clear",
                "ambient_raise",
                "no_new_privs",
                "seccomp",
                "close_range_cloexec",
                "execve",
            ]
        );
    }

    #[test]
    fn without_a_user_namespace_the_root_is_built_before_ready() {
        let mut plan = full_plan();
        plan.root_before_go = true;
        plan.lock_mounts = None;
        let mut sys = recording();
        let failure = child_steps(&mut sys, &mut plan).expect_err("the double's execve fails");
        assert_eq!(failure.step, Step::Execve, "{:?}", sys.calls);
        let calls = order(&sys);
        assert_eq!(
            calls[..9],
            [
                "reset_signals",
                "prctl_pdeathsig",
                "close",
                "dup2",
                "dup2",
                "build_root",
                "chdir", // to "/" after pivot_root
                "write", // Ready: the parent makes the cgroup meanwhile
                "recvmsg",
            ],
            "{calls:?}"
        );
        // Into its cgroup after GO, before its cgroup namespace.
        let at = |name: &str| calls.iter().position(|c| c == name).expect(name);
        assert!(at("recvmsg") < at("unshare(0x2000000)"), "{calls:?}");
        assert_eq!(calls.iter().filter(|c| *c == "build_root").count(), 1);
    }

    #[test]
    fn without_no_new_privs_the_filter_goes_in_before_the_caps_drop() {
        let mut plan = full_plan();
        plan.confinement.no_new_privs = false;
        let mut sys = recording();
        let _ = child_steps(&mut sys, &mut plan);
        let calls = order(&sys);
        let at = |name: &str| calls.iter().position(|c| c == name).expect(name);
        assert!(at("seccomp") < at("capbset_drop*"), "{calls:?}");
        assert!(!calls.contains(&"no_new_privs".to_string()));
    }

    #[test]
    fn a_parent_that_is_gone_stops_the_child_before_any_setup() {
        let mut plan = full_plan();
        let mut sys = RecordingSyscalls {
            parent_gone: true,
            ..recording()
        };
        assert_eq!(child_steps(&mut sys, &mut plan), Ok(Proceed::ParentGone));
        assert_eq!(
            sys.process_calls().last().map(String::as_str),
            Some("recvmsg()")
        );
    }

    #[test]
    fn a_failing_step_stops_the_child_and_names_itself() {
        let mut plan = full_plan();
        let mut sys = RecordingSyscalls {
            fail_target: Some(("setresuid".into(), Errno::EPERM)),
            ..recording()
        };
        let f = child_steps(&mut sys, &mut plan).expect_err("setresuid fails");
        assert_eq!((f.step, f.errno), (Step::SetUid, Errno::EPERM as i32));
        assert_eq!(
            sys.process_calls().last().map(String::as_str),
            Some("setresuid(0)")
        );
    }
}

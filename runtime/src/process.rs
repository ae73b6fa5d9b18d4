//! One container from spec to exit: clone3 with the namespace flags, a
//! typed parent↔child handshake over a socketpair, the child's setup steps
//! in running order, execve; then wait / exec / kill, and cleanup on drop.
//!
//! The handshake, step by step:
//! 1. child: PR_SET_PDEATHSIG, stdio, then `Ready` →
//! 2. parent: `parent_setup` hooks (cgroup, veth), uid/gid maps, then `Go` →
//! 3. child: ids, cgroup ns, time ns, hostname, lo, root, caps,
//!    no_new_privs, seccomp (before the caps when no_new_privs is off),
//!    execve. A failing step sends `Failed(step, errno, path)`
//!    and exits; success closes the close-on-exec socket, so the parent
//!    reads EOF exactly when execve happened.
//!
//! Allocation in the child: clone3 without CLONE_VM is a fork, and if the
//! parent has other threads (libtest does), a lock one of them held at that
//! instant (the allocator's) stays locked in the child forever. So the
//! parent prepares every string, pointer array and buffer before clone, and
//! the child's path uses fixed-size stack buffers; what still allocates is
//! the caps crate's capset helpers (small, rare). The parent never waits on
//! the child without a timeout, so a wedged child is an error, not a hang.

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::caps::CapPlan;
use crate::cgroups::{Cgroup, CgroupError, CgroupManager, CgroupStats};
use crate::error::Error;
use crate::mount_lock::{self, NestedMaps};
use crate::mounts::{self, RootPlan};
use crate::network::{self, Netns, VethAttachment};
use crate::rootfs::{self, PreparedRootfs};
use crate::seccomp::SeccompProgram;
use crate::spec::{
    BridgeAttachment, ContainerSpec, Hardening, IdMap, Limits, NetworkMode, SpecError, UserMapping,
};
use crate::step::{ChildError, Step, StepFailure, FAILURE_WIRE_LEN};
use crate::sys::{self, Forked, RealSyscalls};

/// How long the parent waits for each handshake message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// mountinfo buffer for the child's read-backs (sized before clone).
const MOUNTINFO_SCRATCH: usize = 1 << 20;

// Handshake messages (SOCK_SEQPACKET keeps their boundaries).
const MSG_READY: u8 = b'R';
const MSG_GO: u8 = b'G';
const MSG_FAILED: u8 = b'E';
const MSG_PID: u8 = b'P';

/// Where a standard stream of the first process goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioMode {
    #[default]
    Inherit,
    Null,
    /// A pipe; the parent's end via `take_stdin` / `take_stdout` / `take_stderr`.
    Piped,
}

/// A hook run in the parent with the child's host pid, while the child
/// waits in the handshake (before its root is built, before exec).
pub type ParentSetup = Box<dyn FnMut(i32) -> Result<(), String>>;

/// How to start the container (everything that is not the spec).
pub struct SpawnOptions {
    /// Names temp dirs `isocheck-<run_id>-<name>-*`.
    pub run_id: String,
    /// Container name, unique within the run.
    pub name: String,
    pub stdin: StdioMode,
    pub stdout: StdioMode,
    pub stderr: StdioMode,
    /// Run in order after clone; the first error aborts the spawn (the child
    /// is killed and reaped).
    pub parent_setup: Vec<ParentSetup>,
    /// The network namespace the bridge of a bridged container lives in
    /// ("the host"); `None` is the caller's own.
    pub host_netns: Option<Netns>,
}

impl SpawnOptions {
    /// Inherited stdio, no hooks.
    pub fn new(run_id: impl Into<String>, name: impl Into<String>) -> SpawnOptions {
        SpawnOptions {
            run_id: run_id.into(),
            name: name.into(),
            stdin: StdioMode::Inherit,
            stdout: StdioMode::Inherit,
            stderr: StdioMode::Inherit,
            parent_setup: Vec::new(),
            host_netns: None,
        }
    }
}

impl fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("run_id", &self.run_id)
            .field("name", &self.name)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("parent_setup", &self.parent_setup.len())
            .field("host_netns", &self.host_netns.is_some())
            .finish()
    }
}

/// How a process ended: an exit code or the signal that killed it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn from_wait(status: WaitStatus) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, code) => Some(ExitStatus {
                code: Some(code),
                signal: None,
            }),
            WaitStatus::Signaled(_, sig, _) => Some(ExitStatus {
                code: None,
                signal: Some(sig as i32),
            }),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// What the child runs, prepared by the parent
// ---------------------------------------------------------------------------

/// argv and envp as C strings plus the NULL-terminated pointer arrays
/// execve wants, built before clone.
struct ExecArgs {
    path: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
}

impl ExecArgs {
    fn new(argv: &[String], env: &[String]) -> Result<ExecArgs, Error> {
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

    fn exec(&self) -> StepFailure {
        let errno = sys::execve(&self.path, &self.argv_ptrs, &self.envp_ptrs);
        StepFailure::new(Step::Execve, errno, self.path.to_bytes())
    }
}

/// Everything the first process does between clone and execve.
struct ChildPlan {
    sock: RawFd,
    /// fds to dup2 onto 0, 1, 2.
    stdio: [Option<RawFd>; 3],
    /// Without a pid namespace, getppid() tells whether the parent already
    /// died before PR_SET_PDEATHSIG took effect.
    expected_ppid: Option<i32>,
    /// (uid, gid, clear supplementary groups) to switch to inside a user ns.
    ids: Option<(u32, u32, bool)>,
    unshare_cgroup: bool,
    /// Contents for /proc/self/timens_offsets.
    time_offsets: Option<CString>,
    hostname: Option<CString>,
    loopback_up: bool,
    root: Option<RootPlan>,
    scratch: Vec<u8>,
    cwd: CString,
    caps: CapPlan,
    no_new_privs: bool,
    /// Compiled by the parent; the child only hands it to the kernel.
    seccomp: Option<SeccompProgram>,
    close_host_fds: bool,
    /// Set when the container has a user namespace and locked mounts.
    lock_mounts: Option<NestedMaps>,
    exec: ExecArgs,
}

fn send(sock: BorrowedFd<'_>, msg: &[u8]) -> Result<(), Errno> {
    sys::write_all(sock, msg)
}

fn send_failure(sock: BorrowedFd<'_>, f: &StepFailure) {
    let mut msg = [0u8; 1 + FAILURE_WIRE_LEN];
    msg[0] = MSG_FAILED;
    msg[1..].copy_from_slice(&f.encode());
    let _ = send(sock, &msg);
}

/// The first process, from clone to execve. Never returns.
fn child_main(plan: &mut ChildPlan) -> ! {
    // SAFETY: the fd number was valid in the parent at clone and is ours
    // (a copy) in the child; it lives until exec or _exit.
    let sock = unsafe { BorrowedFd::borrow_raw(plan.sock) };
    match child_steps(plan, sock) {
        Ok(Proceed::ParentGone) => sys::exit_now(1),
        Err(f) => {
            send_failure(sock, &f);
            sys::exit_now(127)
        }
    }
}

enum Proceed {
    ParentGone,
}

fn step<T>(step: Step, path: &[u8], r: Result<T, Errno>) -> Result<T, StepFailure> {
    r.map_err(|e| StepFailure::new(step, e, path))
}

fn child_steps(plan: &mut ChildPlan, sock: BorrowedFd<'_>) -> Result<Proceed, StepFailure> {
    sys::reset_signals();
    step(Step::ParentDeathSignal, b"", sys::set_parent_death_kill())?;
    if let Some(ppid) = plan.expected_ppid {
        if sys::getppid() != ppid {
            return Ok(Proceed::ParentGone);
        }
    }
    for (target, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = fd {
            step(Step::Stdio, b"", sys::dup2(*fd, target as RawFd))?;
        }
    }
    step(Step::WaitForParent, b"ready", send(sock, &[MSG_READY]))?;
    let mut go = [0u8; 8];
    let n = step(Step::WaitForParent, b"go", sys::read(sock, &mut go))?;
    if n == 0 {
        // The parent died or gave up: nothing to report to.
        return Ok(Proceed::ParentGone);
    }
    if go[0] != MSG_GO {
        return Err(StepFailure::new(Step::WaitForParent, Errno::EPROTO, b"go"));
    }

    if let Some((uid, gid, clear_groups)) = plan.ids {
        sys::set_ids(uid, gid, clear_groups).map_err(|(s, e)| StepFailure::new(s, e, b""))?;
    }
    if plan.unshare_cgroup {
        // After the parent placed us in our cgroup, so that cgroup becomes
        // the namespace's root.
        step(Step::UnshareCgroup, b"", sys::unshare(sys::CLONE_NEWCGROUP))?;
    }
    if let Some(offsets) = &plan.time_offsets {
        enter_time_namespace(offsets)?;
    }
    let mut real = RealSyscalls;
    if let Some(name) = &plan.hostname {
        mounts::set_hostname(&mut real, name)?;
    }
    if plan.loopback_up {
        step(Step::LoopbackUp, b"lo", sys::loopback_up())?;
    }
    if let Some(root) = &plan.root {
        mounts::build_root(&mut real, root, &mut plan.scratch)?;
    }
    step(Step::Chdir, plan.cwd.to_bytes(), sys_chdir(&plan.cwd))?;
    if let Some(maps) = &plan.lock_mounts {
        mount_lock::enter(maps)?;
    }
    confine(&plan.caps, plan.no_new_privs, plan.seccomp.as_ref())?;
    if plan.close_host_fds {
        step(Step::CloseFds, b"", sys::cloexec_from(3))?;
    }
    Err(plan.exec.exec())
}

/// Capabilities, no_new_privs and the seccomp filter, in the order the
/// kernel allows: installing a filter needs no_new_privs or CAP_SYS_ADMIN,
/// so with no_new_privs it comes last (the filter then sees nothing of the
/// runtime's own setup), without it before the capabilities are dropped.
fn confine(
    caps: &CapPlan,
    no_new_privs: bool,
    seccomp: Option<&SeccompProgram>,
) -> Result<(), StepFailure> {
    let install =
        |p: &SeccompProgram| step(Step::Seccomp, b"", sys::seccomp_set_filter(&p.instructions));
    if !no_new_privs {
        if let Some(p) = seccomp {
            install(p)?;
        }
    }
    caps.apply()?;
    if no_new_privs {
        step(Step::NoNewPrivs, b"", sys::set_no_new_privs())?;
        if let Some(p) = seccomp {
            install(p)?;
        }
    }
    Ok(())
}

fn sys_chdir(path: &CStr) -> Result<(), Errno> {
    use crate::sys::Syscalls;
    RealSyscalls.chdir(path)
}

/// A time namespace can only be entered with its offsets already written:
/// unshare makes one for our children, we write the offsets, then setns
/// into it so the first process itself runs on the shifted clocks.
fn enter_time_namespace(offsets: &CStr) -> Result<(), StepFailure> {
    step(Step::UnshareTime, b"", sys::unshare(sys::CLONE_NEWTIME))?;
    let path = c"/proc/self/timens_offsets";
    let fd = step(
        Step::WriteTimeOffsets,
        path.to_bytes(),
        sys::open(path, libc_flags::WRONLY),
    )?;
    step(
        Step::WriteTimeOffsets,
        path.to_bytes(),
        sys::write_all(fd.as_fd(), offsets.to_bytes()),
    )?;
    drop(fd);
    let ns = c"/proc/self/ns/time_for_children";
    let fd = step(
        Step::EnterTimeNamespace,
        ns.to_bytes(),
        sys::open(ns, libc_flags::RDONLY),
    )?;
    step(
        Step::EnterTimeNamespace,
        ns.to_bytes(),
        sys::setns(fd.as_fd(), sys::CLONE_NEWTIME),
    )
}

/// open(2) flags, named here so this module stays free of libc.
/// The host's cgroup layout, probed once per process (mountinfo does not
/// change under a running harness).
fn cgroup_manager() -> Result<&'static CgroupManager, CgroupError> {
    static MANAGER: std::sync::OnceLock<CgroupManager> = std::sync::OnceLock::new();
    if let Some(m) = MANAGER.get() {
        return Ok(m);
    }
    let m = CgroupManager::detect()?;
    Ok(MANAGER.get_or_init(|| m))
}

mod libc_flags {
    pub const RDONLY: i32 = nix::fcntl::OFlag::O_RDONLY.bits();
    pub const WRONLY: i32 = nix::fcntl::OFlag::O_WRONLY.bits();
    pub const PATH_DIR: i32 =
        nix::fcntl::OFlag::O_PATH.bits() | nix::fcntl::OFlag::O_DIRECTORY.bits();
}

// ---------------------------------------------------------------------------
// The parent's side
// ---------------------------------------------------------------------------

/// Stdio ends: what the child dup2s, what the parent keeps.
struct Stdio {
    child: Option<OwnedFd>,
    parent: Option<File>,
}

fn stdio(mode: StdioMode, child_reads: bool) -> Result<Stdio, Error> {
    match mode {
        StdioMode::Inherit => Ok(Stdio {
            child: None,
            parent: None,
        }),
        StdioMode::Null => {
            let flags = if child_reads {
                libc_flags::RDONLY
            } else {
                libc_flags::WRONLY
            };
            let fd = sys::open(c"/dev/null", flags)
                .map_err(|e| Error::os_path("open", "/dev/null", e))?;
            Ok(Stdio {
                child: Some(fd),
                parent: None,
            })
        }
        StdioMode::Piped => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::os("pipe2", e))?;
            let (child, parent) = if child_reads { (r, w) } else { (w, r) };
            Ok(Stdio {
                child: Some(child),
                parent: Some(File::from(parent)),
            })
        }
    }
}

fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::os("socketpair", e))
}

/// One handshake message from the child, or EOF.
enum Received {
    Message(Vec<u8>),
    Eof,
}

fn receive(sock: BorrowedFd<'_>, deadline: Instant, what: &str) -> Result<Received, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    let ready = sys::poll_readable(sock, left.as_millis().min(i32::MAX as u128) as i32)
        .map_err(|e| Error::os("poll handshake socket", e))?;
    if !ready {
        return Err(Error::Handshake(format!(
            "no answer from the child within {HANDSHAKE_TIMEOUT:?} while waiting for {what}"
        )));
    }
    let mut buf = vec![0u8; 1 + FAILURE_WIRE_LEN + 16];
    let n = sys::read(sock, &mut buf).map_err(|e| Error::os("read handshake socket", e))?;
    if n == 0 {
        return Ok(Received::Eof);
    }
    buf.truncate(n);
    Ok(Received::Message(buf))
}

fn decode_failure(msg: &[u8]) -> Option<ChildError> {
    if msg.first() == Some(&MSG_FAILED) {
        StepFailure::decode(&msg[1..]).map(ChildError::from)
    } else {
        None
    }
}

/// The clone flags for the namespaces made at clone time (cgroup and time
/// namespaces are made later by the child; see the module docs).
fn clone_flags(spec: &ContainerSpec) -> u64 {
    let ns = &spec.namespaces;
    let mut flags = CloneFlags::empty();
    for (on, flag) in [
        (ns.pid, CloneFlags::CLONE_NEWPID),
        (ns.mount, CloneFlags::CLONE_NEWNS),
        (ns.uts, CloneFlags::CLONE_NEWUTS),
        (ns.ipc, CloneFlags::CLONE_NEWIPC),
        (ns.net, CloneFlags::CLONE_NEWNET),
        (ns.user, CloneFlags::CLONE_NEWUSER),
    ] {
        if on {
            flags |= flag;
        }
    }
    flags.bits() as u32 as u64
}

/// Every namespace the container has, for setns(pidfd, ...) by `exec`.
fn join_flags(spec: &ContainerSpec) -> i32 {
    if !spec.hardening.exec_joins_namespaces {
        // Switched off (a control): exec takes PID 1's root and nothing else.
        return 0;
    }
    let ns = &spec.namespaces;
    let mut flags = clone_flags(spec) as i32;
    if ns.cgroup {
        flags |= sys::CLONE_NEWCGROUP;
    }
    if ns.time {
        flags |= sys::CLONE_NEWTIME;
    }
    flags
}

/// uid/gid maps used when `namespaces.user` is on but no mapping is given:
/// root inside is the caller outside (like `unshare -r`).
fn default_mapping() -> UserMapping {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    UserMapping {
        uid_map: vec![IdMap {
            inside: 0,
            outside: uid,
            count: 1,
        }],
        gid_map: vec![IdMap {
            inside: 0,
            outside: gid,
            count: 1,
        }],
    }
}

/// The host id that `inside` maps to.
fn outside_of(map: &[IdMap], inside: u32) -> Option<u32> {
    map.iter()
        .find(|m| {
            inside >= m.inside && u64::from(inside) < u64::from(m.inside) + u64::from(m.count)
        })
        .map(|m| m.outside + (inside - m.inside))
}

fn map_text(map: &[IdMap]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

fn write_id_maps(pid: i32, mapping: &UserMapping) -> Result<(), Error> {
    let proc_ = format!("/proc/{pid}");
    if !nix::unistd::geteuid().is_root() {
        // An unprivileged writer may map gids only with setgroups denied.
        let p = format!("{proc_}/setgroups");
        std::fs::write(&p, "deny").map_err(|e| Error::os_path("write setgroups", p, e))?;
    }
    for (file, map) in [("uid_map", &mapping.uid_map), ("gid_map", &mapping.gid_map)] {
        let p = format!("{proc_}/{file}");
        std::fs::write(&p, map_text(map)).map_err(|e| Error::os_path("write id map", p, e))?;
    }
    Ok(())
}

/// Names used in paths must stay one path component.
fn check_name(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || value.len() > 64
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::Spec(SpecError::Invalid {
            field: field.into(),
            message: format!("{value:?} must be 1 to 64 of [A-Za-z0-9._-]"),
        }));
    }
    Ok(())
}

/// A running (or exited, not yet dropped) container.
pub struct Container {
    pid: i32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    join_flags: i32,
    /// (uid, gid, clear groups) for processes joining a user namespace.
    ids: Option<(u32, u32, bool)>,
    caps: CapPlan,
    no_new_privs: bool,
    seccomp: Option<SeccompProgram>,
    hardening: Hardening,
    env: Vec<String>,
    /// The run's temp dir; removed after PID 1 is reaped.
    rootfs: Option<PreparedRootfs>,
    /// Every task of the container; killed and removed on drop.
    cgroup: Option<Cgroup>,
    /// The veth to the bridge; detached on drop.
    network: Option<VethAttachment>,
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("pid", &self.pid)
            .field("status", &self.status)
            .field(
                "temp_dir",
                &self.rootfs.as_ref().map(|r| r.dir.path().to_path_buf()),
            )
            .finish_non_exhaustive()
    }
}

impl Container {
    /// Validates the spec, prepares the rootfs, clones the first process
    /// into its namespaces, runs `opts.parent_setup`, and returns once the
    /// command was exec'd (or with the step that failed in the child).
    ///
    /// PR_SET_PDEATHSIG ties the container to the *thread* that calls
    /// spawn: if that thread exits, PID 1 is killed.
    pub fn spawn(spec: &ContainerSpec, mut opts: SpawnOptions) -> Result<Container, Error> {
        spec.validate()?;
        check_name("run_id", &opts.run_id)?;
        check_name("name", &opts.name)?;
        let caps = CapPlan::new(&spec.capabilities)?;
        let seccomp = match &spec.seccomp {
            Some(policy) => Some(crate::seccomp::compile(policy, spec.namespaces.user)?),
            None => None,
        };

        let mapping = spec
            .namespaces
            .user
            .then(|| spec.user.clone().unwrap_or_else(default_mapping));
        let clear_groups = spec.hardening.clear_groups && nix::unistd::geteuid().is_root();
        let ids = match &mapping {
            Some(m) => {
                let root_mapped =
                    outside_of(&m.uid_map, 0).is_some() && outside_of(&m.gid_map, 0).is_some();
                root_mapped.then_some((0, 0, clear_groups))
            }
            // Without a user namespace the ids stay what they are; only the
            // supplementary groups go.
            None => clear_groups.then(|| {
                let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
                (uid.as_raw(), gid.as_raw(), true)
            }),
        };
        let owner = mapping
            .as_ref()
            .and_then(|m| Some((outside_of(&m.uid_map, 0)?, outside_of(&m.gid_map, 0)?)));

        let rootfs = if spec.namespaces.mount {
            Some(rootfs::prepare(spec, &opts.run_id, &opts.name, owner)?)
        } else {
            None
        };
        let root = match &rootfs {
            Some(r) => Some(
                RootPlan::new(spec, &r.new_root, r.image.clone()).map_err(|e| Error::Nul {
                    what: e.what,
                    value: e.value,
                })?,
            ),
            None => None,
        };

        // Every container gets its own cgroup (limits, evidence, group kill),
        // made before the clone so a refusal creates no process.
        let manager = cgroup_manager()?;
        let mut cgroup = manager.create(&format!("{}-{}", opts.run_id, opts.name), &spec.limits)?;
        if spec.hardening.device_allowlist {
            manager.restrict_devices(&mut cgroup)?;
        }
        let cgroup = Some(cgroup);

        let stdin = stdio(opts.stdin, true)?;
        let stdout = stdio(opts.stdout, false)?;
        let stderr = stdio(opts.stderr, false)?;
        let (parent_sock, child_sock) = seqpacket_pair()?;

        let time_offsets = spec.namespaces.time.then(|| {
            let t = spec.time_offsets;
            CString::new(format!(
                "monotonic {} 0\nboottime {} 0\n",
                t.monotonic_secs, t.boottime_secs
            ))
            .unwrap_or_default()
        });
        // A UTS namespace without a hostname in the spec gets the
        // container's name (checked above: 1 to 64 of [A-Za-z0-9._-]), never
        // the host's, which it would otherwise inherit.
        let hostname = match (&spec.hostname, spec.namespaces.uts) {
            (Some(h), _) => Some(h),
            (None, true) => Some(&opts.name),
            (None, false) => None,
        };
        let hostname = match hostname {
            Some(h) => Some(CString::new(h.as_bytes()).map_err(|_| Error::Nul {
                what: "hostname",
                value: h.clone(),
            })?),
            None => None,
        };
        let cwd = CString::new(spec.cwd.as_os_str().as_bytes()).map_err(|_| Error::Nul {
            what: "cwd",
            value: spec.cwd.display().to_string(),
        })?;
        // Only a root built in a mount namespace of the user namespace's has
        // mounts to lock.
        let lock_mounts = match (&mapping, &root) {
            (Some(m), Some(_)) if spec.hardening.locked_mounts => {
                Some(NestedMaps::identity_of(&m.uid_map, &m.gid_map))
            }
            _ => None,
        };
        let mut plan = ChildPlan {
            sock: child_sock.as_raw_fd(),
            stdio: [
                stdin.child.as_ref().map(AsRawFd::as_raw_fd),
                stdout.child.as_ref().map(AsRawFd::as_raw_fd),
                stderr.child.as_ref().map(AsRawFd::as_raw_fd),
            ],
            expected_ppid: (!spec.namespaces.pid).then(|| nix::unistd::getpid().as_raw()),
            ids,
            unshare_cgroup: spec.namespaces.cgroup,
            time_offsets,
            hostname,
            loopback_up: spec.namespaces.net,
            scratch: if root.is_some() {
                vec![0u8; MOUNTINFO_SCRATCH]
            } else {
                Vec::new()
            },
            root,
            cwd,
            caps: caps.clone(),
            no_new_privs: spec.no_new_privs,
            seccomp: seccomp.clone(),
            close_host_fds: spec.hardening.close_host_fds,
            lock_mounts,
            exec: ExecArgs::new(&spec.command, &spec.env)?,
        };

        // SAFETY: the child runs only `child_main`, which uses what `plan`
        // prepared, avoids allocating (see the module docs) and ends in
        // execve or _exit.
        let forked =
            unsafe { sys::clone3(clone_flags(spec), true) }.map_err(|e| Error::os("clone3", e))?;
        let (pid, pidfd) = match forked {
            Forked::Child => child_main(&mut plan),
            Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(plan);
        drop(child_sock);
        drop((stdin.child, stdout.child, stderr.child));
        let pidfd = pidfd.ok_or_else(|| Error::Handshake("clone3 returned no pidfd".into()))?;

        // From here on, dropping `container` kills and reaps the child and
        // removes the temp dir, whatever fails.
        let mut container = Container {
            pid,
            pidfd,
            status: None,
            stdin: stdin.parent,
            stdout: stdout.parent,
            stderr: stderr.parent,
            join_flags: join_flags(spec),
            ids,
            caps,
            no_new_privs: spec.no_new_privs,
            seccomp,
            hardening: spec.hardening,
            env: spec.env.clone(),
            rootfs,
            cgroup,
            network: None,
        };
        let bridge = match (&spec.network, spec.namespaces.net) {
            (NetworkMode::Bridge(att), true) => Some((att, opts.host_netns.take())),
            _ => None,
        };
        container.handshake(
            parent_sock.as_fd(),
            &mut opts.parent_setup,
            mapping.as_ref(),
            bridge,
            &spec.limits,
        )?;
        Ok(container)
    }

    fn handshake(
        &mut self,
        sock: BorrowedFd<'_>,
        hooks: &mut [ParentSetup],
        mapping: Option<&UserMapping>,
        bridge: Option<(&BridgeAttachment, Option<Netns>)>,
        limits: &Limits,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match receive(sock, deadline, "ready")? {
            Received::Message(m) if m == [MSG_READY] => {}
            Received::Message(m) => return Err(self.child_failed(&m)),
            Received::Eof => return Err(self.child_vanished("ready")),
        }
        // Into its cgroup before it can run anything of its own, and before
        // it unshares its cgroup namespace (whose root is where it is then).
        if let Some(cgroup) = &self.cgroup {
            cgroup.add_process(self.pid)?;
        }
        // rlimits and oom_score_adj, before it can run anything of its own.
        crate::rlimits::apply(self.pid, limits)?;
        // The veth is created with its peer already in the child's netns.
        if let Some((att, host)) = bridge {
            let host = match host {
                Some(h) => h,
                None => Netns::current()?,
            };
            // The host end is named after PID 1 (unique while it lives), not
            // the container's name: a dying namespace may still hold the veth
            // of an earlier container of the same name for a moment.
            let hint = self.pid.to_string();
            self.network = Some(network::attach(&host, self.pid, att, &hint)?);
        }
        for (index, hook) in hooks.iter_mut().enumerate() {
            hook(self.pid).map_err(|message| Error::ParentSetup { index, message })?;
        }
        if let Some(m) = mapping {
            write_id_maps(self.pid, m)?;
        }
        send(sock, &[MSG_GO]).map_err(|e| Error::os("send go", e))?;
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match receive(sock, deadline, "exec")? {
            // The socket is close-on-exec: EOF means execve succeeded (or
            // the child died, which `wait` will show).
            Received::Eof => Ok(()),
            Received::Message(m) => Err(self.child_failed(&m)),
        }
    }

    fn child_failed(&mut self, msg: &[u8]) -> Error {
        let _ = self.wait_timeout(Duration::from_secs(5));
        match decode_failure(msg) {
            Some(e) => Error::Child(e),
            None => Error::Handshake(format!("unexpected message {msg:?}")),
        }
    }

    fn child_vanished(&mut self, waiting_for: &str) -> Error {
        let status = self.wait_timeout(Duration::from_secs(5)).ok().flatten();
        Error::Handshake(format!(
            "the child exited while the parent waited for {waiting_for}: {status:?}"
        ))
    }

    /// Host pid of the first process.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfd of the first process (stays valid until drop).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The run's temp dir (`isocheck-<run_id>-<name>-*`), if a rootfs was made.
    pub fn temp_dir(&self) -> Option<&std::path::Path> {
        self.rootfs.as_ref().map(|r| r.dir.path())
    }

    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }

    /// Waits for PID 1 to exit and reaps it (once; later calls repeat the
    /// status).
    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        wait_once(self.pidfd.as_fd(), &mut self.status)
    }

    /// Like [`wait`](Self::wait) but gives up after `d` with `Ok(None)`.
    pub fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>, Error> {
        wait_once_timeout(self.pidfd.as_fd(), &mut self.status, d)
    }

    /// SIGKILL to PID 1 through its pidfd (never a recycled pid). With a pid
    /// namespace the kernel then kills every process in it.
    pub fn kill_init(&self) -> Result<(), Error> {
        kill_unless_reaped(self.pidfd.as_fd(), self.status)
    }

    /// Sends `signal` to PID 1 through its pidfd (never a recycled pid);
    /// nothing once PID 1 has exited. The init of a pid namespace only gets
    /// the signals it handles or blocks: the kernel drops the rest (SIGKILL
    /// and SIGSTOP aside), as for any container runtime's PID 1.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        signal_unless_reaped(self.pidfd.as_fd(), self.status, signal)
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> Option<&Cgroup> {
        self.cgroup.as_ref()
    }

    /// The kernel's counters for the container (OOM kills, pids-limit hits,
    /// throttling, usage); `None` when they cannot be read.
    pub fn cgroup_stats(&self) -> Option<CgroupStats> {
        self.cgroup.as_ref().and_then(|c| c.stats().ok())
    }

    /// Every task still in the container's cgroup. A read that fails is an
    /// error, never "no tasks".
    pub fn cgroup_procs(&self) -> Result<Vec<i32>, Error> {
        match &self.cgroup {
            Some(c) => Ok(c.procs()?),
            None => Err(Error::Handshake("the container has no cgroup".into())),
        }
    }

    /// Whether [`exec`](Self::exec) joins PID 1's namespaces and root (off
    /// only in a control): when not, argv[0] is a path of the caller's.
    pub fn exec_joins(&self) -> bool {
        self.join_flags != 0
    }

    /// The veth attachment of a bridged container.
    pub fn network(&self) -> Option<&VethAttachment> {
        self.network.as_ref()
    }

    /// Kills the whole container: every task in its cgroup, strays that
    /// left the process tree included (cgroup.kill, or freeze + SIGKILL +
    /// thaw), then PID 1 through its pidfd.
    pub fn kill(&self) -> Result<(), Error> {
        if let Some(cgroup) = self.cgroup.as_ref().filter(|_| self.hardening.group_kill) {
            cgroup.kill_all()?;
        }
        self.kill_init()
    }

    /// Stops every task of the container, strays that left the process
    /// tree included (the cgroup freezer), and returns once the kernel
    /// reports the group frozen. With `hardening.group_freeze` off (controls
    /// only) PID 1 alone gets SIGSTOP.
    pub fn pause(&self) -> Result<(), Error> {
        match self.cgroup.as_ref().filter(|_| self.hardening.group_freeze) {
            Some(cgroup) => Ok(cgroup.freeze()?),
            None => self.signal_init(Signal::SIGSTOP),
        }
    }

    /// Undoes [`pause`](Self::pause): thaws the group (or SIGCONT to PID 1).
    pub fn resume(&self) -> Result<(), Error> {
        match self.cgroup.as_ref().filter(|_| self.hardening.group_freeze) {
            Some(cgroup) => Ok(cgroup.thaw()?),
            None => self.signal_init(Signal::SIGCONT),
        }
    }

    fn signal_init(&self, signal: Signal) -> Result<(), Error> {
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal as i32)
            .map_err(|e| Error::os("pidfd_send_signal to PID 1", e))
    }

    /// Inode numbers of /proc/<pid>/ns/* of PID 1 (missing entries are left
    /// out, e.g. after it exited).
    pub fn namespace_inodes(&self) -> BTreeMap<String, u64> {
        namespace_inodes_of(self.pid)
    }

    /// nsenter-style: a new process joins every namespace of PID 1 (in one
    /// setns on the pidfd: the kernel enters the user namespace first and the
    /// mount namespace last), takes PID 1's root, the same capability set
    /// and no_new_privs, then execs `argv` (a path inside the container).
    /// It stays in the caller's cgroups: move `ExecChild::pid()` if needed.
    pub fn exec(&self, argv: &[String], stdout: StdioMode) -> Result<ExecChild, Error> {
        let args = ExecArgs::new(argv, &self.env)?;
        let root_path = CString::new(format!("/proc/{}/root", self.pid)).unwrap_or_default();
        let root = sys::open(&root_path, libc_flags::PATH_DIR).map_err(|e| {
            Error::os_path(
                "open the container's root",
                format!("/proc/{}/root", self.pid),
                e,
            )
        })?;
        let stdin = stdio(StdioMode::Null, true)?;
        let out = stdio(stdout, false)?;
        let (parent_sock, child_sock) = seqpacket_pair()?;
        let procs: Vec<OwnedFd> = match &self.cgroup {
            Some(cgroup) => cgroup
                .paths()
                .iter()
                .map(|dir| {
                    let path = dir.join("cgroup.procs");
                    let c = CString::new(path.as_os_str().as_bytes()).unwrap_or_default();
                    sys::open(&c, libc_flags::WRONLY)
                        .map_err(|e| Error::os_path("open the container's cgroup.procs", path, e))
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let helper = ExecHelper {
            sock: child_sock.as_raw_fd(),
            cgroup_procs: procs.iter().map(AsRawFd::as_raw_fd).collect(),
            stdin: stdin.child.as_ref().map(AsRawFd::as_raw_fd),
            stdout: out.child.as_ref().map(AsRawFd::as_raw_fd),
            pidfd: self.pidfd.as_raw_fd(),
            join_flags: self.join_flags,
            root: root.as_raw_fd(),
            ids: self.ids,
            caps: &self.caps,
            no_new_privs: self.no_new_privs,
            seccomp: self.seccomp.as_ref(),
            close_host_fds: self.hardening.close_host_fds,
            args: &args,
        };
        // SAFETY: the helper runs only `exec_helper_main` with data prepared
        // here and ends in execve or _exit.
        let forked = unsafe { sys::clone3(0, false) }.map_err(|e| Error::os("clone3", e))?;
        let helper_pid = match forked {
            Forked::Child => exec_helper_main(&helper),
            Forked::Parent { pid, .. } => pid,
        };
        drop(child_sock);
        drop((stdin.child, out.child, root, procs));
        let reap_helper = || {
            let _ = waitpid(nix::unistd::Pid::from_raw(helper_pid), None);
        };
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let sock = parent_sock.as_fd();
        let first = receive(sock, deadline, "the exec'd pid");
        reap_helper();
        let pid = match first? {
            Received::Message(m) if m.len() == 5 && m[0] == MSG_PID => {
                i32::from_le_bytes([m[1], m[2], m[3], m[4]])
            }
            Received::Message(m) => {
                return Err(decode_failure(&m)
                    .map(Error::Child)
                    .unwrap_or_else(|| Error::Handshake(format!("unexpected message {m:?}"))))
            }
            Received::Eof => {
                return Err(Error::Handshake(
                    "the exec helper exited without a pid".into(),
                ))
            }
        };
        // The process is our child (CLONE_PARENT) and unreaped, so its pid
        // cannot have been reused yet.
        let pidfd = sys::pidfd_open(pid).map_err(|e| Error::os("pidfd_open", e))?;
        let mut child = ExecChild {
            pid,
            pidfd,
            status: None,
            stdout: out.parent,
        };
        match receive(sock, deadline, "exec")? {
            Received::Eof => Ok(child),
            Received::Message(m) => {
                let _ = child.wait_timeout(Duration::from_secs(5));
                Err(decode_failure(&m)
                    .map(Error::Child)
                    .unwrap_or_else(|| Error::Handshake(format!("unexpected message {m:?}"))))
            }
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The whole group first: without a pid namespace, strays would
        // outlive PID 1.
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.kill_all();
        }
        if self.status.is_none() {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
            let _ = self.wait();
        }
        // Every task is gone, so the network namespace is dying and takes
        // the veth pair with it; only the published ports are ours to undo.
        if let Some(net) = self.network.take() {
            if let Err(e) = net.release_with_netns() {
                tracing::warn!(error = %e, "releasing the container's network");
            }
        }
        // Without rslave (a control), the mounts that built the root were
        // copied into the caller's namespace: detach them, or the temp dir
        // cannot be removed.
        if let (false, Some(dir)) = (self.hardening.rslave_root, self.temp_dir()) {
            if let Err(e) = mounts::detach_all_under(dir) {
                tracing::warn!(error = %e, dir = %dir.display(), "detaching propagated mounts");
            }
        }
        // `rootfs` (the temp dir) is removed after this, now that PID 1 and
        // with it the mount namespace holding the overlay are gone.
    }
}

/// Waits for a child held by its pidfd and reaps it once; later calls
/// repeat the status kept in `status`.
fn wait_once(pidfd: BorrowedFd<'_>, status: &mut Option<ExitStatus>) -> Result<ExitStatus, Error> {
    if let Some(s) = *status {
        return Ok(s);
    }
    let s = wait_pidfd(pidfd)?;
    *status = Some(s);
    Ok(s)
}

/// Like [`wait_once`], giving up after `d` with `Ok(None)`.
fn wait_once_timeout(
    pidfd: BorrowedFd<'_>,
    status: &mut Option<ExitStatus>,
    d: Duration,
) -> Result<Option<ExitStatus>, Error> {
    if let Some(s) = *status {
        return Ok(Some(s));
    }
    let ms = d.as_millis().min(i32::MAX as u128) as i32;
    if !sys::poll_readable(pidfd, ms).map_err(|e| Error::os("poll pidfd", e))? {
        return Ok(None);
    }
    wait_once(pidfd, status).map(Some)
}

/// SIGKILL through the pidfd (never a recycled pid), unless already reaped.
fn kill_unless_reaped(pidfd: BorrowedFd<'_>, status: Option<ExitStatus>) -> Result<(), Error> {
    signal_unless_reaped(pidfd, status, Signal::SIGKILL)
}

/// `signal` through the pidfd, unless already reaped; a process that has
/// exited (ESRCH) is not an error.
fn signal_unless_reaped(
    pidfd: BorrowedFd<'_>,
    status: Option<ExitStatus>,
    signal: Signal,
) -> Result<(), Error> {
    if status.is_some() {
        return Ok(());
    }
    match sys::pidfd_send_signal(pidfd, signal as i32) {
        Ok(()) | Err(Errno::ESRCH) => Ok(()),
        Err(e) => Err(Error::os_path("pidfd_send_signal", signal.as_str(), e)),
    }
}

fn wait_pidfd(pidfd: BorrowedFd<'_>) -> Result<ExitStatus, Error> {
    loop {
        match waitid(Id::PIDFd(pidfd), WaitPidFlag::WEXITED) {
            Ok(ws) => {
                if let Some(s) = ExitStatus::from_wait(ws) {
                    return Ok(s);
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(Error::os("waitid", e)),
        }
    }
}

/// /proc/<pid>/ns/* inode numbers.
pub fn namespace_inodes_of(pid: i32) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"] {
        if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/ns/{ns}")) {
            out.insert(ns.to_string(), m.ino());
        }
    }
    out
}

/// What the exec helper needs, prepared before clone.
struct ExecHelper<'a> {
    sock: RawFd,
    /// cgroup.procs of each of the container's cgroups, opened for writing.
    cgroup_procs: Vec<RawFd>,
    stdin: Option<RawFd>,
    stdout: Option<RawFd>,
    pidfd: RawFd,
    join_flags: i32,
    root: RawFd,
    ids: Option<(u32, u32, bool)>,
    caps: &'a CapPlan,
    no_new_privs: bool,
    seccomp: Option<&'a SeccompProgram>,
    close_host_fds: bool,
    args: &'a ExecArgs,
}

/// The helper joins the namespaces, then forks (a pid namespace is only
/// entered by children) with CLONE_PARENT so the exec'd process is the
/// caller's child; reports its pid and exits.
fn exec_helper_main(h: &ExecHelper<'_>) -> ! {
    // SAFETY: copies of fds that were open in the parent at clone time.
    let sock = unsafe { BorrowedFd::borrow_raw(h.sock) };
    let result = (|| -> Result<(), StepFailure> {
        sys::reset_signals();
        step(Step::ParentDeathSignal, b"", sys::set_parent_death_kill())?;
        // Into the container's cgroups ("0" is the writer itself), so the
        // process forked below is born there.
        for fd in &h.cgroup_procs {
            // SAFETY: an fd the parent opened before the clone.
            let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
            step(Step::JoinCgroup, b"cgroup.procs", sys::write_all(fd, b"0"))?;
        }
        for (target, fd) in [(0, h.stdin), (1, h.stdout)] {
            if let Some(fd) = fd {
                step(Step::Stdio, b"", sys::dup2(fd, target))?;
            }
        }
        // SAFETY: as above.
        let pidfd = unsafe { BorrowedFd::borrow_raw(h.pidfd) };
        // join_flags is 0 only when the spec switched this protection off
        // (a control): then the process stays where the caller is, root
        // included.
        if h.join_flags != 0 {
            step(
                Step::JoinNamespaces,
                b"pidfd",
                sys::setns(pidfd, h.join_flags),
            )?;
            // SAFETY: as above.
            let root = unsafe { BorrowedFd::borrow_raw(h.root) };
            step(Step::Chroot, b"/proc/<pid>/root", sys::fchdir(root))?;
            use crate::sys::Syscalls;
            let mut real = RealSyscalls;
            step(Step::Chroot, b".", real.chroot(c"."))?;
            step(Step::Chdir, b"/", real.chdir(c"/"))?;
        }
        // SAFETY: the grandchild runs only the code below and ends in
        // execve or _exit.
        match unsafe { sys::clone3(sys::CLONE_PARENT, false) } {
            Err(e) => Err(StepFailure::new(Step::ForkIntoPidNamespace, e, b"")),
            Ok(Forked::Parent { pid, .. }) => {
                let mut msg = [0u8; 5];
                msg[0] = MSG_PID;
                msg[1..].copy_from_slice(&pid.to_le_bytes());
                step(Step::ForkIntoPidNamespace, b"send pid", send(sock, &msg))?;
                sys::exit_now(0)
            }
            Ok(Forked::Child) => {
                step(Step::ParentDeathSignal, b"", sys::set_parent_death_kill())?;
                if let Some((uid, gid, clear)) = h.ids {
                    sys::set_ids(uid, gid, clear).map_err(|(s, e)| StepFailure::new(s, e, b""))?;
                }
                confine(h.caps, h.no_new_privs, h.seccomp)?;
                if h.close_host_fds {
                    step(Step::CloseFds, b"", sys::cloexec_from(3))?;
                }
                Err(h.args.exec())
            }
        }
    })();
    if let Err(f) = result {
        send_failure(sock, &f);
    }
    sys::exit_now(127)
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecChild {
    pid: i32,
    pidfd: OwnedFd,
    status: Option<ExitStatus>,
    stdout: Option<File>,
}

impl ExecChild {
    /// Host pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        wait_once(self.pidfd.as_fd(), &mut self.status)
    }

    pub fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>, Error> {
        wait_once_timeout(self.pidfd.as_fd(), &mut self.status, d)
    }

    pub fn kill(&self) -> Result<(), Error> {
        kill_unless_reaped(self.pidfd.as_fd(), self.status)
    }
}

impl Drop for ExecChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = sys::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
            let _ = self.wait();
        }
    }
}

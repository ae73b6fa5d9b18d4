//! One container from spec to exit: clone3 with the namespace flags, the
//! handshake (`handshake`), the child's steps in running order (`child`),
//! execve; then wait / exec (`exec`) / kill / pause, and cleanup on drop.
//!
//! Allocation in the child: clone3 without CLONE_VM is a fork, and if the
//! parent has other threads (libtest does), a lock one of them held at that
//! instant (the allocator's) stays locked in the child forever. So the
//! parent prepares every string, pointer array, capability mask and buffer
//! before clone, and the child only makes syscalls through the `Syscalls`
//! seam with fixed-size stack buffers. The parent never waits on the child
//! without a timeout, so a wedged child is an error, not a hang.

mod child;
mod exec;
mod handshake;
mod ids;
mod options;
mod pidfd;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use crate::caps::CapPlan;
use crate::cgroups::{Cgroup, CgroupError, CgroupManager, CgroupStats};
use crate::error::Error;
use crate::mount_lock::NestedMaps;
use crate::mounts::{self, RootPlan};
use crate::network::{self, Netns, VethAttachment};
use crate::rootfs::{self, PreparedRootfs};
use crate::spec::{BridgeAttachment, ContainerSpec, Hardening, Limits, NetworkMode, UserMapping};
use crate::sys::{self, Forked};
use child::{child_main, ChildPlan, Confinement, ExecArgs, Ids};
use handshake::{receive, seqpacket_pair, FromChild, GO, HANDSHAKE_TIMEOUT};
use ids::{default_mapping, outside_of, write_id_maps};
use options::{check_name, stdio};
use pidfd::PidfdChild;

pub use exec::ExecChild;
pub use options::{ParentSetup, SpawnOptions, StdioMode};
pub use pidfd::ExitStatus;

/// mountinfo buffer for the child's read-backs (sized before clone).
const MOUNTINFO_SCRATCH: usize = 1 << 20;

/// open(2) flags, named here so the parent's code stays free of libc.
mod libc_flags {
    pub const RDONLY: i32 = nix::fcntl::OFlag::O_RDONLY.bits();
    pub const WRONLY: i32 = nix::fcntl::OFlag::O_WRONLY.bits();
    pub const PATH_DIR: i32 =
        nix::fcntl::OFlag::O_PATH.bits() | nix::fcntl::OFlag::O_DIRECTORY.bits();
}

/// What the parent does for the child between clone and `GO`.
struct ParentSetupPlan<'a> {
    device_allowlist: bool,
    /// The v2 node's cgroup.procs when clone3 refused to clone into it.
    fallback_procs: Option<OwnedFd>,
    mapping: Option<&'a UserMapping>,
    bridge: Option<(&'a BridgeAttachment, Option<Netns>)>,
    limits: &'a Limits,
}

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

// The files the first process joins its cgroup through (see
// [`Cgroup::self_attach`]): the v2 node it is born into, opened before
// clone, and each v1 directory's `tasks` file, opened once those are made
// (after clone, while the child builds its root) and handed to it with
// `GO`; it writes "0" to each. Cheaper than the parent writing its pid to
// cgroup.procs.

/// The v2 node to clone into; `None` without one.
fn open_v2_node(cgroup: &Cgroup) -> Result<Option<OwnedFd>, Error> {
    cgroup
        .unified_path()
        .map(|n| open_path(n, libc_flags::PATH_DIR, "open the cgroup2 node"))
        .transpose()
}

/// The v1 `tasks` files of the completed cgroup.
fn open_v1_tasks(cgroup: &Cgroup) -> Result<Vec<OwnedFd>, Error> {
    cgroup
        .self_attach()
        .v1_tasks
        .iter()
        .map(|t| open_path(t, libc_flags::WRONLY, "open the cgroup's tasks file"))
        .collect()
}

/// The v2 node's cgroup.procs, for a process that joins it by writing "0"
/// there (the slower way in; see `Cgroup::self_attach`); `None` without a
/// v2 node.
fn open_v2_procs(cgroup: &Cgroup) -> Result<Option<OwnedFd>, Error> {
    cgroup
        .unified_path()
        .map(|node| {
            open_path(
                &node.join("cgroup.procs"),
                libc_flags::WRONLY,
                "open the cgroup2 node's cgroup.procs",
            )
        })
        .transpose()
}

/// open(2) of a path of ours; the error names `step` and the path.
fn open_path(path: &std::path::Path, flags: i32, step: &'static str) -> Result<OwnedFd, Error> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::Nul {
        what: "path",
        value: path.display().to_string(),
    })?;
    sys::open(&c, flags).map_err(|e| Error::os_path(step, path, e))
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

/// A running (or exited, not yet dropped) container.
pub struct Container {
    /// PID 1, held by its pidfd.
    init: PidfdChild,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    join_flags: i32,
    /// The ids processes joining the container switch to.
    ids: Option<Ids>,
    /// What confined PID 1, applied to every exec'd process too.
    confinement: Confinement,
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
            .field("init", &self.init)
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
        crate::timeline::point(crate::timeline::Point::SpawnStart);
        spec.validate()?;
        check_name("run_id", &opts.run_id)?;
        check_name("name", &opts.name)?;
        let confinement = Confinement {
            caps: CapPlan::new(&spec.capabilities)?,
            no_new_privs: spec.no_new_privs,
            seccomp: match &spec.seccomp {
                Some(policy) => Some(crate::seccomp::compile(policy, spec.namespaces.user)?),
                None => None,
            },
            close_host_fds: spec.hardening.close_host_fds,
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
                root_mapped.then_some(Ids {
                    uid: 0,
                    gid: 0,
                    clear_groups,
                })
            }
            // Without a user namespace the ids stay what they are; only the
            // supplementary groups go.
            None => clear_groups.then(|| {
                let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
                Ids {
                    uid: uid.as_raw(),
                    gid: gid.as_raw(),
                    clear_groups: true,
                }
            }),
        };
        let owner = mapping
            .as_ref()
            .and_then(|m| Some((outside_of(&m.uid_map, 0)?, outside_of(&m.gid_map, 0)?)));

        crate::timeline::point(crate::timeline::Point::ConfinementCompiled);
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

        // Every container gets its own cgroup (limits, evidence, group kill).
        // Before the clone: the v2 node it is born into, and the check that
        // the host can hold the limits, so a refusal creates no process.
        // The rest is made after it, while the child builds its root.
        crate::timeline::point(crate::timeline::Point::RootfsPrepared);
        let manager = cgroup_manager()?;
        let cgroup =
            manager.create_for_birth(&format!("{}-{}", opts.run_id, opts.name), &spec.limits)?;
        let v2_node = open_v2_node(&cgroup)?;
        crate::timeline::point(crate::timeline::Point::CgroupMade);

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
            parent_sock: parent_sock.as_raw_fd(),
            stdio: [
                stdin.child.as_ref().map(AsRawFd::as_raw_fd),
                stdout.child.as_ref().map(AsRawFd::as_raw_fd),
                stderr.child.as_ref().map(AsRawFd::as_raw_fd),
            ],
            expected_ppid: (!spec.namespaces.pid).then(|| nix::unistd::getpid().as_raw()),
            root_before_go: mapping.is_none(),
            ids,
            unshare_cgroup: spec.namespaces.cgroup,
            time_offsets,
            hostname,
            loopback_up: spec.namespaces.net,
            scratch: sys::AnonBuf::new(if root.is_some() { MOUNTINFO_SCRATCH } else { 0 })
                .map_err(|e| Error::os("mmap the child's scratch buffer", e))?,
            root,
            cwd,
            confinement: confinement.clone(),
            lock_mounts,
            rlimits: [
                spec.limits.nofile.map(|v| (sys::Rlimit::Nofile, v)),
                spec.limits.nproc.map(|v| (sys::Rlimit::Nproc, v)),
            ],
            exec: ExecArgs::new(&spec.command, &spec.env)?,
        };

        crate::timeline::point(crate::timeline::Point::ChildPlanBuilt);
        let into = v2_node.as_ref().map(AsFd::as_fd);
        let mut fallback_procs = None;
        // SAFETY: the child runs only `child_main`, which uses what `plan`
        // prepared, avoids allocating (see the module docs) and ends in
        // execve or _exit.
        let forked = match unsafe { sys::clone3_into(clone_flags(spec), true, into) } {
            Err(Errno::EINVAL | Errno::ENOSYS | Errno::E2BIG | Errno::EOPNOTSUPP)
                if into.is_some() =>
            {
                // A kernel (before 5.7) or cgroup that refuses to clone into
                // it: the child writes "0" to the node's cgroup.procs instead.
                fallback_procs = open_v2_procs(&cgroup)?;
                // SAFETY: as above.
                unsafe { sys::clone3(clone_flags(spec), true) }
            }
            other => other,
        }
        .map_err(|e| Error::os("clone3", e))?;
        let (pid, pidfd) = match forked {
            Forked::Child => child_main(&mut plan),
            Forked::Parent { pid, pidfd } => (pid, pidfd),
        };
        drop(plan);
        drop(v2_node);
        drop(child_sock);
        drop((stdin.child, stdout.child, stderr.child));
        crate::timeline::point(crate::timeline::Point::Cloned);
        let pidfd = pidfd.ok_or_else(|| Error::Handshake("clone3 returned no pidfd".into()))?;
        let init = PidfdChild::new(pid, pidfd);

        // From here on, dropping `container` kills and reaps the child and
        // removes the temp dir, whatever fails.
        let mut container = Container {
            init,
            stdin: stdin.parent,
            stdout: stdout.parent,
            stderr: stderr.parent,
            join_flags: join_flags(spec),
            ids,
            confinement,
            hardening: spec.hardening,
            env: spec.env.clone(),
            rootfs,
            cgroup: Some(cgroup),
            network: None,
        };
        let bridge = match (&spec.network, spec.namespaces.net) {
            (NetworkMode::Bridge(att), true) => Some((att, opts.host_netns.take())),
            _ => None,
        };
        let mut setup = ParentSetupPlan {
            device_allowlist: spec.hardening.device_allowlist,
            fallback_procs,
            mapping: mapping.as_ref(),
            bridge,
            limits: &spec.limits,
        };
        container.handshake(parent_sock.as_fd(), &mut opts.parent_setup, &mut setup)?;
        Ok(container)
    }

    /// The parent's half, overlapping the child's root build: the cgroup
    /// completed, oom_score_adj, the veth; then, once the child is
    /// `Ready`, the hooks and the id maps, and `GO` with the cgroup files
    /// the child joins through.
    fn handshake(
        &mut self,
        sock: BorrowedFd<'_>,
        hooks: &mut [ParentSetup],
        setup: &mut ParentSetupPlan<'_>,
    ) -> Result<(), Error> {
        let joins = match self.setup_alongside_child(setup) {
            Ok(joins) => joins,
            // A child that failed first (its netns gone under the veth,
            // say) has the better story to tell.
            Err(e) => return Err(self.child_failure_or(sock, e)),
        };
        // With nothing to do between `Ready` and `GO` (no hooks, no id
        // maps), `GO` is queued at once: the child finds it as soon as its
        // root is built instead of waiting a round trip for it. Its failure
        // still comes instead of `Ready`.
        let go_early = hooks.is_empty() && setup.mapping.is_none();
        if go_early {
            self.send_go(sock, &joins)?;
        }
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match receive(sock, deadline, "ready")? {
            Some(FromChild::Ready) => {}
            Some(other) => return Err(self.child_failed(other.into_error("ready"))),
            None => return Err(self.child_vanished("ready")),
        }
        crate::timeline::point(crate::timeline::Point::ChildReady);
        if !go_early {
            let pid = self.init.pid();
            for (index, hook) in hooks.iter_mut().enumerate() {
                hook(pid).map_err(|message| Error::ParentSetup { index, message })?;
            }
            if let Some(m) = setup.mapping {
                write_id_maps(pid, m)?;
            }
            crate::timeline::point(crate::timeline::Point::ParentSetupDone);
            self.send_go(sock, &joins)?;
        }
        drop(joins);
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        match receive(sock, deadline, "exec")? {
            // The socket is close-on-exec: EOF means execve succeeded (or
            // the child died, which `wait` will show).
            None => {
                crate::timeline::point(crate::timeline::Point::Execed);
                Ok(())
            }
            Some(other) => Err(self.child_failed(other.into_error("exec"))),
        }
    }

    /// What the parent does while the child builds its root; returns the
    /// files the child joins its cgroup through.
    fn setup_alongside_child(
        &mut self,
        setup: &mut ParentSetupPlan<'_>,
    ) -> Result<Vec<OwnedFd>, Error> {
        let pid = self.init.pid();
        let mut joins = Vec::new();
        if let Some(cgroup) = self.cgroup.as_mut() {
            let manager = cgroup_manager()?;
            manager.complete(cgroup, setup.limits)?;
            if setup.device_allowlist {
                manager.restrict_devices(cgroup)?;
            }
            joins = open_v1_tasks(cgroup)?;
        }
        joins.extend(setup.fallback_procs.take());
        crate::timeline::point(crate::timeline::Point::CgroupCompleted);
        // oom_score_adj before it can run anything of its own (the rlimits
        // are the child's own last step before its confinement).
        crate::rlimits::apply(pid, setup.limits)?;
        // The veth is created with its peer already in the child's netns.
        if let Some((att, host)) = setup.bridge.take() {
            let host = match host {
                Some(h) => h,
                None => Netns::current()?,
            };
            // The host end is named after PID 1 (unique while it lives), not
            // the container's name: a dying namespace may still hold the veth
            // of an earlier container of the same name for a moment.
            let hint = pid.to_string();
            self.network = Some(network::attach(&host, pid, att, &hint)?);
        }
        Ok(joins)
    }

    /// `GO`, with the files the child joins its cgroup through. A child
    /// that failed has closed its end (EPIPE here): its failure, waiting in
    /// the socket, is the error.
    fn send_go(&mut self, sock: BorrowedFd<'_>, joins: &[OwnedFd]) -> Result<(), Error> {
        let fds: Vec<std::os::fd::RawFd> = joins.iter().map(AsRawFd::as_raw_fd).collect();
        sys::send_with_fds(sock, &[GO], &fds)
            .map_err(|e| self.child_failure_or(sock, Error::os("send go", e)))
    }

    /// The child's own failure when it already sent one, else `error`.
    fn child_failure_or(&mut self, sock: BorrowedFd<'_>, error: Error) -> Error {
        match receive(sock, Instant::now(), "its failure") {
            Ok(Some(failed @ FromChild::Failed(_))) => {
                self.child_failed(failed.into_error("ready"))
            }
            _ => error,
        }
    }

    /// Reaps the child (briefly) so its failure leaves no zombie.
    fn child_failed(&mut self, error: Error) -> Error {
        let _ = self.wait_timeout(Duration::from_secs(5));
        error
    }

    fn child_vanished(&mut self, waiting_for: &str) -> Error {
        let status = self.wait_timeout(Duration::from_secs(5)).ok().flatten();
        Error::Handshake(format!(
            "the child exited while the parent waited for {waiting_for}: {status:?}"
        ))
    }

    /// Host pid of the first process.
    pub fn pid(&self) -> i32 {
        self.init.pid()
    }

    /// The pidfd of the first process (stays valid until drop).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.init.pidfd()
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
        self.init.wait()
    }

    /// Like [`wait`](Self::wait) but gives up after `d` with `Ok(None)`.
    pub fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>, Error> {
        self.init.wait_timeout(d)
    }

    /// SIGKILL to PID 1 through its pidfd (never a recycled pid). With a pid
    /// namespace the kernel then kills every process in it.
    pub fn kill_init(&self) -> Result<(), Error> {
        self.init.kill()
    }

    /// Sends `signal` to PID 1 through its pidfd (never a recycled pid);
    /// nothing once PID 1 has exited. The init of a pid namespace only gets
    /// the signals it handles or blocks: the kernel drops the rest (SIGKILL
    /// and SIGSTOP aside), as for any container runtime's PID 1.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.init.signal(signal)
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
        self.init.signal(signal)
    }

    /// Inode numbers of /proc/<pid>/ns/* of PID 1 (missing entries are left
    /// out, e.g. after it exited).
    pub fn namespace_inodes(&self) -> BTreeMap<String, u64> {
        namespace_inodes_of(self.init.pid())
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The whole group first while PID 1 runs: without a pid namespace,
        // strays would outlive it. Once it is reaped, the cgroup's own
        // teardown kills whatever is left (it finds out by its rmdir).
        crate::timeline::point(crate::timeline::Point::DropStart);
        if let Some(cgroup) = self.cgroup.as_ref().filter(|_| !self.init.reaped()) {
            let _ = cgroup.kill_all();
        }

        let _ = self.init.kill();
        let _ = self.init.wait();
        crate::timeline::point(crate::timeline::Point::InitReaped);
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
        // The temp dir, then the cgroup, now that PID 1 and with it the
        // mount namespace holding the overlay are gone: by a `Reaper`'s
        // thread when one lives, else here.
        if self.init.reaped() {
            let rest = (self.rootfs.take(), self.cgroup.take());
            if let Err(rest) = crate::reaper::defer(Box::new(rest)) {
                drop(rest);
            }
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

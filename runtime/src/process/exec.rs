//! A new process in a running container, nsenter-style: a helper joins
//! every namespace of PID 1 in one setns on its pidfd, takes PID 1's root,
//! then forks (a pid namespace is entered only by children) with
//! CLONE_PARENT so the exec'd process is the caller's child; it reports that
//! pid and exits. The process is confined as PID 1 was and execs.

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::wait::waitpid;

use super::child::{confine, set_ids, step, Confinement, ExecArgs, Ids};
use super::handshake::{self, receive, seqpacket_pair, FromChild, HANDSHAKE_TIMEOUT};
use super::options::{stdio, StdioMode};
use super::pidfd::{ExitStatus, PidfdChild};
use super::{libc_flags, open_path, open_v1_tasks, open_v2_procs, Container};
use crate::error::Error;
use crate::step::{Step, StepFailure};
use crate::sys::{self, Forked, RealSyscalls, Syscalls};

/// What the exec helper needs, prepared before clone.
struct ExecHelper<'a> {
    sock: RawFd,
    /// The container's cgroup files the helper writes "0" to.
    cgroup_procs: Vec<RawFd>,
    stdin: Option<RawFd>,
    stdout: Option<RawFd>,
    pidfd: RawFd,
    /// 0 only when a control switched joining off.
    join_flags: i32,
    root: RawFd,
    ids: Option<Ids>,
    confinement: &'a Confinement,
    args: &'a ExecArgs,
}

impl Container {
    /// nsenter-style: a new process joins every namespace of PID 1 (in one
    /// setns on the pidfd: the kernel enters the user namespace first and
    /// the mount namespace last), its cgroups and its root, takes the same
    /// ids, capabilities, no_new_privs, seccomp filter and fd hygiene, then
    /// execs `argv` (a path inside the container).
    pub fn exec(&self, argv: &[String], stdout: StdioMode) -> Result<ExecChild, Error> {
        let args = ExecArgs::new(argv, &self.env)?;
        let pid = self.init.pid();
        let root = open_path(
            std::path::Path::new(&format!("/proc/{pid}/root")),
            libc_flags::PATH_DIR,
            "open the container's root",
        )?;
        let stdin = stdio(StdioMode::Null, true)?;
        let out = stdio(stdout, false)?;
        let (parent_sock, child_sock) = seqpacket_pair()?;
        // The helper joins by itself: v1 through `tasks`, the v2 node
        // through cgroup.procs (see `Cgroup::self_attach`).
        let mut procs: Vec<OwnedFd> = Vec::new();
        if let Some(cgroup) = &self.cgroup {
            procs.extend(open_v1_tasks(cgroup)?);
            procs.extend(open_v2_procs(cgroup)?);
        }
        let helper = ExecHelper {
            sock: child_sock.as_raw_fd(),
            cgroup_procs: procs.iter().map(AsRawFd::as_raw_fd).collect(),
            stdin: stdin.child.as_ref().map(AsRawFd::as_raw_fd),
            stdout: out.child.as_ref().map(AsRawFd::as_raw_fd),
            pidfd: self.init.pidfd().as_raw_fd(),
            join_flags: self.join_flags,
            root: root.as_raw_fd(),
            ids: self.ids,
            confinement: &self.confinement,
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
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let sock = parent_sock.as_fd();
        let first = receive(sock, deadline, "the exec'd pid");
        let _ = waitpid(nix::unistd::Pid::from_raw(helper_pid), None);
        let pid = match first? {
            Some(FromChild::Pid(pid)) => pid,
            Some(other) => return Err(other.into_error("the exec'd pid")),
            None => {
                return Err(Error::Handshake(
                    "the exec helper exited without a pid".into(),
                ))
            }
        };
        // The process is our child (CLONE_PARENT) and unreaped, so its pid
        // cannot have been reused yet.
        let pidfd = sys::pidfd_open(pid).map_err(|e| Error::os("pidfd_open", e))?;
        let mut child = ExecChild {
            process: PidfdChild::new(pid, pidfd),
            stdout: out.parent,
        };
        match receive(sock, deadline, "exec")? {
            None => Ok(child),
            Some(other) => {
                let _ = child.wait_timeout(Duration::from_secs(5));
                Err(other.into_error("exec"))
            }
        }
    }
}

fn exec_helper_main(h: &ExecHelper<'_>) -> ! {
    let mut sys = RealSyscalls;
    if let Err(f) = exec_helper_steps(&mut sys, h) {
        let _ = handshake::send(&mut sys, h.sock, &FromChild::Failed(f));
    }
    sys::exit_now(127)
}

/// The helper's steps; the forked process's own steps follow in
/// [`exec_steps`]. Returns only on failure.
fn exec_helper_steps<S: Syscalls>(sys: &mut S, h: &ExecHelper<'_>) -> Result<(), StepFailure> {
    sys.reset_signals();
    step(Step::ParentDeathSignal, b"", sys.set_parent_death_kill())?;
    // Into the container's cgroups ("0" is the writer itself), so the
    // process forked below is born there.
    for fd in &h.cgroup_procs {
        step(Step::JoinCgroup, b"cgroup.procs", sys.write_all(*fd, b"0"))?;
    }
    for (target, fd) in [(0, h.stdin), (1, h.stdout)] {
        if let Some(fd) = fd {
            step(Step::Stdio, b"", sys.dup2(fd, target))?;
        }
    }
    // join_flags is 0 only when the spec switched this protection off (a
    // control): then the process stays where the caller is, root included.
    if h.join_flags != 0 {
        step(
            Step::JoinNamespaces,
            b"pidfd",
            sys.setns_fd(h.pidfd, h.join_flags),
        )?;
        step(Step::Chroot, b"/proc/<pid>/root", sys.fchdir(h.root))?;
        step(Step::Chroot, b".", sys.chroot(c"."))?;
        step(Step::Chdir, b"/", sys.chdir(c"/"))?;
    }
    // SAFETY: the forked process runs only `exec_steps` and ends in execve
    // or _exit. (The fork itself is not part of the seam: a double cannot
    // be two processes.)
    match unsafe { sys::clone3(sys::CLONE_PARENT, false) } {
        Err(e) => Err(StepFailure::new(Step::ForkIntoPidNamespace, e, b"")),
        Ok(Forked::Parent { pid, .. }) => {
            step(
                Step::ForkIntoPidNamespace,
                b"send pid",
                handshake::send(sys, h.sock, &FromChild::Pid(pid)),
            )?;
            sys::exit_now(0)
        }
        Ok(Forked::Child) => Err(exec_steps(sys, h.ids, h.confinement, h.args)),
    }
}

/// The exec'd process: ids, confinement, execve. Returns the failure.
fn exec_steps<S: Syscalls>(
    sys: &mut S,
    ids: Option<Ids>,
    confinement: &Confinement,
    args: &ExecArgs,
) -> StepFailure {
    if let Err(f) = step(Step::ParentDeathSignal, b"", sys.set_parent_death_kill()) {
        return f;
    }
    if let Some(Err(f)) = ids.map(|ids| set_ids(sys, ids)) {
        return f;
    }
    if let Err(f) = confine(sys, confinement) {
        return f;
    }
    args.exec(sys)
}

/// A process started by [`Container::exec`].
#[derive(Debug)]
pub struct ExecChild {
    process: PidfdChild,
    stdout: Option<File>,
}

impl ExecChild {
    /// Host pid.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    pub fn wait(&mut self) -> Result<ExitStatus, Error> {
        self.process.wait()
    }

    pub fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>, Error> {
        self.process.wait_timeout(d)
    }

    pub fn kill(&self) -> Result<(), Error> {
        self.process.kill()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::CapPlan;
    use crate::sys::RecordingSyscalls;

    #[test]
    fn an_exec_d_process_takes_ids_then_confinement_then_execs() {
        let confinement = Confinement {
            caps: CapPlan::new(&[]).expect("no caps"),
            no_new_privs: true,
            seccomp: None,
            close_host_fds: true,
        };
        let args = ExecArgs::new(&["/probe".into()], &[]).expect("args");
        let ids = Some(Ids {
            uid: 0,
            gid: 0,
            clear_groups: true,
        });
        let mut sys = RecordingSyscalls::default();
        let f = exec_steps(&mut sys, ids, &confinement, &args);
        assert_eq!(f.step, Step::Execve);
        let calls: Vec<String> = sys
            .process_calls()
            .into_iter()
            .filter(|c| !c.starts_with("capbset_drop"))
            .collect();
        assert_eq!(
            calls,
            [
                "prctl_pdeathsig(SIGKILL)",
                "setgroups([])",
                "setresgid(0)",
                "setresuid(0)",
                "capset(0x0)",
                "ambient_clear()",
                "no_new_privs()",
                "close_range_cloexec(3)",
                "execve(/probe)",
            ]
        );
    }
}

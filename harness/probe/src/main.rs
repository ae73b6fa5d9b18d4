//! isocheck-probe: the static agent that runs inside a container under test.
//!
//! One action per run, one JSON observation on one line of stdout. A refusal
//! by the kernel is not an error of the probe: it is the observation (an
//! errno by name). Exit codes: 0 the action ran, 2 bad arguments, 1 the probe
//! itself failed (message on stderr).
//!
//! The probe runs in a rootfs holding nothing but itself, so it never touches
//! NSS or DNS: addresses are parsed by std, names never resolved.

mod args;
mod confine_actions;
mod escape_actions;
mod fs_actions;
mod mount_actions;
mod net_actions;
mod output;
mod proc_actions;
mod resource_actions;
mod status_actions;

use std::process::ExitCode;

use args::{Args, UsageError};
use output::{Afterwards, Observation};

/// Why a run did not produce an observation.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Usage(#[from] UsageError),
    #[error("{step}: {detail}")]
    Internal { step: &'static str, detail: String },
}

impl ProbeError {
    pub fn internal(step: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Internal {
            step,
            detail: err.to_string(),
        }
    }
}

/// The signature every action has: read its options, act, observe.
type Action = fn(Args) -> Result<Observation, ProbeError>;

/// The action table. Names are part of the scenario file format.
fn lookup(name: &str) -> Option<Action> {
    let action: Action = match name {
        "noop" => proc_actions::noop,
        "pids" => proc_actions::pids,
        "kill" => proc_actions::kill,
        "hostname" => proc_actions::hostname,
        "shm" => proc_actions::shm,
        "ns" => proc_actions::ns,
        "clocks" => proc_actions::clocks,
        "wait" => proc_actions::wait,
        "cgroup" => proc_actions::cgroup,
        "daemon" => proc_actions::daemon,
        "id" => proc_actions::id,
        "groups" => proc_actions::groups,
        "trap" => proc_actions::trap,
        "write" => fs_actions::write,
        "read" => fs_actions::read,
        "ls" => fs_actions::ls,
        "mounts" => mount_actions::mounts,
        "overlay-write" => fs_actions::overlay_write,
        "mount-private" => fs_actions::mount_private,
        "remount-rw" => fs_actions::remount_rw,
        "find-host-root" => mount_actions::find_host_root,
        "submount" => mount_actions::submount,
        "sysfs-write" => mount_actions::sysfs_write,
        "alloc" => resource_actions::alloc,
        "forkbomb" => resource_actions::forkbomb,
        "burn" => resource_actions::burn,
        "burn-procs" => resource_actions::burn_procs,
        "alloc-swap" => resource_actions::alloc_swap,
        "fill" => resource_actions::fill,
        "nofile" => resource_actions::nofile,
        "nproc" => resource_actions::nproc,
        "oom-pick" => resource_actions::oom_pick,
        "oom-group" => resource_actions::oom_group,
        "write-direct" => resource_actions::write_direct,
        "links" => net_actions::links,
        "ping" => net_actions::ping,
        "tcp-connect" => net_actions::tcp_connect,
        "tcp-serve" => net_actions::tcp_serve,
        "chroot-escape" => escape_actions::chroot_escape,
        "caps" => escape_actions::caps,
        "sysctl-write" => escape_actions::sysctl_write,
        "mknod" => escape_actions::mknod,
        "setns-net" => escape_actions::setns_net,
        "ptrace" => escape_actions::ptrace,
        "cgroup-move" => escape_actions::cgroup_move,
        "sysrq-kmsg" => escape_actions::sysrq_kmsg,
        "leaked-fds" => escape_actions::leaked_fds,
        "setuid-exec" => escape_actions::setuid_exec,
        "exec-copies" => escape_actions::exec_copies,
        "status" => status_actions::status,
        "seccomp" => confine_actions::seccomp,
        "masked" => confine_actions::masked,
        "readonly-paths" => confine_actions::readonly_paths,
        "device" => confine_actions::device,
        _ => return None,
    };
    Some(action)
}

/// Runs the action; the exit status on success.
fn run() -> Result<u8, ProbeError> {
    let args = Args::parse(std::env::args().skip(1))?;
    let action =
        lookup(&args.action).ok_or_else(|| UsageError::UnknownAction(args.action.clone()))?;
    let name = args.action.clone();
    let observation = action(args)?;
    output::print_line(&observation.to_line(&name))
        .map_err(|e| ProbeError::internal("print the observation", e))?;
    match observation.afterwards {
        Afterwards::Exit => {}
        Afterwards::SleepThenReap(hold) => {
            std::thread::sleep(hold);
            resource_actions::reap_exited_children();
        }
        Afterwards::AwaitStdin => output::wait_for_go(),
        Afterwards::ExitWith(code) => return Ok(code),
    }
    Ok(0)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => ExitCode::from(code),
        Err(err @ ProbeError::Usage(_)) => {
            eprintln!("isocheck-probe: {err}");
            ExitCode::from(2)
        }
        Err(err @ ProbeError::Internal { .. }) => {
            eprintln!("isocheck-probe: {err}");
            ExitCode::from(1)
        }
    }
}

//! One half of a scenario through an OCI runtime: the bundle for the
//! container the half asks for, `create`, what the host can see of the
//! created container (its pid and namespaces), `start`, its exit status, the
//! counters of the cgroup it ran in (read before `delete`), and nothing of
//! it left afterwards.
//!
//! The exit status: `create` returns once the container's init waits to be
//! started, and that init is then an orphan. The harness is a child
//! subreaper (as a container shim is), so the init becomes its child and its
//! status is ours to wait for; without that only `state`'s "stopped" would
//! be known, and an OOM kill would look like a clean exit.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::spec::ContainerSpec;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::{build_config, Bundle, BundleInputs, OciContainer, OciRuntime, RuntimeError};

/// What the host saw of one half.
#[derive(Debug, Clone)]
pub struct HalfSeen {
    /// The container's stdout (the probe's JSON lines).
    pub stdout: String,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub timed_out: bool,
    /// The cgroup's counters as the report's `cgroup` object, or
    /// `{"error": why}` (every expectation on a counter then fails).
    pub cgroup: Value,
    /// Namespace inodes of the container's init, read before start.
    pub namespaces: BTreeMap<String, u64>,
}

/// Why a half did not run. `Refused` is the runtime's own word on a config
/// it will not run: the scenario is unsupported with that runtime.
#[derive(Debug, thiserror::Error)]
pub enum HalfError {
    #[error("{runtime} refused at {step}: {stderr}")]
    Refused {
        runtime: String,
        step: &'static str,
        stderr: String,
    },
    #[error("{0}")]
    Failed(String),
}

/// Everything a half needs.
#[derive(Debug)]
pub struct HalfRequest<'a> {
    pub runtime: &'a OciRuntime,
    /// The container as the half asks for it (the control already weakened).
    pub spec: &'a ContainerSpec,
    pub image: &'a Path,
    /// A directory of the run's: the bundle and the runtime's state root go
    /// below it.
    pub dir: &'a Path,
    /// Container id and cgroup name (`isocheck/<id>`).
    pub id: &'a str,
    pub deadline: Instant,
}

/// Become the child subreaper once per process (see the module docs).
fn ensure_subreaper() -> Result<(), HalfError> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true)
            .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))
    })
    .clone()
    .map_err(HalfError::Failed)
}

/// A refusal for the report: the runtime's first line that says "error"
/// (else its first line), at most 300 characters; backtraces stay out.
fn first_error_line(stderr: &str) -> String {
    let lines = || stderr.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines()
        .find(|l| l.to_ascii_lowercase().contains("error"))
        .or_else(|| lines().next())
        .unwrap_or("");
    line.chars().take(300).collect()
}

fn refused(runtime: &OciRuntime, e: RuntimeError) -> HalfError {
    match e {
        RuntimeError::Refused { step, stderr } => HalfError::Refused {
            runtime: runtime.name.clone(),
            step,
            stderr: first_error_line(&stderr),
        },
        other => HalfError::Failed(other.to_string()),
    }
}

/// Runs one half to its end. The bundle, the container and its state are
/// gone when this returns, whatever happened.
pub fn run_half(req: &HalfRequest<'_>) -> Result<HalfSeen, HalfError> {
    ensure_subreaper()?;
    let bundle = Bundle::create(
        &req.dir.join(format!("bundle-{}", req.id)),
        req.image,
        req.spec.rootfs.overlay,
    )
    .map_err(HalfError::Failed)?;
    let config = build_config(
        req.spec,
        &BundleInputs {
            rootfs: bundle.rootfs(req.image),
            netns: None,
            cgroups_path: format!("/isocheck/{}", req.id),
        },
    )
    .map_err(|e| match e {
        super::ConfigError::Unsupported(why) => HalfError::Refused {
            runtime: req.runtime.name.clone(),
            step: "config.json",
            stderr: why,
        },
        other => HalfError::Failed(other.to_string()),
    })?;
    bundle.write_config(&config).map_err(HalfError::Failed)?;
    let state = req.dir.join("oci-state");
    let mut container = OciContainer::create(req.runtime, &state, &bundle.dir, req.id)
        .map_err(|e| refused(req.runtime, e))?;
    let pid = container.pid();
    let namespaces = isocheck_runtime::process::namespace_inodes_of(pid as i32);
    container.start().map_err(|e| refused(req.runtime, e))?;

    let (status, timed_out) = wait_for(pid, req.deadline, &mut container);
    let stopped = container
        .wait(Instant::now() + Duration::from_secs(5))
        .map_err(|e| HalfError::Failed(e.to_string()))?;
    let cgroup = cgroup_counters(req.id);
    container.delete();
    drop(bundle);
    let (exit_code, exit_signal) = match status {
        Some(WaitStatus::Exited(_, code)) => (Some(code), None),
        Some(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
        _ => (None, None),
    };
    Ok(HalfSeen {
        stdout: stopped.stdout,
        exit_code,
        exit_signal,
        timed_out: timed_out || stopped.timed_out,
        cgroup,
        namespaces,
    })
}

/// Waits for the init (our child through the subreaper); at the deadline
/// the runtime kills it and it is reaped.
fn wait_for(
    pid: u32,
    deadline: Instant,
    container: &mut OciContainer,
) -> (Option<WaitStatus>, bool) {
    let pid = Pid::from_raw(pid as i32);
    let mut timed_out = false;
    // After the kill, a bounded wait: a process that does not die is
    // reported as timed out with no status rather than hanging the run.
    let give_up = deadline + Duration::from_secs(10);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(done) => return (Some(done), timed_out),
            // Not our child (a runtime that keeps its own parent process):
            // the exit status is unknown, `state` still says when it stopped.
            Err(_) => return (None, timed_out),
        }
        let now = Instant::now();
        if now >= deadline && !timed_out {
            timed_out = true;
            container.kill();
        }
        if now >= give_up {
            return (None, true);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn cgroup_counters(id: &str) -> Value {
    let stats = CgroupManager::detect()
        .and_then(|m| m.view(id))
        .and_then(|v| v.stats());
    match stats {
        Ok(stats) => json!(stats),
        Err(e) => json!({ "error": format!("read the runtime's cgroup isocheck/{id}: {e}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::first_error_line;

    #[test]
    fn a_refusal_keeps_its_error_line_without_the_backtrace() {
        let youki = "\nERROR libcontainer: v1 cgroup feature is required\n   0: backtrace\n   9: <unknown>\n";
        assert_eq!(
            first_error_line(youki),
            "ERROR libcontainer: v1 cgroup feature is required"
        );
        assert_eq!(first_error_line("just words\nmore"), "just words");
        assert_eq!(first_error_line(&"x".repeat(400)).len(), 300);
    }
}

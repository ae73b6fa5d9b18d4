//! One half of a scenario through an OCI runtime: the bundle for the
//! container the half asks for (and, when it is bridged, a netns of the
//! harness's bound to a file with its veth attached, named in config.json),
//! `create`, what the host can see of the created container (its pid and
//! namespaces), `start`, the runner's interaction through the runtime's
//! commands (`RunningHalf`), its exit status, the counters of the cgroup it
//! ran in (read before `delete`), and nothing of it left afterwards.
//!
//! The exit status: `create` returns once the container's init waits to be
//! started, and that init is then an orphan. The harness is a child
//! subreaper (as a container shim is), so the init becomes its child and its
//! status is ours to wait for; without that only `state`'s "stopped" would
//! be known, and an OOM kill would look like a clean exit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::network::{attach_netns, Netns, NetnsFile, NetworkError, VethAttachment};
use isocheck_runtime::spec::{ContainerSpec, NetworkMode};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::{json, Value};

use super::runtime::Exec;
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
    /// A directory of the run's: the bundle, the runtime's state root and
    /// the netns file go below it.
    pub dir: &'a Path,
    /// Container id and cgroup name (`isocheck/<id>`).
    pub id: &'a str,
    pub deadline: Instant,
    /// Names the host end of the veth (`isoc-v<hint>`) when bridged:
    /// unique among the run's live containers.
    pub veth_hint: &'a str,
}

/// The network the harness made for a bridged container: a netns bound
/// to a file (config.json names its path) with the veth's peer inside.
/// The veth goes first, then the file.
#[derive(Debug)]
struct HalfNetwork {
    veth: Option<VethAttachment>,
    file: Option<NetnsFile>,
}

impl HalfNetwork {
    /// For a spec with its own network namespace on a bridge; `None`
    /// otherwise (no namespace: the stand-in's; no bridge: the runtime
    /// makes an empty one). `host` is the namespace the bridge is in.
    fn create(
        spec: &ContainerSpec,
        host: &Netns,
        path: &Path,
        hint: &str,
    ) -> Result<Option<HalfNetwork>, HalfError> {
        let NetworkMode::Bridge(att) = &spec.network else {
            return Ok(None);
        };
        if !spec.namespaces.net {
            return Ok(None);
        }
        let failed = |step: &str| {
            let step = step.to_string();
            move |e: NetworkError| HalfError::Failed(format!("{step}: {e}"))
        };
        let file = NetnsFile::create(path).map_err(failed("make the container's netns"))?;
        let veth = attach_netns(host, file.netns(), att, hint).map_err(failed(&format!(
            "attach {} to bridge {}",
            path.display(),
            att.bridge
        )))?;
        Ok(Some(HalfNetwork {
            veth: Some(veth),
            file: Some(file),
        }))
    }

    fn path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.path().to_path_buf())
    }

    /// Removes the veth (and its DNAT rules), then the netns file; every
    /// error, not just the first.
    fn remove(mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(veth) = self.veth.take() {
            if let Err(e) = veth.detach() {
                errors.push(e.to_string());
            }
        }
        if let Some(file) = self.file.take() {
            if let Err(e) = file.remove() {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "tear down the half's network: {}",
                errors.join("; ")
            ))
        }
    }
}

/// A started half: the container runs (or has run) and the harness holds
/// its stdio. [`RunningHalf::finish`] collects the end; dropping it instead
/// (an error on the way) deletes the container, its network and bundle.
#[derive(Debug)]
pub struct RunningHalf {
    // Declared in teardown order: the container, its network, its bundle.
    container: OciContainer,
    network: Option<HalfNetwork>,
    bundle: Bundle,
    /// The probe's stdin (it waits there for "go") and stdout.
    pub stdin: Option<File>,
    pub stdout: Option<File>,
    /// Namespace inodes of the container's init, read before start.
    pub namespaces: BTreeMap<String, u64>,
    id: String,
    runtime: String,
    status: Option<WaitStatus>,
}

/// How a half ended, read before delete.
#[derive(Debug, Clone)]
pub struct Finished {
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    pub timed_out: bool,
    pub cgroup: Value,
}

/// Builds the bundle (and the network when bridged), creates and starts
/// the container.
pub fn start_half(req: &HalfRequest<'_>) -> Result<RunningHalf, HalfError> {
    ensure_subreaper()?;
    let bundle = Bundle::create(
        &req.dir.join(format!("bundle-{}", req.id)),
        req.image,
        req.spec.rootfs.overlay,
    )
    .map_err(HalfError::Failed)?;
    let host =
        Netns::current().map_err(|e| HalfError::Failed(format!("the stand-in's netns: {e}")))?;
    let network = HalfNetwork::create(
        req.spec,
        &host,
        &req.dir.join(format!("netns-{}", req.id)),
        req.veth_hint,
    )?;
    let config = build_config(
        req.spec,
        &BundleInputs {
            rootfs: bundle.rootfs(req.image),
            netns: network.as_ref().and_then(HalfNetwork::path),
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
    let (container, io) = OciContainer::create(req.runtime, &state, &bundle.dir, req.id)
        .map_err(|e| refused(req.runtime, e))?;
    let namespaces = isocheck_runtime::process::namespace_inodes_of(container.pid() as i32);
    let running = RunningHalf {
        container,
        network,
        bundle,
        stdin: Some(io.stdin),
        stdout: Some(io.stdout),
        namespaces,
        id: req.id.to_string(),
        runtime: req.runtime.name.clone(),
        status: None,
    };
    running
        .container
        .start()
        .map_err(|e| refused(req.runtime, e))?;
    Ok(running)
}

impl RunningHalf {
    pub fn pid(&self) -> u32 {
        self.container.pid()
    }

    /// `exec` into the running container.
    pub fn exec(&self, argv: &[String]) -> Result<Exec, HalfError> {
        self.container
            .exec(argv)
            .map_err(|e| HalfError::Failed(e.to_string()))
    }

    /// `kill --all` (every process) or `kill` (the init only), SIGKILL.
    pub fn kill(&self, all: bool) -> Result<(), HalfError> {
        self.container
            .kill(all, "KILL")
            .map_err(|e| HalfError::Failed(format!("{} kill: {e}", self.runtime)))
    }

    /// The runtime's `pause` (true) or `resume` (false).
    pub fn pause(&self, pause: bool) -> Result<(), HalfError> {
        self.container
            .pause(pause)
            .map_err(|e| HalfError::Failed(e.to_string()))
    }

    /// The counters of the cgroup the runtime made (`isocheck/<id>`).
    pub fn cgroup(&self) -> Value {
        cgroup_counters(&self.id)
    }

    /// The pids in the container's cgroup (from its first hierarchy's
    /// cgroup.procs).
    pub fn cgroup_procs(&self) -> Result<Vec<i32>, HalfError> {
        let view = CgroupManager::detect()
            .and_then(|m| m.view(&self.id))
            .map_err(|e| HalfError::Failed(format!("the cgroup isocheck/{}: {e}", self.id)))?;
        let path = view
            .paths()
            .first()
            .map(|p| p.join("cgroup.procs"))
            .ok_or_else(|| HalfError::Failed(format!("isocheck/{} has no directory", self.id)))?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| HalfError::Failed(format!("read {}: {e}", path.display())))?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Waits for the init to exit, at most until `deadline` (or until
    /// `stop` says so); whether it did.
    pub fn wait_exit(&mut self, deadline: Instant, stop: &dyn Fn() -> bool) -> bool {
        if self.status.is_some() {
            return true;
        }
        let pid = Pid::from_raw(self.container.pid() as i32);
        loop {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(done) => {
                    self.status = Some(done);
                    return true;
                }
                // Not our child (a runtime that keeps its own parent
                // process): `state` will say when it stopped.
                Err(_) => return false,
            }
            if Instant::now() >= deadline || stop() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the end (SIGKILL to all of it at `deadline` or on `stop`),
    /// reads the cgroup's counters, then deletes the container and removes
    /// its network and bundle.
    pub fn finish(
        mut self,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<Finished, HalfError> {
        let mut timed_out = false;
        if !self.wait_exit(deadline, stop) && self.status.is_none() {
            timed_out = true;
            let _ = self.container.kill(true, "KILL");
            self.wait_exit(Instant::now() + Duration::from_secs(10), &|| false);
        }
        let killed = self
            .container
            .wait_stopped(Instant::now() + Duration::from_secs(5))
            .map_err(|e| HalfError::Failed(e.to_string()))?;
        let cgroup = cgroup_counters(&self.id);
        self.container.delete();
        if let Some(network) = self.network.take() {
            network.remove().map_err(HalfError::Failed)?;
        }
        let (exit_code, exit_signal) = match self.status {
            Some(WaitStatus::Exited(_, code)) => (Some(code), None),
            Some(WaitStatus::Signaled(_, sig, _)) => (None, Some(sig as i32)),
            _ => (None, None),
        };
        let RunningHalf { bundle, .. } = self;
        drop(bundle);
        Ok(Finished {
            exit_code,
            exit_signal,
            timed_out: timed_out || killed,
            cgroup,
        })
    }
}

/// Runs one half to its end without talking to it: its stdin closed, its
/// stdout read to EOF. The bundle, the container, its network and state
/// are gone when this returns, whatever happened.
pub fn run_half(req: &HalfRequest<'_>) -> Result<HalfSeen, HalfError> {
    let mut running = start_half(req)?;
    drop(running.stdin.take());
    let mut out = running.stdout.take();
    let namespaces = running.namespaces.clone();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let finished = running.finish(req.deadline, &|| false);
    let stdout = reader.join().unwrap_or_default();
    let f = finished?;
    Ok(HalfSeen {
        stdout,
        exit_code: f.exit_code,
        exit_signal: f.exit_signal,
        timed_out: f.timed_out,
        cgroup: f.cgroup,
        namespaces,
    })
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

/// Only `create` and `start` refusing is the runtime's word on the config
/// (unsupported); a `state` that fails after a create that succeeded is
/// the runtime failing, which must not hide as unsupported.
fn refused(runtime: &OciRuntime, e: RuntimeError) -> HalfError {
    match e {
        RuntimeError::Refused { step, stderr } if matches!(step, "create" | "start") => {
            HalfError::Refused {
                runtime: runtime.name.clone(),
                step,
                stderr: first_error_line(&stderr),
            }
        }
        other => HalfError::Failed(other.to_string()),
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
    use super::{first_error_line, refused, HalfError, OciRuntime, RuntimeError};

    #[test]
    fn only_create_and_start_refusing_makes_a_half_unsupported() {
        let youki = OciRuntime {
            name: "youki".into(),
            path: "/bin/youki".into(),
            version: String::new(),
        };
        let at = |step| RuntimeError::Refused {
            step,
            stderr: "Error: failed to seal /proc/self/exe".into(),
        };
        for step in ["create", "start"] {
            let e = refused(&youki, at(step));
            assert!(matches!(e, HalfError::Refused { .. }), "{step}: {e}");
        }
        let e = refused(&youki, at("state"));
        assert!(matches!(e, HalfError::Failed(_)), "{e}");
        assert!(e.to_string().contains("seal /proc/self/exe"), "{e}");
    }

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

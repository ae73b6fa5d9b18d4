//! Runs scenarios: builds each run's container from the scenario's data,
//! drives the interaction, gathers the observation (probe output, exit,
//! cgroup counters, what the stand-in host saw) and checks the expectations.
//! A guarantee passes only when its run holds AND its control (the same check
//! with one isolation switched off) shows the violation.

mod error;
mod half;
mod host_view;
mod interact;
mod probe_output;
mod state;

pub use error::ObserveError;
pub use probe_output::last_json;

use crate::expect::evaluate_all;
use crate::fixtures::{self, DecoyProcess, DecoyShm, FixtureError, RunDir};
use crate::nettestbed::NetTestbed;
use crate::oci::OciRuntime;
use crate::report::{RuntimeInfo, ScenarioResult, Verdict};
use crate::requirements::{HostFacts, Requirement};
use crate::scenario::Scenario;
use crate::signals::Interrupt;
use isocheck_runtime::spec::{BridgeAttachment, ContainerSpec, RootfsSource};
use isocheck_runtime::{Container, SpawnOptions, StdioMode};
use probe_output::LineReader;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which of a scenario's two runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// Isolation on: the guarantee must hold.
    Run,
    /// One isolation switched off: the violation must be seen.
    Control,
}

impl Which {
    pub fn name(self) -> &'static str {
        match self {
            Which::Run => "run",
            Which::Control => "control",
        }
    }
}

pub use crate::proof::{
    parse_publish, with_user_namespace, CONTAINER_HOSTNAME, DEFAULT_MEMORY, DEFAULT_PIDS,
    USERNS_BASE,
};

/// One harness run: the stand-in's fixtures shared by every scenario.
#[derive(Debug)]
pub struct Runner {
    pub host: HostFacts,
    probe: PathBuf,
    image: PathBuf,
    decoy: DecoyProcess,
    _shm: DecoyShm,
    shm_key: i32,
    marker: PathBuf,
    marker_token: String,
    counter: usize,
    /// A cgroup of ours that a container tries to move itself into.
    escape_cgroup: Option<isocheck_runtime::cgroups::Cgroup>,
    /// Bridges and the outside world, made on first use.
    net: Option<NetTestbed>,
    /// An OCI runtime that starts the containers instead of ours
    /// (`isocheck run --runtime`).
    oci: Option<OciRuntime>,
    /// Set when `isocheck run` is asked to stop: checked before each half
    /// and in every wait, which then gives up (the half's containers are
    /// killed as they drop).
    interrupt: Interrupt,
    // Last: dropped after the fixtures that live inside it.
    run: RunDir,
    /// The runtime's `isocheck` cgroup parents stay while the runner lives
    /// instead of being made and removed around every container; empty
    /// ones go when it is dropped (after every container of the run).
    _parents: Option<isocheck_runtime::cgroups::ParentHold>,
}

impl Runner {
    /// Prepares the run inside the stand-in host (enter it first).
    pub fn new() -> Result<Runner, FixtureError> {
        let probe = fixtures::probe_binary()?;
        let run = RunDir::create()?;
        let image = run.join("image");
        fixtures::build_image(&image, &probe)?;
        fixtures::join_secret_group()?;
        let decoy = DecoyProcess::start(&run, &probe)?;
        // From the run id, not the pid: unique per runner, whichever
        // process holds it.
        let shm_key =
            0x1500_0000 | (u32::from_str_radix(&run.run_id, 16).unwrap_or(0) & 0x00ff_ffff) as i32;
        let shm = DecoyShm::create(shm_key)?;
        let marker = run.join("escape-marker");
        let marker_token = fixtures::token();
        std::fs::write(&marker, &marker_token).map_err(|source| FixtureError::Io {
            step: "write the escape marker",
            path: marker.clone(),
            source,
        })?;
        let mut host = HostFacts::gather();
        host.overlay_in_userns = overlay_in_userns_refused(&image, &run.run_id);
        Ok(Runner {
            host,
            probe,
            image,
            decoy,
            _shm: shm,
            shm_key,
            marker,
            marker_token,
            counter: 0,
            escape_cgroup: None,
            net: None,
            oci: None,
            interrupt: Interrupt::none(),
            run,
            _parents: isocheck_runtime::cgroups::CgroupManager::detect()
                .ok()
                .map(|m| m.hold_parents()),
        })
    }

    /// From now on, `interrupt` stops the half in flight.
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// From now on the containers are started by `runtime`, through OCI
    /// bundles (see `oci::half`).
    pub fn set_runtime(&mut self, runtime: OciRuntime) {
        self.oci = Some(runtime);
    }

    /// `Some`: as [`Runner::set_runtime`]; `None`: our runtime again (the
    /// per-runtime trials of `cargo test` share one runner).
    pub fn use_runtime(&mut self, runtime: Option<OciRuntime>) {
        self.oci = runtime;
    }

    /// The runtime that starts the containers, for the report.
    pub fn runtime_info(&self) -> RuntimeInfo {
        match &self.oci {
            Some(r) => RuntimeInfo {
                name: r.name.clone(),
                path: r.path.display().to_string(),
                version: r.version.clone(),
            },
            None => RuntimeInfo::default(),
        }
    }

    /// Why the scenario cannot run here, if it cannot.
    pub fn unsupported(&self, s: &Scenario) -> Option<String> {
        let mut reqs = vec![Requirement::Root];
        reqs.extend(s.requires.iter().filter_map(|r| Requirement::parse(r).ok()));
        let mut reasons: Vec<String> = reqs.iter().filter_map(|r| r.missing(&self.host)).collect();
        if self.oci.is_some() {
            reasons.extend(oci_unsupported(s));
        }
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }

    /// Runs both halves and gives the verdict.
    pub fn run_scenario(&mut self, s: &Scenario) -> ScenarioResult {
        let started = Instant::now();
        let expected = json!({
            "run": s.run.expect.iter().map(|e| e.describe()).collect::<Vec<_>>(),
            "control": s.control.expect.iter().map(|e| e.describe()).collect::<Vec<_>>(),
        });
        let mut result = ScenarioResult {
            id: s.id.clone(),
            guarantee: s.guarantee.clone(),
            protection: s.control.switch_off.name().to_string(),
            verdict: Verdict::Unsupported,
            control_violation_observed: false,
            observed: json!({}),
            expected,
            duration_ms: 0,
            reason: None,
        };
        if let Some(why) = self.unsupported(s) {
            result.reason = Some(why);
            return result;
        }
        let run = self.check(s, Which::Run);
        let control = self.check(s, Which::Control);
        // A runtime that refuses a half's config: unsupported, in its words.
        let refused: Vec<String> = [(Which::Run, &run), (Which::Control, &control)]
            .iter()
            .filter_map(|(w, o)| o.refused.as_ref().map(|r| format!("{}: {r}", w.name())))
            .collect();
        if !refused.is_empty() {
            result.observed = json!({ "run": run.observation, "control": control.observation });
            result.reason = Some(refused.join(" | "));
            result.duration_ms = started.elapsed().as_millis() as u64;
            return result;
        }
        result.observed = json!({ "run": run.observation, "control": control.observation });
        result.control_violation_observed = control.failures.is_empty();
        let mut reasons = Vec::new();
        for (which, outcome) in [(Which::Run, &run), (Which::Control, &control)] {
            if !outcome.failures.is_empty() {
                reasons.push(format!("{}: {}", which.name(), outcome.failures.join("; ")));
            }
        }
        result.verdict = if reasons.is_empty() {
            Verdict::Pass
        } else {
            Verdict::Fail
        };
        result.reason = (!reasons.is_empty()).then(|| reasons.join(" | "));
        result.duration_ms = started.elapsed().as_millis() as u64;
        result
    }

    /// Runs one half and checks its expectations.
    pub fn check(&mut self, s: &Scenario, which: Which) -> Outcome {
        match self.observe(s, which) {
            Ok(observation) => {
                let expects = match which {
                    Which::Run => &s.run.expect,
                    Which::Control => &s.control.expect,
                };
                let failures = evaluate_all(expects, &observation);
                Outcome {
                    observation,
                    failures,
                    refused: None,
                }
            }
            Err(e) => {
                let refused = matches!(e, ObserveError::Refused(_)).then(|| e.to_string());
                let e = e.to_string();
                Outcome {
                    observation: json!({ "error": e }),
                    failures: vec![e],
                    refused,
                }
            }
        }
    }

    /// Starts a container with all three pipes.
    fn spawn(&self, spec: &ContainerSpec, name: &str) -> Result<Spawned, ObserveError> {
        let mut opts = SpawnOptions::new(self.run.run_id.clone(), name);
        opts.stdin = StdioMode::Piped;
        opts.stdout = StdioMode::Piped;
        opts.stderr = StdioMode::Piped;
        let mut container = Container::spawn(spec, opts)
            .map_err(ObserveError::container(format!("spawn {name}")))?;
        tracing::debug!(name, pid = container.pid(), "container spawned");
        let stdin = container.take_stdin();
        let stdout = container
            .take_stdout()
            .ok_or(ObserveError::Missing("no stdout pipe"))?;
        let out = LineReader::new(stdout, &self.interrupt);
        let err = container.take_stderr();
        Ok(Spawned {
            container,
            stdin,
            out,
            err,
        })
    }

    /// Gives back a half's addresses (its containers are gone) and its NAT.
    fn release(&mut self, half: NetHalf) {
        let NetHalf {
            attachments,
            nat,
            peer,
            outside_server,
        } = half;
        drop(peer);
        if let Some((mut child, _)) = outside_server {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(testbed) = self.net.as_mut() {
            for att in &attachments {
                testbed.release(att);
            }
        }
        drop(nat);
    }

    /// The placeholders every half has: the run's decoys and marker.
    fn vars(&mut self) -> Result<BTreeMap<String, String>, ObserveError> {
        if self.escape_cgroup.is_none() {
            let made = isocheck_runtime::cgroups::CgroupManager::detect().and_then(|m| {
                m.create(
                    &format!("{}-escape-decoy", self.run.run_id),
                    &Default::default(),
                )
            });
            self.escape_cgroup = Some(made.map_err(|source| ObserveError::Cgroup {
                step: "create the escape-target cgroup",
                source,
            })?);
        }
        // The pids hierarchy on v1/hybrid (any one hierarchy proves the move),
        // the unified node on v2.
        let paths = self
            .escape_cgroup
            .as_ref()
            .map(|c| c.paths())
            .unwrap_or_default();
        let escape_target = paths
            .iter()
            .find(|p| p.components().any(|c| c.as_os_str() == "pids"))
            .or(paths.first())
            .map(|p| p.join("cgroup.procs").display().to_string())
            .ok_or(ObserveError::Missing(
                "the escape-target cgroup has no directory",
            ))?;
        Ok(BTreeMap::from([
            ("cgroup.escape_target".into(), escape_target),
            ("decoy.pid".into(), self.decoy.pid().to_string()),
            ("decoy.comm".into(), fixtures::DECOY_COMM.into()),
            ("shm.key".into(), self.shm_key.to_string()),
            ("marker.path".into(), self.marker.display().to_string()),
            ("marker.token".into(), self.marker_token.clone()),
            ("rundir".into(), self.run.path.display().to_string()),
            ("run_id".into(), self.run.run_id.clone()),
            // A uid nothing else on the host runs as (RLIMIT_NPROC counts
            // every task of a real uid, host-wide).
            (
                "unique_uid".into(),
                (3_000_000 + std::process::id()).to_string(),
            ),
        ]))
    }
}

/// A started container with its pipes.
struct Spawned {
    container: Container,
    stdin: Option<File>,
    out: LineReader,
    err: Option<File>,
}

/// A started container of an OCI runtime with its pipes.
struct OciSpawned {
    running: crate::oci::RunningHalf,
    stdin: Option<File>,
    out: LineReader,
}

/// The network pieces of one half, released when it ends.
#[derive(Default)]
struct NetHalf {
    attachments: Vec<BridgeAttachment>,
    nat: Option<isocheck_runtime::network::Nat>,
    peer: Option<Spawned>,
    outside_server: Option<(std::process::Child, LineReader)>,
}

fn address_only(cidr: &str) -> String {
    cidr.split('/').next().unwrap_or(cidr).to_string()
}

fn child_stdout(child: &mut std::process::Child) -> Result<File, ObserveError> {
    let out = child
        .stdout
        .take()
        .ok_or(ObserveError::Missing("no stdout pipe"))?;
    Ok(File::from(std::os::fd::OwnedFd::from(out)))
}

/// Tries the call: a container with a user namespace over the overlaid
/// image. `Some(reason)` only when the kernel refuses the overlay mount
/// itself (before 5.11 overlayfs cannot be mounted in a user namespace);
/// any other failure is left for the scenarios to show as a fail.
fn overlay_in_userns_refused(image: &Path, run_id: &str) -> Option<String> {
    let mut spec = ContainerSpec::default();
    spec.rootfs.source = RootfsSource::Dir(image.to_owned());
    with_user_namespace(&mut spec);
    spec.command = vec!["/probe".into(), "noop".into()];
    let mut opts = SpawnOptions::new(run_id, "userns-probe");
    opts.stdout = StdioMode::Null;
    match Container::spawn(&spec, opts) {
        Err(isocheck_runtime::Error::Child(e))
            if e.step == isocheck_runtime::Step::MountOverlay && e.errno == nix::errno::Errno::EPERM =>
        {
            Some(format!(
                "this kernel refuses an overlayfs mount inside a user namespace ({e}; overlayfs allows it from Linux 5.11)"
            ))
        }
        Ok(mut c) => {
            let _ = c.wait_timeout(Duration::from_secs(5));
            None
        }
        Err(_) => None,
    }
}

/// A half's result: what was seen and which expectations did not hold.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub observation: Value,
    pub failures: Vec<String>,
    /// The OCI runtime refused this half's config (its message).
    pub refused: Option<String>,
}

/// What an OCI runtime cannot be asked for here: the interactions that
/// have no form in the runtime's command line, and some fixtures live
/// across our spawn only; a control whose protection has no OCI form
/// cannot be made as a config change. Network scenarios run on a netns the
/// harness makes and names in config.json; exec, kill and the rest go
/// through the runtime's own commands (`oci_interact`).
fn oci_unsupported(s: &Scenario) -> Vec<String> {
    use crate::scenario::Fixture;
    let mut why = Vec::new();
    for f in &s.fixtures {
        if matches!(f, Fixture::LeakedHostFd | Fixture::LoopDevice) {
            why.push(format!(
                "fixture {f:?} works across isocheck's own spawn only"
            ));
        }
    }
    if s.expects_field("host.propagated_mounts") {
        why.push("host.propagated_mounts looks under isocheck's own temp dir".into());
    }
    if let Err(no_form) = crate::oci::oci_meaning(s.control.switch_off) {
        why.push(format!(
            "the control switches off {}: {no_form}",
            s.control.switch_off
        ));
    }
    why
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proof::expand;

    #[test]
    fn placeholders_are_filled() {
        let vars = BTreeMap::from([("decoy.pid".to_string(), "42".to_string())]);
        assert_eq!(expand("--pid={decoy.pid}", &vars), "--pid=42");
        assert_eq!(expand("{unknown}", &vars), "{unknown}");
    }

    /// Network scenarios and every interaction run through an OCI runtime
    /// now; what stays unsupported is a fixture of our spawn or a control
    /// with no OCI form.
    #[test]
    fn oci_unsupported_keeps_only_what_has_no_oci_form() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all = crate::scenario::load_dir(&dir).expect("scenarios load");
        let why = |id: &str| {
            let s = all.iter().find(|s| s.id == id).expect(id);
            oci_unsupported(s)
        };
        for id in [
            "net-port-forward",
            "net-nat-outside",
            "net-container-to-container",
            "exec-confined",
            "cgroup-kill-all",
            "cpu-weight",
            "mount-namespace-private",
        ] {
            assert_eq!(why(id), Vec::<String>::new(), "{id}");
        }
        let pause = why("pause-freezes-all");
        assert_eq!(pause.len(), 1, "{pause:?}");
        assert!(pause[0].contains("group-freeze"), "{pause:?}");
        let joins = why("exec-joins-namespaces");
        assert!(
            joins.iter().any(|w| w.contains("exec-joins-namespaces")),
            "{joins:?}"
        );
        assert!(!why("escape-leaked-fd").is_empty());
    }

    #[test]
    fn publish_is_two_ports() {
        let p = parse_publish("8080:8000").unwrap();
        assert_eq!((p.host_port, p.container_port), (8080, 8000));
        for bad in ["8080", "0:80", "a:80", "80:70000"] {
            assert!(parse_publish(bad).unwrap_err().contains(bad), "{bad}");
        }
    }
}

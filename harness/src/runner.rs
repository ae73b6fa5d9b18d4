//! Runs scenarios: builds each run's container from the scenario's data,
//! drives the interaction, gathers the observation (probe output, exit,
//! cgroup counters, what the stand-in host saw) and checks the expectations.
//! A guarantee passes only when its run holds AND its control (the same check
//! with one isolation switched off) shows the violation.

use crate::expect::{evaluate_all, lookup};
use crate::fixtures::{self, DecoyProcess, DecoyShm, FixtureError, RoBindSource, RunDir};
use crate::nettestbed::NetTestbed;
use crate::report::{ScenarioResult, Verdict};
use crate::requirements::{HostFacts, Requirement};
use crate::scenario::{ContainerOverrides, Fixture, Interaction, Scenario};
use crate::signals::Interrupt;
use crate::standin;
use isocheck_runtime::spec::{BridgeAttachment, ContainerSpec, NetworkMode, RootfsSource};
use isocheck_runtime::{Container, SpawnOptions, StdioMode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
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

use crate::proof::{build_spec, expand_all, on_second_bridge};
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
    /// Set when `isocheck run` is asked to stop: checked before each half
    /// and in every wait, which then gives up (the half's containers are
    /// killed as they drop).
    interrupt: Interrupt,
    // Last: dropped after the fixtures that live inside it.
    run: RunDir,
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
        let shm_key = 0x1500_0000 | (std::process::id() as i32 & 0xffff);
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
            interrupt: Interrupt::none(),
            run,
        })
    }

    /// From now on, `interrupt` stops the half in flight.
    pub fn set_interrupt(&mut self, interrupt: Interrupt) {
        self.interrupt = interrupt;
    }

    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// Why the scenario cannot run here, if it cannot.
    pub fn unsupported(&self, s: &Scenario) -> Option<String> {
        let mut reqs = vec![Requirement::Root];
        reqs.extend(s.requires.iter().filter_map(|r| Requirement::parse(r).ok()));
        let reasons: Vec<String> = reqs.iter().filter_map(|r| r.missing(&self.host)).collect();
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
                }
            }
            Err(e) => Outcome {
                observation: json!({ "error": e }),
                failures: vec![e],
            },
        }
    }

    /// Starts the container for one half and gathers what was seen.
    pub fn observe(&mut self, s: &Scenario, which: Which) -> Result<Value, String> {
        if self.interrupt.is_set() {
            return Err(INTERRUPTED.into());
        }
        self.counter += 1;
        self.decoy.ensure_alive().map_err(|e| e.to_string())?;
        let probe_args = &s.run.probe;
        let companion = s.run.companion.as_ref();
        let overrides = s.container(which == Which::Control);
        let mut host = Map::new();
        let mut vars = self.vars()?;
        let token = fixtures::token();
        vars.insert("token".into(), token.clone());

        // Fixtures asked for by the scenario, fresh for each half.
        let mut robind = None;
        let mut secret = None;
        let mut leak = None;
        let mut loop_device = None;
        let mut image = self.image.clone();
        for fixture in &s.fixtures {
            match fixture {
                Fixture::RoBindSource => {
                    let src = RoBindSource::create(
                        self.run.join(&format!("robind-{}", self.counter)),
                        &token,
                    )
                    .map_err(|e| e.to_string())?;
                    vars.insert("robind".into(), src.path.display().to_string());
                    let hash = src.hash().map_err(|e| e.to_string())?;
                    host.insert("robind_hash_before".into(), json!(hash));
                    robind = Some(src);
                }
                Fixture::ImageCopy if overrides.image_copy => {
                    let copy = self.run.join(&format!("image-copy-{}", self.counter));
                    fixtures::copy_tree(&self.image, &copy)
                        .map_err(|e| format!("copy the image: {e}"))?;
                    image = copy;
                }
                Fixture::SecretFile => {
                    let dir = fixtures::SecretDir::create(
                        self.run.join(&format!("secret-{}", self.counter)),
                    )
                    .map_err(|e| e.to_string())?;
                    vars.insert("secret".into(), dir.path.display().to_string());
                    secret = Some(dir);
                }
                Fixture::LeakedHostFd => {
                    let dir =
                        fixtures::LeakDir::create(self.run.join(&format!("leak-{}", self.counter)))
                            .map_err(|e| e.to_string())?;
                    vars.insert("leak.token".into(), dir.token.clone());
                    vars.insert("leak.marker".into(), fixtures::LEAK_MARKER.into());
                    leak = Some(dir);
                }
                Fixture::LoopDevice => {
                    let dev = crate::loopdev::LoopDevice::create(
                        self.run.join(&format!("loop-{}.img", self.counter)),
                        crate::loopdev::SIZE,
                        &format!("isocheck-{}", self.run.run_id),
                    )
                    .map_err(|e| e.to_string())?;
                    vars.insert("loop.device".into(), dev.path.display().to_string());
                    loop_device = Some(dev);
                }
                Fixture::ImageCopy | Fixture::EscapeMarker => {}
            }
        }
        // Hashing the image (the probe is megabytes) is most of a scenario's
        // CPU, so only scenarios that look at `host.image_unchanged` pay it.
        let image_hash_before = if s.expects_field("host.image_unchanged") {
            Some(fixtures::tree_hash(&image).map_err(|e| format!("hash the image: {e}"))?)
        } else {
            None
        };
        let clocks = host_clocks()?;
        vars.insert("host.monotonic".into(), format!("{:.3}", clocks.0));
        let root = nix::sys::stat::stat("/").map_err(|e| format!("stat the stand-in's /: {e}"))?;
        vars.insert("host.root_dev".into(), root.st_dev.to_string());
        vars.insert("host.root_ino".into(), root.st_ino.to_string());
        vars.insert("host.boottime".into(), format!("{:.3}", clocks.1));

        let deadline = Instant::now() + Duration::from_secs(s.timeout_secs);
        let mut doc = Map::new();
        let mut net = NetHalf::default();
        if s.needs_network() {
            if self.net.is_none() {
                self.net = Some(NetTestbed::create(&self.run.run_id).map_err(|e| e.to_string())?);
            }
            let testbed = self.net.as_mut().ok_or("network testbed missing")?;
            vars.extend(testbed.vars());
            if overrides.nat {
                net.nat = Some(testbed.nat()?);
            }
        }
        if let Some(peer_argv) = &s.peer {
            let testbed = self.net.as_mut().ok_or("network testbed missing")?;
            let att = testbed.attachment(false, false, None)?;
            vars.insert("peer.address".into(), address_only(&att.address));
            if let Some(address6) = &att.address6 {
                vars.insert("peer.address6".into(), address_only(address6));
            }
            let mut spec = build_spec(
                &ContainerOverrides::default(),
                peer_argv,
                &vars,
                &self.image,
            )?;
            spec.network = NetworkMode::Bridge(att.clone());
            net.attachments.push(att);
            let mut peer = self.spawn(&spec, &format!("peer-{}", self.counter))?;
            peer.out.wait_ready_or_output(deadline)?;
            net.peer = Some(peer);
        }
        if let (Some(argv), false) = (&s.outside, s.interaction == Interaction::OutsideClient) {
            let testbed = self.net.as_ref().ok_or("network testbed missing")?;
            let mut child = testbed.spawn_outside(&self.probe, &expand_all(argv, &vars))?;
            let mut reader = LineReader::new(child_stdout(&mut child)?, &self.interrupt);
            reader.wait_ready_or_output(deadline)?;
            net.outside_server = Some((child, reader));
        }

        let mut spec = build_spec(overrides, probe_args, &vars, &image)?;
        if let NetworkMode::Bridge(wanted) = &spec.network {
            let testbed = self.net.as_mut().ok_or("network testbed missing")?;
            let att = testbed.attachment(
                on_second_bridge(wanted),
                wanted.detached,
                wanted.publish.first().copied(),
            )?;
            spec.network = NetworkMode::Bridge(att.clone());
            net.attachments.push(att);
        }
        // The control: exactly one protection off (the loader checked that
        // nothing else differs).
        if which == Which::Control && s.apply_switch_off {
            s.control.switch_off.switch_off(&mut spec);
            if !spec.namespaces.mount {
                // The host's files: the probe by its host path.
                spec.command[0] = image.join("probe").display().to_string();
            }
        }
        // The leaked-fd fixture: a host directory open without O_CLOEXEC
        // across this one spawn, closed as soon as it returns.
        let inheritable = match &leak {
            Some(dir) => Some(dir.open_inheritable().map_err(|e| e.to_string())?),
            None => None,
        };
        if let Some(fd) = &inheritable {
            use std::os::fd::AsRawFd;
            host.insert("leaked_fd".into(), json!(fd.as_raw_fd()));
        }
        let spawned = self.spawn(&spec, &format!("{}-{}", which.name(), self.counter));
        drop(inheritable);
        let Spawned {
            mut container,
            mut stdin,
            mut out,
            err: mut err_pipe,
        } = match spawned {
            Ok(s) => s,
            Err(e) => {
                self.release(net);
                return Err(e);
            }
        };

        match s.interaction {
            Interaction::None => {}
            Interaction::MountLeak | Interaction::MountUnderBindSource => {
                out.wait_ready(deadline)?;
                let inside = format!("inside-{token}");
                host.insert(
                    "sees_inside_mount".into(),
                    json!(own_mounts_contain(&inside)?),
                );
                let mark = host_marker_dir(s.interaction, &self.run.path, robind.as_ref(), &token)?;
                std::fs::create_dir_all(&mark)
                    .map_err(|e| format!("create {}: {e}", mark.display()))?;
                nix::mount::mount(
                    Some("tmpfs"),
                    &mark,
                    Some("tmpfs"),
                    nix::mount::MsFlags::empty(),
                    Some("size=64k"),
                )
                .map_err(|e| format!("mount the host marker at {}: {e}", mark.display()))?;
                host.insert("marker_mounted_at".into(), json!(mark));
                say_go(&mut stdin);
            }
            Interaction::Exec => {
                out.wait_ready(deadline)?;
                let inodes = container.namespace_inodes();
                if !["mnt", "pid", "net"]
                    .iter()
                    .all(|ns| inodes.contains_key(*ns))
                {
                    return Err(format!(
                        "read PID 1's namespaces (/proc/{}/ns): only {inodes:?}",
                        container.pid()
                    ));
                }
                host.insert("container_ns".into(), json!(inodes));
                let companion = companion.ok_or("interaction exec needs a companion probe")?;
                let companion = expand_all(companion, &vars);
                // In the control the spec has exec's setns switched off.
                let probe = if container.exec_joins() {
                    "/probe".to_string()
                } else {
                    self.probe.display().to_string()
                };
                let mut argv = vec![probe];
                argv.extend(companion);
                // The leaked-fd fixture again, across this exec alone.
                let inheritable = match &leak {
                    Some(dir) => Some(dir.open_inheritable().map_err(|e| e.to_string())?),
                    None => None,
                };
                let exec = container.exec(&argv, StdioMode::Piped);
                drop(inheritable);
                let mut child = exec.map_err(|e| format!("exec: {e}"))?;
                let mut seen = String::new();
                if let Some(mut o) = child.take_stdout() {
                    o.read_to_string(&mut seen)
                        .map_err(|e| format!("read the exec'd probe's output: {e}"))?;
                }
                child.wait().map_err(|e| format!("exec wait: {e}"))?;
                doc.insert("companion".into(), last_json(&seen).unwrap_or(Value::Null));
                say_go(&mut stdin);
            }
            Interaction::KillAfterOutput => {
                let first = out.next_json(deadline)?;
                doc.insert("probe".into(), first);
                doc.insert("cgroup_before_kill".into(), cgroup_stats(&container));
                let before = container
                    .cgroup_procs()
                    .map_err(|e| format!("read the container's cgroup tasks: {e}"))?;
                host.insert("tasks_before_kill".into(), json!(before.len()));
                // The control's spec has group kill switched off (PID 1 only).
                container
                    .kill()
                    .map_err(|e| format!("kill the container: {e}"))?;
                let _ = container.wait_timeout(Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(300));
                let left = container
                    .cgroup_procs()
                    .map_err(|e| format!("read the container's cgroup tasks: {e}"))?;
                host.insert("tasks_after_kill".into(), json!(left.len()));
            }
            Interaction::ThenCompanion => {}
            Interaction::PauseResume => {
                out.wait_ready(deadline)?;
                crate::measure::pause_resume(&container, &mut host)?;
                // The windows are measured: the rest of the burn shows
                // nothing more, so it is not waited for.
                container
                    .kill()
                    .map_err(|e| format!("kill the burner: {e}"))?;
            }
            Interaction::CpuTwin => {
                let mut twin_spec = spec.clone();
                s.control.switch_off.switch_off(&mut twin_spec);
                let name = format!("{}-{}-twin", which.name(), self.counter);
                let mut twin = self.spawn(&twin_spec, &name)?;
                out.wait_ready(deadline)?;
                twin.out.wait_ready(deadline)?;
                crate::measure::usage_ratio(&container, &twin.container, &mut host)?;
                // Both measured: the rest of the burns shows nothing more.
                for c in [&container, &twin.container] {
                    c.kill().map_err(|e| format!("kill a burner: {e}"))?;
                }
                doc.insert(
                    "twin".into(),
                    last_json(&twin.out.rest()).unwrap_or(Value::Null),
                );
            }
            Interaction::UsageWindow => {
                out.wait_ready(deadline)?;
                let before = usage_usec(&container)?;
                host.insert("usage_usec_before".into(), json!(before));
                say_go(&mut stdin);
            }
            Interaction::OutsideClient => {
                out.wait_ready_or_output(deadline)?;
                let argv = s
                    .outside
                    .as_ref()
                    .ok_or("interaction outside-client needs an outside probe")?;
                let testbed = self.net.as_ref().ok_or("network testbed missing")?;
                let child = testbed.spawn_outside(&self.probe, &expand_all(argv, &vars))?;
                let output = child
                    .wait_with_output()
                    .map_err(|e| format!("outside client: {e}"))?;
                doc.insert(
                    "outside".into(),
                    last_json(&String::from_utf8_lossy(&output.stdout)).unwrap_or(Value::Null),
                );
            }
        }

        // Everything the probe prints until it exits; the last JSON object
        // that is not a phase marker is its observation.
        let status = wait_until(&mut container, deadline, &self.interrupt)
            .map_err(|e| format!("wait: {e}"))?;
        let timed_out = status.is_none();
        if timed_out {
            let _ = container.kill();
        }
        let status = match status {
            Some(st) => st,
            None => container
                .wait()
                .map_err(|e| format!("wait after kill: {e}"))?,
        };
        drop(stdin);
        let text = out.rest();
        if !doc.contains_key("probe") {
            doc.insert("probe".into(), last_json(&text).unwrap_or(Value::Null));
        }
        let mut stderr = String::new();
        if let Some(e) = err_pipe.as_mut() {
            let _ = e.read_to_string(&mut stderr);
        }
        doc.insert(
            "exit".into(),
            json!({ "code": status.code, "signal": status.signal, "timed_out": timed_out }),
        );
        doc.insert("cgroup".into(), cgroup_stats(&container));
        if s.interaction == Interaction::UsageWindow {
            // The cgroup's own counter over exactly the burn window: read
            // just before go, and now that the burner is done.
            let after = usage_usec(&container)?;
            host.insert("usage_usec_after".into(), json!(after));
            let wall = doc
                .get("probe")
                .and_then(|p| p.get("wall_s"))
                .and_then(Value::as_f64)
                .filter(|w| *w > 0.0);
            let before = host["usage_usec_before"].as_u64();
            if let (Some(wall), Some(before)) = (wall, before) {
                let used = after.saturating_sub(before) as f64 / 1e6;
                host.insert("usage_cpus".into(), json!(used / wall));
            }
        }
        if !stderr.trim().is_empty() {
            doc.insert("stderr".into(), json!(tail(&stderr, 800)));
        }
        // Before the drop, which detaches them: the mounts that built the
        // container's root and reached the stand-in's own table.
        if s.expects_field("host.propagated_mounts") {
            let dir = container
                .temp_dir()
                .ok_or("the container has no temp dir to look under")?;
            host.insert(
                "propagated_mounts".into(),
                json!(own_mounts_under(dir)?.len()),
            );
        }
        drop(container);

        if s.interaction == Interaction::ThenCompanion {
            let argv = companion.ok_or("interaction then-companion needs a companion probe")?;
            let mut spec = spec.clone();
            spec.command.truncate(1);
            spec.command.extend(expand_all(argv, &vars));
            // Its own address: the first container's may linger a moment in
            // its dying namespace.
            if let NetworkMode::Bridge(att) = &spec.network {
                let testbed = self.net.as_mut().ok_or("network testbed missing")?;
                let fresh = testbed.attachment(overrides.second_bridge, att.detached, None)?;
                net.attachments.push(fresh.clone());
                spec.network = NetworkMode::Bridge(fresh);
            }
            let mut second = self.spawn(
                &spec,
                &format!("{}-{}-companion", which.name(), self.counter),
            )?;
            let status = wait_until(&mut second.container, deadline, &self.interrupt);
            if !matches!(status, Ok(Some(_))) {
                let _ = second.container.kill();
            }
            doc.insert(
                "companion".into(),
                last_json(&second.out.rest()).unwrap_or(Value::Null),
            );
        }
        if let Some(mut peer) = net.peer.take() {
            if !matches!(
                peer.container.wait_timeout(Duration::from_secs(3)),
                Ok(Some(_))
            ) {
                let _ = peer.container.kill();
            }
            doc.insert(
                "peer".into(),
                last_json(&peer.out.rest()).unwrap_or(Value::Null),
            );
        }
        if let Some((mut child, mut reader)) = net.outside_server.take() {
            let _ = reader.next_json(Instant::now() + Duration::from_secs(3));
            let _ = child.kill();
            let _ = child.wait();
            doc.insert(
                "outside".into(),
                last_json(&reader.rest()).unwrap_or(Value::Null),
            );
        }
        self.release(net);

        // What the stand-in host sees afterwards.
        let alive = self.decoy.alive().map_err(|e| e.to_string())?;
        host.insert("decoy_alive".into(), json!(alive));
        let hostname =
            nix::unistd::gethostname().map_err(|e| format!("read the stand-in's hostname: {e}"))?;
        host.insert("hostname".into(), json!(hostname.to_string_lossy()));
        host.insert("expected_hostname".into(), json!(standin::STANDIN_HOSTNAME));
        if let Some(before) = image_hash_before {
            let after = fixtures::tree_hash(&image).map_err(|e| format!("hash the image: {e}"))?;
            host.insert("image_unchanged".into(), json!(before == after));
        }
        if let Some(dir) = &secret {
            let uid = dir.created_uid("created").map_err(|e| e.to_string())?;
            host.insert("created_uid".into(), json!(uid));
        }
        drop(secret);
        if let Some(src) = &robind {
            let after = src.hash().map_err(|e| e.to_string())?;
            host.insert(
                "robind_unchanged".into(),
                json!(host["robind_hash_before"] == json!(after)),
            );
        }
        drop(leak);
        if matches!(
            s.interaction,
            Interaction::MountLeak | Interaction::MountUnderBindSource
        ) {
            let mark = host_marker_dir(s.interaction, &self.run.path, robind.as_ref(), &token)?;
            let _ = nix::mount::umount2(&mark, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&mark);
            // Controls without a mount namespace leave their mount in ours.
            let inside = self.run.join(&format!("inside-{token}"));
            let _ = nix::mount::umount2(&inside, nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&inside);
        }
        standin::reset_hostname();
        drop(robind);
        drop(loop_device);
        doc.insert("host".into(), Value::Object(host));
        doc.insert("vars".into(), json!(vars));
        Ok(Value::Object(doc))
    }

    /// Starts a container with all three pipes.
    fn spawn(&self, spec: &ContainerSpec, name: &str) -> Result<Spawned, String> {
        let mut opts = SpawnOptions::new(self.run.run_id.clone(), name);
        opts.stdin = StdioMode::Piped;
        opts.stdout = StdioMode::Piped;
        opts.stderr = StdioMode::Piped;
        let mut container =
            Container::spawn(spec, opts).map_err(|e| format!("spawn {name}: {e}"))?;
        let stdin = container.take_stdin();
        let out = LineReader::new(
            container.take_stdout().ok_or("no stdout pipe")?,
            &self.interrupt,
        );
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

    fn vars(&mut self) -> Result<BTreeMap<String, String>, String> {
        if self.escape_cgroup.is_none() {
            let made = isocheck_runtime::cgroups::CgroupManager::detect().and_then(|m| {
                m.create(
                    &format!("{}-escape-decoy", self.run.run_id),
                    &Default::default(),
                )
            });
            self.escape_cgroup =
                Some(made.map_err(|e| format!("create the escape-target cgroup: {e}"))?);
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
            .ok_or("the escape-target cgroup has no directory")?;
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

fn child_stdout(child: &mut std::process::Child) -> Result<File, String> {
    let out = child.stdout.take().ok_or("no stdout pipe")?;
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
}

/// CLOCK_MONOTONIC and CLOCK_BOOTTIME of the stand-in host, in seconds.
fn host_clocks() -> Result<(f64, f64), String> {
    use nix::time::{clock_gettime, ClockId};
    let secs = |id| {
        clock_gettime(id)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
            .map_err(|e| format!("clock_gettime({id:?}): {e}"))
    };
    Ok((
        secs(ClockId::CLOCK_MONOTONIC)?,
        secs(ClockId::CLOCK_BOOTTIME)?,
    ))
}

/// The stand-in's own mount table; a read that fails fails the check.
fn own_mountinfo() -> Result<Vec<u8>, String> {
    std::fs::read("/proc/self/mountinfo")
        .map_err(|e| format!("read the stand-in's /proc/self/mountinfo: {e}"))
}

/// Whether a mount point of the stand-in's contains `name`.
fn own_mounts_contain(name: &str) -> Result<bool, String> {
    let info = own_mountinfo()?;
    let all = isocheck_runtime::mounts::mount_points_under(&info, Path::new("/"));
    if all.is_empty() {
        return Err("the stand-in's /proc/self/mountinfo lists no mount".into());
    }
    Ok(all.iter().any(|p| p.to_string_lossy().contains(name)))
}

/// The stand-in's mount points at or below `dir`.
fn own_mounts_under(dir: &Path) -> Result<Vec<std::ffi::CString>, String> {
    Ok(isocheck_runtime::mounts::mount_points_under(
        &own_mountinfo()?,
        dir,
    ))
}

/// Where the harness mounts its marker tmpfs: in the run's directory
/// (mount-leak), or under the bind source the container has (one-way
/// propagation into the container).
fn host_marker_dir(
    interaction: Interaction,
    rundir: &Path,
    robind: Option<&RoBindSource>,
    token: &str,
) -> Result<PathBuf, String> {
    let parent = match interaction {
        Interaction::MountUnderBindSource => robind
            .map(|r| r.path.as_path())
            .ok_or("interaction mount-under-bind-source needs fixture ro-bind-source")?,
        _ => rundir,
    };
    Ok(parent.join(format!("hostmark-{token}")))
}

/// The container's cgroup counters as the observation's `cgroup` object,
/// or `{"error": why}` when they cannot be read: every expectation on a
/// counter then fails, naming the reason (never a default of zero).
fn cgroup_stats(container: &Container) -> Value {
    match container.cgroup().map(|c| c.stats()) {
        Some(Ok(stats)) => json!(stats),
        Some(Err(e)) => json!({ "error": format!("read the cgroup's counters: {e}") }),
        None => json!({ "error": "the container has no cgroup" }),
    }
}

/// The cgroup's own CPU usage counter (cpuacct.usage / cpu.stat usage_usec).
fn usage_usec(container: &Container) -> Result<u64, String> {
    let cgroup = container.cgroup().ok_or("the container has no cgroup")?;
    cgroup
        .stats()
        .map_err(|e| format!("read the cgroup's CPU usage: {e}"))?
        .cpu_usage_usec
        .ok_or_else(|| "the cgroup has no CPU usage counter (cpuacct / cpu.stat)".to_string())
}

fn say_go(stdin: &mut Option<File>) {
    if let Some(s) = stdin.as_mut() {
        let _ = s.write_all(b"go\n");
        let _ = s.flush();
    }
}

/// The last line of `text` that is a JSON object and not a phase marker.
pub fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.is_object() && lookup(v, "phase").is_none())
}

fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().to_string()
}

/// A half's error when `isocheck run` was asked to stop.
pub const INTERRUPTED: &str = "interrupted";

/// How often a wait looks at the interrupt.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// Waits for PID 1 until `deadline`, giving up early (`Ok(None)`, as at the
/// deadline) once the run is interrupted.
fn wait_until(
    container: &mut Container,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Result<Option<isocheck_runtime::ExitStatus>, isocheck_runtime::Error> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = container.wait_timeout(left.min(INTERRUPT_POLL))?;
        if status.is_some() || left <= INTERRUPT_POLL || interrupt.is_set() {
            return Ok(status);
        }
    }
}

/// Reads a child's stdout line by line with deadlines, on this thread (poll,
/// no reader threads: the runtime clones from this process).
struct LineReader {
    file: File,
    buf: Vec<u8>,
    seen: String,
    eof: bool,
    interrupt: Interrupt,
}

impl LineReader {
    fn new(file: File, interrupt: &Interrupt) -> LineReader {
        LineReader {
            file,
            buf: Vec::new(),
            seen: String::new(),
            eof: false,
            interrupt: interrupt.clone(),
        }
    }

    /// The next full line, or `None` at EOF or the deadline.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                self.seen.push_str(&line);
                return Some(line);
            }
            if self.eof {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.interrupt.is_set() {
                return None;
            }
            let ms = left.min(INTERRUPT_POLL).as_millis() as u16;
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {
                    let mut chunk = [0u8; 4096];
                    match self.file.read(&mut chunk) {
                        Ok(0) | Err(_) => self.eof = true,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => self.eof = true,
            }
        }
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<(), String> {
        while let Some(line) = self.next_line(deadline) {
            if serde_json::from_str::<Value>(line.trim())
                .ok()
                .is_some_and(|v| v["phase"] == "ready")
            {
                return Ok(());
            }
        }
        Err(format!(
            "the probe never said ready; it printed: {:?}",
            tail(&self.seen, 400)
        ))
    }

    /// A server says ready, or prints its observation at once when it fails.
    fn wait_ready_or_output(&mut self, deadline: Instant) -> Result<(), String> {
        while let Some(line) = self.next_line(deadline) {
            if serde_json::from_str::<Value>(line.trim()).is_ok_and(|v| v.is_object()) {
                return Ok(());
            }
        }
        Err(format!(
            "the probe never said ready; it printed: {:?}",
            tail(&self.seen, 400)
        ))
    }

    fn next_json(&mut self, deadline: Instant) -> Result<Value, String> {
        while let Some(line) = self.next_line(deadline) {
            if let Some(v) = last_json(&line) {
                return Ok(v);
            }
        }
        Err(format!(
            "the probe printed no observation; it printed: {:?}",
            tail(&self.seen, 400)
        ))
    }

    /// Everything seen so far plus the rest until EOF (the child has exited).
    fn rest(&mut self) -> String {
        let _ = self.file.read_to_end(&mut self.buf);
        self.seen.push_str(&String::from_utf8_lossy(&self.buf));
        self.buf.clear();
        self.seen.clone()
    }
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

    #[test]
    fn last_json_skips_phase_markers_and_noise() {
        let text = "{\"phase\":\"ready\"}\nnoise\n{\"action\":\"pids\",\"pid\":1}\n{\"phase\":\"ready\"}\n";
        assert_eq!(last_json(text).unwrap()["pid"], 1);
        assert_eq!(last_json("{\"phase\":\"ready\"}\n"), None);
    }

    #[test]
    fn publish_is_two_ports() {
        let p = parse_publish("8080:8000").unwrap();
        assert_eq!((p.host_port, p.container_port), (8080, 8000));
        for bad in ["8080", "0:80", "a:80", "80:70000"] {
            assert!(parse_publish(bad).unwrap_err().contains(bad), "{bad}");
        }
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
    }
}

//! One half of a scenario, phase by phase: the fixtures it asks for, the
//! network, the spec, the spawn, the interaction (see `interact`), the
//! exit, the companions, then what the stand-in host sees afterwards.

use super::error::ObserveError;
use super::host_view::{cgroup_stats, host_clocks, host_marker_dir, own_mounts_under};
use super::probe_output::{last_json, tail, wait_until, LineReader};
use super::state::{testbed, Half, HalfFixtures};
use super::{address_only, child_stdout, NetHalf, OciSpawned, Runner, Spawned, Which};
use crate::fixtures::{self, LeakDir, RoBindSource, SecretDir};
use crate::loopdev::LoopDevice;
use crate::nettestbed::NetTestbed;
use crate::oci::{start_half, HalfError, HalfRequest, OciRuntime};
use crate::proof::{build_spec, expand_all, on_second_bridge};
use crate::scenario::{ContainerOverrides, Fixture, Interaction, Scenario};
use crate::standin;
use isocheck_runtime::spec::{ContainerSpec, NetworkMode};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

impl Runner {
    /// Starts the container for one half and gathers what was seen, phase
    /// by phase: fixtures, network, the spec, the spawn, the scenario's
    /// interaction, the exit, the companions, then what the host sees.
    pub fn observe(&mut self, s: &Scenario, which: Which) -> Result<Value, ObserveError> {
        if self.interrupt.is_set() {
            return Err(ObserveError::Interrupted);
        }
        self.counter += 1;
        tracing::info!(scenario = %s.id, half = which.name(), "half starts");
        self.decoy.ensure_alive()?;
        let token = fixtures::token();
        let mut vars = self.vars()?;
        vars.insert("token".into(), token.clone());
        let mut half = Half {
            s,
            which,
            overrides: s.container(which == Which::Control),
            token,
            deadline: Instant::now(),
            vars,
            host: Map::new(),
            doc: Map::new(),
            fixtures: HalfFixtures {
                image: self.image.clone(),
                ..Default::default()
            },
        };
        self.make_fixtures(&mut half)?;
        let image_hash_before = self.hash_image_if_checked(&half)?;
        read_host_vars(&mut half.vars)?;
        // The scenario's timeout counts from here: making fixtures and
        // hashing the image are not the probe's time.
        half.deadline = Instant::now() + Duration::from_secs(s.timeout_secs);
        let mut net = NetHalf::default();
        self.start_network(&mut half, &mut net)?;
        let spec = self.half_spec(&mut half, &mut net)?;
        if let Some(runtime) = self.oci.clone() {
            let seen = self.oci_half(&mut half, &spec, &runtime, &mut net);
            if seen.is_ok() {
                collect_net_half(&mut half, &mut net);
            }
            self.release(net);
            seen?;
            return self.look_after(half, image_hash_before);
        }
        let mut main = match self.spawn_main(&mut half, &spec) {
            Ok(spawned) => spawned,
            Err(e) => {
                self.release(net);
                return Err(e);
            }
        };
        self.interact(&mut half, &mut main, &spec)?;
        self.collect_exit(&mut half, main)?;
        if s.interaction == Interaction::ThenCompanion {
            self.then_companion(&mut half, &spec, &mut net)?;
        }
        collect_net_half(&mut half, &mut net);
        self.release(net);
        self.look_after(half, image_hash_before)
    }

    /// The fixtures the scenario asks for, fresh for each half, with the
    /// placeholders that name them.
    fn make_fixtures(&self, half: &mut Half) -> Result<(), ObserveError> {
        let n = self.counter;
        for fixture in &half.s.fixtures {
            match fixture {
                Fixture::RoBindSource => {
                    let src =
                        RoBindSource::create(self.run.join(&format!("robind-{n}")), &half.token)?;
                    half.vars
                        .insert("robind".into(), src.path.display().to_string());
                    half.host
                        .insert("robind_hash_before".into(), json!(src.hash()?));
                    half.fixtures.robind = Some(src);
                }
                Fixture::ImageCopy if half.overrides.image_copy => {
                    let copy = self.run.join(&format!("image-copy-{n}"));
                    fixtures::copy_tree(&self.image, &copy)
                        .map_err(ObserveError::io("copy the image"))?;
                    half.fixtures.image = copy;
                }
                Fixture::SecretFile => {
                    let dir = SecretDir::create(self.run.join(&format!("secret-{n}")))?;
                    half.vars
                        .insert("secret".into(), dir.path.display().to_string());
                    half.fixtures.secret = Some(dir);
                }
                Fixture::LeakedHostFd => {
                    let dir = LeakDir::create(self.run.join(&format!("leak-{n}")))?;
                    half.vars.insert("leak.token".into(), dir.token.clone());
                    half.vars
                        .insert("leak.marker".into(), fixtures::LEAK_MARKER.into());
                    half.fixtures.leak = Some(dir);
                }
                Fixture::LoopDevice => {
                    let dev = LoopDevice::create(
                        self.run.join(&format!("loop-{n}.img")),
                        crate::loopdev::SIZE,
                        &format!("isocheck-{}", self.run.run_id),
                    )?;
                    half.vars
                        .insert("loop.device".into(), dev.path.display().to_string());
                    half.fixtures.loop_device = Some(dev);
                }
                Fixture::ImageCopy | Fixture::EscapeMarker => {}
            }
        }
        Ok(())
    }

    /// Hashing the image (the probe is megabytes) is most of a scenario's
    /// CPU, so only scenarios that look at `host.image_unchanged` pay it.
    fn hash_image_if_checked(&self, half: &Half) -> Result<Option<String>, ObserveError> {
        if !half.s.expects_field("host.image_unchanged") {
            return Ok(None);
        }
        fixtures::tree_hash(&half.fixtures.image)
            .map(Some)
            .map_err(ObserveError::io("hash the image"))
    }

    /// The network testbed (made on first use), the half's NAT, and the
    /// peer container and outside server the scenario talks to.
    fn start_network(&mut self, half: &mut Half, net: &mut NetHalf) -> Result<(), ObserveError> {
        let s = half.s;
        if s.needs_network() {
            if self.net.is_none() {
                self.net = Some(NetTestbed::create(&self.run.run_id)?);
            }
            let testbed = testbed(&mut self.net)?;
            half.vars.extend(testbed.vars());
            if half.overrides.nat {
                net.nat = Some(testbed.nat()?);
            }
        }
        if let Some(peer_argv) = &s.peer {
            let att = testbed(&mut self.net)?.attachment(false, false, None)?;
            half.vars
                .insert("peer.address".into(), address_only(&att.address));
            if let Some(address6) = &att.address6 {
                half.vars
                    .insert("peer.address6".into(), address_only(address6));
            }
            let mut spec = build_spec(
                &ContainerOverrides::default(),
                peer_argv,
                &half.vars,
                &self.image,
            )
            .map_err(ObserveError::Spec)?;
            spec.network = NetworkMode::Bridge(att.clone());
            net.attachments.push(att);
            let mut peer = self.spawn(&spec, &format!("peer-{}", self.counter))?;
            peer.out.wait_ready_or_output(half.deadline)?;
            net.peer = Some(peer);
        }
        if let (Some(argv), false) = (&s.outside, s.interaction == Interaction::OutsideClient) {
            let argv = expand_all(argv, &half.vars);
            let mut child = testbed(&mut self.net)?.spawn_outside(&self.probe, &argv)?;
            let mut reader = LineReader::new(child_stdout(&mut child)?, &self.interrupt);
            reader.wait_ready_or_output(half.deadline)?;
            net.outside_server = Some((child, reader));
        }
        Ok(())
    }

    /// The half's container spec: the scenario's, on an address of the
    /// testbed when bridged, with the control's one protection off.
    fn half_spec(
        &mut self,
        half: &mut Half,
        net: &mut NetHalf,
    ) -> Result<ContainerSpec, ObserveError> {
        let image = &half.fixtures.image;
        let mut spec = build_spec(half.overrides, &half.s.run.probe, &half.vars, image)
            .map_err(ObserveError::Spec)?;
        if let NetworkMode::Bridge(wanted) = &spec.network {
            let att = testbed(&mut self.net)?.attachment(
                on_second_bridge(wanted),
                wanted.detached,
                wanted.publish.first().copied(),
            )?;
            spec.network = NetworkMode::Bridge(att.clone());
            net.attachments.push(att);
        }
        // The control: exactly one protection off (the loader checked that
        // nothing else differs).
        if half.which == Which::Control && half.s.apply_switch_off {
            half.s.control.switch_off.switch_off(&mut spec);
            if !spec.namespaces.mount {
                // The host's files: the probe by its host path.
                spec.command[0] = image.join("probe").display().to_string();
            }
        }
        Ok(spec)
    }

    /// Spawns the half's container. The leaked-fd fixture: a host directory
    /// open without O_CLOEXEC across this one spawn, closed as soon as it
    /// returns.
    fn spawn_main(&self, half: &mut Half, spec: &ContainerSpec) -> Result<Spawned, ObserveError> {
        let inheritable = half.fixtures.open_leak()?;
        if let Some(fd) = &inheritable {
            use std::os::fd::AsRawFd;
            half.host.insert("leaked_fd".into(), json!(fd.as_raw_fd()));
        }
        let name = format!("{}-{}", half.which.name(), self.counter);
        self.spawn(spec, &name)
    }

    /// Waits for the probe to exit (killing it at the deadline) and records
    /// its observation, exit, stderr and cgroup counters; the container is
    /// gone when this returns.
    fn collect_exit(&self, half: &mut Half, main: Spawned) -> Result<(), ObserveError> {
        let Spawned {
            mut container,
            stdin,
            mut out,
            err: mut err_pipe,
        } = main;
        // Everything the probe prints until it exits; the last JSON object
        // that is not a phase marker is its observation.
        let status = wait_until(&mut container, half.deadline, &self.interrupt)
            .map_err(ObserveError::container("wait"))?;
        let timed_out = status.is_none();
        if timed_out {
            let _ = container.kill();
        }
        let status = match status {
            Some(st) => st,
            None => container
                .wait()
                .map_err(ObserveError::container("wait after kill"))?,
        };
        drop(stdin);
        let text = out.rest();
        let doc = &mut half.doc;
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
        if !stderr.trim().is_empty() {
            half.doc.insert("stderr".into(), json!(tail(&stderr, 800)));
        }
        // Before the drop, which detaches them: the mounts that built the
        // container's root and reached the stand-in's own table.
        if half.s.expects_field("host.propagated_mounts") {
            let dir = container.temp_dir().ok_or(ObserveError::Missing(
                "the container has no temp dir to look under",
            ))?;
            half.host.insert(
                "propagated_mounts".into(),
                json!(own_mounts_under(dir)?.len()),
            );
        }
        Ok(())
    }

    /// The half through an OCI runtime (`oci::half`): started, the
    /// scenario's interaction through the runtime's own commands, then the
    /// same `probe`, `exit` and `cgroup` objects as ours gives, plus
    /// `namespaces`; a then-companion the same way after it.
    fn oci_half(
        &mut self,
        half: &mut Half,
        spec: &ContainerSpec,
        runtime: &OciRuntime,
        net: &mut NetHalf,
    ) -> Result<(), ObserveError> {
        let mut main = self.oci_start(half, spec, runtime, "")?;
        self.oci_interact(half, &mut main, spec)?;
        self.oci_collect(half, main, true)?;
        if half.s.interaction == Interaction::ThenCompanion {
            let spec = self.companion_spec(half, spec, net)?;
            let second = self.oci_start(half, &spec, runtime, "companion")?;
            let text = self.oci_collect(half, second, false)?;
            // Its exit and cgroup are not the observation's: the first's are.
            half.doc
                .insert("companion".into(), last_json(&text).unwrap_or(Value::Null));
        }
        Ok(())
    }

    /// Creates and starts one container of the half through `runtime`
    /// (`role` tells a companion apart).
    pub(super) fn oci_start(
        &self,
        half: &Half,
        spec: &ContainerSpec,
        runtime: &OciRuntime,
        role: &str,
    ) -> Result<OciSpawned, ObserveError> {
        let which = half.which.name();
        let id = format!("{}-{which}-{}{role}", self.run.run_id, self.counter);
        // `isoc-v<hint>`: r12, c12, c12c...
        let hint = format!(
            "{}{}{}",
            &which[..1],
            self.counter,
            &role[..role.len().min(1)]
        );
        let mut running = start_half(&HalfRequest {
            runtime,
            spec,
            image: &half.fixtures.image,
            dir: &self.run.path,
            id: &id,
            deadline: half.deadline,
            veth_hint: &hint,
        })
        .map_err(oci_error)?;
        let stdout = running
            .stdout
            .take()
            .ok_or(ObserveError::Missing("no stdout pipe"))?;
        Ok(OciSpawned {
            stdin: running.stdin.take(),
            out: LineReader::new(stdout, &self.interrupt),
            running,
        })
    }

    /// Waits for the container's end and, for the half's `main` container,
    /// records its observation, exit, cgroup counters and namespaces; the
    /// container, its network and bundle are gone when this returns. What
    /// it printed, in full.
    pub(super) fn oci_collect(
        &self,
        half: &mut Half,
        c: OciSpawned,
        main: bool,
    ) -> Result<String, ObserveError> {
        let OciSpawned {
            running,
            stdin,
            mut out,
        } = c;
        let namespaces = running.namespaces.clone();
        let interrupt = self.interrupt.clone();
        let finished = running
            .finish(half.deadline, &|| interrupt.is_set())
            .map_err(oci_error)?;
        drop(stdin);
        let text = out.rest();
        if main {
            let doc = &mut half.doc;
            if !doc.contains_key("probe") {
                doc.insert("probe".into(), last_json(&text).unwrap_or(Value::Null));
            }
            doc.insert(
                "exit".into(),
                json!({ "code": finished.exit_code, "signal": finished.exit_signal, "timed_out": finished.timed_out }),
            );
            half.doc.insert("cgroup".into(), finished.cgroup);
            half.doc.insert("namespaces".into(), json!(namespaces));
        }
        Ok(text)
    }

    /// What the stand-in host sees once the half's containers are gone;
    /// the half's fixtures and marker mount go, and the observation is done.
    fn look_after(
        &mut self,
        half: Half,
        image_hash_before: Option<String>,
    ) -> Result<Value, ObserveError> {
        let Half {
            s,
            token,
            vars,
            mut host,
            mut doc,
            fixtures,
            ..
        } = half;
        let HalfFixtures {
            image,
            robind,
            secret,
            leak,
            loop_device,
        } = fixtures;
        let alive = self.decoy.alive()?;
        host.insert("decoy_alive".into(), json!(alive));
        let hostname = nix::unistd::gethostname()
            .map_err(ObserveError::sys("read the stand-in's hostname"))?;
        host.insert("hostname".into(), json!(hostname.to_string_lossy()));
        host.insert("expected_hostname".into(), json!(standin::STANDIN_HOSTNAME));
        if let Some(before) = image_hash_before {
            let after = fixtures::tree_hash(&image).map_err(ObserveError::io("hash the image"))?;
            host.insert("image_unchanged".into(), json!(before == after));
        }
        if let Some(dir) = &secret {
            host.insert("created_uid".into(), json!(dir.created_uid("created")?));
        }
        drop(secret);
        if let Some(src) = &robind {
            let after = src.hash()?;
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
}

/// The stand-in's clocks and root, which the probe compares its own with.
fn read_host_vars(vars: &mut BTreeMap<String, String>) -> Result<(), ObserveError> {
    let clocks = host_clocks()?;
    vars.insert("host.monotonic".into(), format!("{:.3}", clocks.0));
    let root = nix::sys::stat::stat("/").map_err(ObserveError::sys("stat the stand-in's /"))?;
    vars.insert("host.root_dev".into(), root.st_dev.to_string());
    vars.insert("host.root_ino".into(), root.st_ino.to_string());
    vars.insert("host.boottime".into(), format!("{:.3}", clocks.1));
    Ok(())
}

/// A half through an OCI runtime that did not run: the runtime's refusal
/// makes the scenario unsupported, anything else is the half's error.
pub(super) fn oci_error(e: HalfError) -> ObserveError {
    match e {
        HalfError::Refused { .. } => ObserveError::Refused(e.to_string()),
        HalfError::Failed(why) => ObserveError::Oci(why),
    }
}

/// The peer's and the outside server's last words, once the half's own
/// container is done: their stdin is closed (no client comes any more; a
/// server started `--until stdin-eof` prints and exits), each gets a
/// moment to finish, then is stopped.
fn collect_net_half(half: &mut Half, net: &mut NetHalf) {
    if let Some(mut peer) = net.peer.take() {
        drop(peer.stdin.take());
        if !matches!(
            peer.container.wait_timeout(Duration::from_secs(3)),
            Ok(Some(_))
        ) {
            let _ = peer.container.kill();
        }
        half.doc.insert(
            "peer".into(),
            last_json(&peer.out.rest()).unwrap_or(Value::Null),
        );
    }
    if let Some((mut child, mut reader)) = net.outside_server.take() {
        drop(child.stdin.take());
        let _ = reader.next_json(Instant::now() + Duration::from_secs(3));
        let _ = child.kill();
        let _ = child.wait();
        half.doc.insert(
            "outside".into(),
            last_json(&reader.rest()).unwrap_or(Value::Null),
        );
    }
}

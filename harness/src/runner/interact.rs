//! What the harness does with a half's running container, one function
//! per `interaction` of the scenario file: between the probe's "ready" and
//! its "go", or around its exit.

use super::error::ObserveError;
use super::host_view::{cgroup_stats, host_marker_dir, own_mounts_contain};
use super::probe_output::{last_json, say_go, tail, wait_until, LineReader};
use super::state::{testbed, Half};
use super::{NetHalf, OciSpawned, Runner, Spawned};
use crate::measure::MeasureError;
use crate::proof::expand_all;
use crate::scenario::Interaction;
use isocheck_runtime::spec::{ContainerSpec, NetworkMode};
use isocheck_runtime::StdioMode;
use serde_json::{json, Map, Value};
use std::fs::File;
use std::io::Read;
use std::time::{Duration, Instant};

impl Runner {
    /// The scenario's interaction with the running container, before the
    /// harness waits for it to exit.
    pub(super) fn interact(
        &mut self,
        half: &mut Half,
        c: &mut Spawned,
        spec: &ContainerSpec,
    ) -> Result<(), ObserveError> {
        match half.s.interaction {
            Interaction::None | Interaction::ThenCompanion => Ok(()),
            Interaction::MountLeak | Interaction::MountUnderBindSource => {
                self.mount_host_marker(half, &mut c.out, &mut c.stdin)
            }
            Interaction::Exec => self.exec_companion(half, c),
            Interaction::KillAfterOutput => kill_after_output(half, c),
            Interaction::PauseResume => pause_resume(half, c),
            Interaction::CpuTwin => self.cpu_twin(half, c, spec),
            Interaction::UsageWindow => {
                let container = &c.container;
                usage_window(half, &mut c.out, &mut c.stdin, |host| {
                    crate::measure::usage_rate(container, host)
                })
            }
            Interaction::OutsideClient => self.outside_client(half, &mut c.out, &mut c.stdin),
        }
    }

    /// The same interactions with a container of an OCI runtime, through
    /// the runtime's own commands (`exec`, `kill [--all]`); the ones that
    /// cannot be are refused by `oci_unsupported` before the half starts.
    pub(super) fn oci_interact(
        &mut self,
        half: &mut Half,
        c: &mut OciSpawned,
        spec: &ContainerSpec,
    ) -> Result<(), ObserveError> {
        match half.s.interaction {
            Interaction::None | Interaction::ThenCompanion => Ok(()),
            Interaction::MountLeak | Interaction::MountUnderBindSource => {
                self.mount_host_marker(half, &mut c.out, &mut c.stdin)
            }
            Interaction::Exec => oci_exec_companion(half, c),
            Interaction::KillAfterOutput => oci_kill_after_output(half, c, spec),
            Interaction::UsageWindow => {
                let running = &c.running;
                usage_window(half, &mut c.out, &mut c.stdin, |host| {
                    crate::measure::usage_rate_of(|| oci_usage_us(running), host)
                })
            }
            Interaction::OutsideClient => self.outside_client(half, &mut c.out, &mut c.stdin),
            Interaction::CpuTwin => self.oci_cpu_twin(half, c, spec),
            Interaction::PauseResume => {
                c.out.wait_ready(half.deadline)?;
                let r = &c.running;
                let runtime = |step: &'static str| {
                    move |e: crate::oci::HalfError| MeasureError::Runtime {
                        step,
                        message: e.to_string(),
                    }
                };
                crate::measure::pause_resume_of(
                    || oci_usage_us(r),
                    || r.pause(true).map_err(runtime("pause")),
                    || r.pause(false).map_err(runtime("resume")),
                    &mut half.host,
                )?;
                r.kill(true).map_err(super::half::oci_error)
            }
        }
    }

    /// Mounts a tmpfs on the host side once the probe is ready, and notes
    /// whether the stand-in already sees a mount the container made.
    fn mount_host_marker(
        &self,
        half: &mut Half,
        out: &mut LineReader,
        stdin: &mut Option<File>,
    ) -> Result<(), ObserveError> {
        out.wait_ready(half.deadline)?;
        let inside = format!("inside-{}", half.token);
        half.host.insert(
            "sees_inside_mount".into(),
            json!(own_mounts_contain(&inside)?),
        );
        let robind = half.fixtures.robind.as_ref();
        let mark = host_marker_dir(half.s.interaction, &self.run.path, robind, &half.token)?;
        std::fs::create_dir_all(&mark)
            .map_err(ObserveError::io(format!("create {}", mark.display())))?;
        nix::mount::mount(
            Some("tmpfs"),
            &mark,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=64k"),
        )
        .map_err(ObserveError::sys(format!(
            "mount the host marker at {}",
            mark.display()
        )))?;
        half.host.insert("marker_mounted_at".into(), json!(mark));
        say_go(stdin);
        Ok(())
    }

    /// Runs the companion probe inside the running container with exec,
    /// after noting PID 1's namespaces.
    fn exec_companion(&self, half: &mut Half, c: &mut Spawned) -> Result<(), ObserveError> {
        c.out.wait_ready(half.deadline)?;
        let container = &c.container;
        let inodes = container.namespace_inodes();
        if !["mnt", "pid", "net"]
            .iter()
            .all(|ns| inodes.contains_key(*ns))
        {
            return Err(ObserveError::Namespaces {
                pid: container.pid(),
                inodes,
            });
        }
        half.host.insert("container_ns".into(), json!(inodes));
        let companion = half.s.run.companion.as_ref().ok_or(ObserveError::Needs {
            interaction: "exec",
            what: "a companion probe",
        })?;
        // In the control the spec has exec's setns switched off.
        let probe = if container.exec_joins() {
            "/probe".to_string()
        } else {
            self.probe.display().to_string()
        };
        let mut argv = vec![probe];
        argv.extend(expand_all(companion, &half.vars));
        // The leaked-fd fixture again, across this exec alone.
        let inheritable = half.fixtures.open_leak()?;
        let exec = container.exec(&argv, StdioMode::Piped);
        drop(inheritable);
        let mut child = exec.map_err(ObserveError::container("exec"))?;
        let mut seen = String::new();
        if let Some(mut o) = child.take_stdout() {
            o.read_to_string(&mut seen)
                .map_err(ObserveError::io("read the exec'd probe's output"))?;
        }
        child.wait().map_err(ObserveError::container("exec wait"))?;
        half.doc
            .insert("companion".into(), last_json(&seen).unwrap_or(Value::Null));
        say_go(&mut c.stdin);
        Ok(())
    }

    /// Two burners pinned together, this one and a twin with the control's
    /// protection off: the ratio of their CPU usage.
    fn cpu_twin(
        &self,
        half: &mut Half,
        c: &mut Spawned,
        spec: &ContainerSpec,
    ) -> Result<(), ObserveError> {
        let mut twin_spec = spec.clone();
        half.s.control.switch_off.switch_off(&mut twin_spec);
        let name = format!("{}-{}-twin", half.which.name(), self.counter);
        let mut twin = self.spawn(&twin_spec, &name)?;
        c.out.wait_ready(half.deadline)?;
        twin.out.wait_ready(half.deadline)?;
        crate::measure::usage_ratio(&c.container, &twin.container, &mut half.host)?;
        // Both measured: the rest of the burns shows nothing more.
        for container in [&c.container, &twin.container] {
            container
                .kill()
                .map_err(ObserveError::container("kill a burner"))?;
        }
        half.doc.insert(
            "twin".into(),
            last_json(&twin.out.rest()).unwrap_or(Value::Null),
        );
        Ok(())
    }

    /// `cpu_twin` through the OCI runtime: the twin is a second container of
    /// the same runtime, both cgroups' usage counters read from the host.
    fn oci_cpu_twin(
        &mut self,
        half: &mut Half,
        c: &mut OciSpawned,
        spec: &ContainerSpec,
    ) -> Result<(), ObserveError> {
        let runtime = self
            .oci
            .clone()
            .ok_or(ObserveError::Missing("no OCI runtime for the twin"))?;
        let mut twin_spec = spec.clone();
        half.s.control.switch_off.switch_off(&mut twin_spec);
        let mut twin = self.oci_start(half, &twin_spec, &runtime, "twin")?;
        c.out.wait_ready(half.deadline)?;
        twin.out.wait_ready(half.deadline)?;
        crate::measure::usage_ratio_of(
            || oci_usage_us(&c.running).ok(),
            || oci_usage_us(&twin.running).ok(),
            &mut half.host,
        )?;
        // Both measured: the rest of the burns shows nothing more.
        for running in [&c.running, &twin.running] {
            running.kill(true).map_err(super::half::oci_error)?;
        }
        let text = self.oci_collect(half, twin, false)?;
        half.doc
            .insert("twin".into(), last_json(&text).unwrap_or(Value::Null));
        Ok(())
    }

    /// A client in the outside namespace, once the container's server is
    /// up; then the server's stdin is closed, since no other client comes
    /// (a server started `--until stdin-eof` stops instead of waiting out
    /// its timeout).
    fn outside_client(
        &mut self,
        half: &mut Half,
        out: &mut LineReader,
        stdin: &mut Option<File>,
    ) -> Result<(), ObserveError> {
        out.wait_ready_or_output(half.deadline)?;
        let argv = half.s.outside.as_ref().ok_or(ObserveError::Needs {
            interaction: "outside-client",
            what: "an outside probe",
        })?;
        let argv = expand_all(argv, &half.vars);
        let child = testbed(&mut self.net)?.spawn_outside(&self.probe, &argv)?;
        let output = child
            .wait_with_output()
            .map_err(ObserveError::io("outside client"))?;
        half.doc.insert(
            "outside".into(),
            last_json(&String::from_utf8_lossy(&output.stdout)).unwrap_or(Value::Null),
        );
        drop(stdin.take());
        Ok(())
    }

    /// After the first container exited: a second one from the same spec
    /// running the companion probe (on a fresh address when bridged).
    pub(super) fn then_companion(
        &mut self,
        half: &mut Half,
        spec: &ContainerSpec,
        net: &mut NetHalf,
    ) -> Result<(), ObserveError> {
        let spec = self.companion_spec(half, spec, net)?;
        let name = format!("{}-{}-companion", half.which.name(), self.counter);
        let mut second = self.spawn(&spec, &name)?;
        let status = wait_until(&mut second.container, half.deadline, &self.interrupt);
        if !matches!(status, Ok(Some(_))) {
            let _ = second.container.kill();
        }
        half.doc.insert(
            "companion".into(),
            last_json(&second.out.rest()).unwrap_or(Value::Null),
        );
        Ok(())
    }

    /// The then-companion's spec: the first container's, running the
    /// companion probe, on a fresh address when bridged.
    pub(super) fn companion_spec(
        &mut self,
        half: &mut Half,
        spec: &ContainerSpec,
        net: &mut NetHalf,
    ) -> Result<ContainerSpec, ObserveError> {
        let argv = half.s.run.companion.as_ref().ok_or(ObserveError::Needs {
            interaction: "then-companion",
            what: "a companion probe",
        })?;
        let mut spec = spec.clone();
        spec.command.truncate(1);
        spec.command.extend(expand_all(argv, &half.vars));
        // Its own address: the first container's may linger a moment in
        // its dying namespace.
        if let NetworkMode::Bridge(att) = &spec.network {
            let second_bridge = half.overrides.second_bridge;
            let fresh = testbed(&mut self.net)?.attachment(second_bridge, att.detached, None)?;
            net.attachments.push(fresh.clone());
            spec.network = NetworkMode::Bridge(fresh);
        }
        Ok(spec)
    }
}

/// Kills the container once the probe printed its first observation and
/// counts the tasks left in its cgroup (the control kills PID 1 only).
fn kill_after_output(half: &mut Half, c: &mut Spawned) -> Result<(), ObserveError> {
    let container = &mut c.container;
    let first = c.out.next_json(half.deadline)?;
    half.doc.insert("probe".into(), first);
    half.doc
        .insert("cgroup_before_kill".into(), cgroup_stats(container));
    let tasks = "read the container's cgroup tasks";
    let before = container
        .cgroup_procs()
        .map_err(ObserveError::container(tasks))?;
    half.host
        .insert("tasks_before_kill".into(), json!(before.len()));
    // The control's spec has group kill switched off (PID 1 only).
    container
        .kill()
        .map_err(ObserveError::container("kill the container"))?;
    let _ = container.wait_timeout(Duration::from_secs(5));
    let left = tasks_left_after_kill(|| {
        container
            .cgroup_procs()
            .map(|p| p.len())
            .map_err(ObserveError::container(tasks))
    })?;
    half.host.insert("tasks_after_kill".into(), json!(left));
    Ok(())
}

/// How long tasks get to die after a kill (and PID 1's exit) before the
/// ones left count as survivors.
const KILL_GRACE: Duration = Duration::from_millis(300);
/// How often the cgroup is looked at meanwhile.
const KILL_POLL: Duration = Duration::from_millis(10);

/// The tasks left in the cgroup once it is empty or [`KILL_GRACE`] has
/// passed, whichever comes first: an empty cgroup stays empty, so a kill
/// that took everything is seen at once, and a survivor is counted only
/// after the whole grace, as before.
fn tasks_left_after_kill(
    count: impl Fn() -> Result<usize, ObserveError>,
) -> Result<usize, ObserveError> {
    let until = Instant::now() + KILL_GRACE;
    loop {
        let left = count()?;
        if left == 0 || Instant::now() >= until {
            return Ok(left);
        }
        std::thread::sleep(KILL_POLL);
    }
}

/// CPU usage over windows running, paused and resumed.
fn pause_resume(half: &mut Half, c: &mut Spawned) -> Result<(), ObserveError> {
    c.out.wait_ready(half.deadline)?;
    crate::measure::pause_resume(&c.container, &mut half.host)?;
    // The windows are measured: the rest of the burn shows nothing more,
    // so it is not waited for.
    c.container
        .kill()
        .map_err(ObserveError::container("kill the burner"))
}

/// The CPU usage counter of an OCI runtime's container, read from its
/// cgroup by the host.
fn oci_usage_us(running: &crate::oci::RunningHalf) -> Result<u64, MeasureError> {
    running.cgroup()["cpu_usage_usec"]
        .as_u64()
        .ok_or(MeasureError::NoUsage)
}

/// The burner's rate under its quota (`measure::usage_rate_of`), read
/// from its cgroup between go and a second go that stops it.
fn usage_window(
    half: &mut Half,
    out: &mut LineReader,
    stdin: &mut Option<File>,
    measure: impl FnOnce(&mut Map<String, Value>) -> Result<(), MeasureError>,
) -> Result<(), ObserveError> {
    out.wait_ready(half.deadline)?;
    say_go(stdin);
    let measured = measure(&mut half.host);
    say_go(stdin);
    Ok(measured?)
}

/// `exec` of the companion probe through the runtime, after noting PID 1's
/// namespaces (read by the host before start).
fn oci_exec_companion(half: &mut Half, c: &mut OciSpawned) -> Result<(), ObserveError> {
    c.out.wait_ready(half.deadline)?;
    let inodes = c.running.namespaces.clone();
    if !["mnt", "pid", "net"]
        .iter()
        .all(|ns| inodes.contains_key(*ns))
    {
        return Err(ObserveError::Namespaces {
            pid: c.running.pid() as i32,
            inodes,
        });
    }
    half.host.insert("container_ns".into(), json!(inodes));
    let companion = half.s.run.companion.as_ref().ok_or(ObserveError::Needs {
        interaction: "exec",
        what: "a companion probe",
    })?;
    let mut argv = vec!["/probe".to_string()];
    argv.extend(expand_all(companion, &half.vars));
    let exec = c.running.exec(&argv).map_err(super::half::oci_error)?;
    let seen = last_json(&exec.stdout);
    if seen.is_none() && exec.code != Some(0) {
        return Err(ObserveError::Oci(format!(
            "exec {argv:?} exited {:?}: {}",
            exec.code,
            tail(&exec.stderr, 400)
        )));
    }
    half.doc
        .insert("companion".into(), seen.unwrap_or(Value::Null));
    say_go(&mut c.stdin);
    Ok(())
}

/// As `kill_after_output`, with the runtime's `kill --all` (every task of
/// the container) or, with group kill switched off, its `kill` (the init
/// only).
fn oci_kill_after_output(
    half: &mut Half,
    c: &mut OciSpawned,
    spec: &ContainerSpec,
) -> Result<(), ObserveError> {
    let first = c.out.next_json(half.deadline)?;
    half.doc.insert("probe".into(), first);
    half.doc
        .insert("cgroup_before_kill".into(), c.running.cgroup());
    let before = c.running.cgroup_procs().map_err(super::half::oci_error)?;
    half.host
        .insert("tasks_before_kill".into(), json!(before.len()));
    c.running
        .kill(spec.hardening.group_kill)
        .map_err(super::half::oci_error)?;
    c.running
        .wait_exit(Instant::now() + Duration::from_secs(5), &|| false);
    let left = tasks_left_after_kill(|| {
        c.running
            .cgroup_procs()
            .map(|p| p.len())
            .map_err(super::half::oci_error)
    })?;
    half.host.insert("tasks_after_kill".into(), json!(left));
    Ok(())
}

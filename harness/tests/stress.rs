//! Fifty containers at once, each with memory and pids limits and a veth on
//! one bridge, all running together, each limit read back from its cgroup's
//! files while they run; then every one is dropped and nothing of theirs may
//! remain: no cgroup, no temp dir, no link, no mount.
//! A libtest-mimic trial so it runs on this (single) thread after the
//! process has entered its own stand-in host.

use libtest_mimic::{Arguments, Trial};

#[cfg(feature = "privileged")]
const CONTAINERS: usize = 50;

fn main() {
    let mut args = Arguments::from_args();
    args.test_threads = Some(1);
    libtest_mimic::run(&args, trials()).exit();
}

#[cfg(not(feature = "privileged"))]
fn trials() -> Vec<Trial> {
    eprintln!("stress: ignored: needs root and `--features privileged`");
    vec![Trial::test("fifty_containers_with_limits_and_network", || Ok(())).with_ignored_flag(true)]
}

#[cfg(feature = "privileged")]
fn trials() -> Vec<Trial> {
    use libtest_mimic::Completion;
    if !nix::unistd::geteuid().is_root() {
        return vec![Trial::ignorable_test(
            "fifty_containers_with_limits_and_network",
            || Ok(Completion::ignored_with("needs root")),
        )];
    }
    // Before any thread exists.
    let entered = isocheck_harness::standin::enter().map_err(|e| e.to_string());
    vec![Trial::test(
        "fifty_containers_with_limits_and_network",
        move || {
            entered?;
            fifty().map_err(Into::into)
        },
    )]
}

#[cfg(feature = "privileged")]
fn fifty() -> Result<(), String> {
    use isocheck_harness::fixtures::{self, RunDir};
    use isocheck_runtime::network::{Bridge, Netns, SubnetPlan};
    use isocheck_runtime::spec::{BridgeAttachment, ContainerSpec, NetworkMode, RootfsSource};
    use isocheck_runtime::{Container, SpawnOptions, StdioMode};
    use std::time::{Duration, Instant};

    let probe = fixtures::probe_binary().map_err(|e| e.to_string())?;
    let run = RunDir::create().map_err(|e| e.to_string())?;
    let image = run.join("image");
    fixtures::build_image(&image, &probe).map_err(|e| e.to_string())?;
    let host = Netns::current().map_err(|e| e.to_string())?;
    let mut plan = SubnetPlan::new("10.91.0.0/24".parse().map_err(|_| "subnet")?, &[])
        .map_err(|e| e.to_string())?;
    let bridge = Bridge::create(&host, &format!("isoc-br{}", run.run_id), plan.gateway())
        .map_err(|e| e.to_string())?;

    let started = Instant::now();
    let mut containers = Vec::with_capacity(CONTAINERS);
    for i in 0..CONTAINERS {
        let mut spec = ContainerSpec::default();
        spec.rootfs.source = RootfsSource::Dir(image.clone());
        spec.limits.memory_bytes = Some(64 << 20);
        spec.limits.pids = Some(16);
        spec.network = NetworkMode::Bridge(BridgeAttachment {
            bridge: bridge.name().to_string(),
            address: plan.allocate().map_err(|e| e.to_string())?.to_string(),
            gateway: Some(plan.gateway().addr().to_string()),
            address6: None,
            gateway6: None,
            publish: Vec::new(),
            detached: false,
        });
        spec.command = vec!["/probe".into(), "wait".into()];
        let mut opts = SpawnOptions::new(run.run_id.clone(), format!("s{i}"));
        opts.stdin = StdioMode::Piped;
        opts.stdout = StdioMode::Null;
        let c = Container::spawn(&spec, opts).map_err(|e| format!("container {i}: {e}"))?;
        containers.push(c);
    }
    let took = started.elapsed();
    /// The limits as the kernel holds them, read back from the cgroup's own
    /// files (v1 or v2 names) while the container runs.
    fn limits_in_force(i: usize, c: &Container) -> Result<(), String> {
        let paths = c.cgroup().ok_or("no cgroup")?.paths();
        let read = |file: &str| {
            paths
                .iter()
                .find_map(|p| std::fs::read_to_string(p.join(file)).ok())
                .map(|t| t.trim().to_string())
        };
        let memory = read("memory.max").or_else(|| read("memory.limit_in_bytes"));
        let pids = read("pids.max");
        let want_memory = (64u64 << 20).to_string();
        if memory.as_deref() != Some(want_memory.as_str()) || pids.as_deref() != Some("16") {
            return Err(format!(
                "container {i}: limits in force: memory {memory:?} (want {want_memory}), pids {pids:?} (want 16)"
            ));
        }
        Ok(())
    }
    // All fifty at once: each PID 1 alive and in its own cgroup.
    for (i, c) in containers.iter_mut().enumerate() {
        if c.wait_timeout(Duration::ZERO)
            .map_err(|e| e.to_string())?
            .is_some()
        {
            return Err(format!("container {i} exited early"));
        }
        if c.cgroup_procs().ok() != Some(vec![c.pid()]) {
            return Err(format!(
                "container {i}: cgroup holds {:?}, not its PID 1",
                c.cgroup_procs()
            ));
        }
        limits_in_force(i, c)?;
    }
    let links = isocheck_runtime::network::leftovers(&host);
    if links
        .iter()
        .filter(|l| l.starts_with("link isoc-v"))
        .count()
        != CONTAINERS
    {
        return Err(format!("expected {CONTAINERS} veths, saw {links:?}"));
    }
    eprintln!("stress: {CONTAINERS} containers started in {took:?}, all running");
    drop(containers);
    drop(bridge);

    // The veths go with their namespaces, a moment after.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = isocheck_runtime::network::leftovers(&host);
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("links left: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cgroups: Vec<_> = isocheck_runtime::cgroups::CgroupManager::detect()
        .map_err(|e| e.to_string())?
        .leftovers()
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(&format!("/{}-", run.run_id)))
        .collect();
    if !cgroups.is_empty() {
        return Err(format!("cgroups left: {cgroups:?}"));
    }
    let prefix = format!("isocheck-{}-", run.run_id);
    let dirs: Vec<_> = std::fs::read_dir(isocheck_runtime::rootfs::temp_base())
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    if !dirs.is_empty() {
        return Err(format!("{} container temp dirs left", dirs.len()));
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| e.to_string())?;
    if mounts.contains(&prefix) {
        return Err("a container mount is left in the stand-in's table".into());
    }
    Ok(())
}

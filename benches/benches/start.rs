//! Container start latency, one criterion run: the kernel's floor, each
//! namespace alone, the runtime's stages, the full start (with and without
//! a bridged veth), the peers, the full start under load; then the summary
//! with the issue-7 ratios.
//!
//! The whole process first moves into a stand-in host (own net, mount, UTS,
//! IPC namespaces) so nothing a bench creates reaches the real host.

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup, BenchmarkId, Criterion, SamplingMode};
use isocheck_benches::bare_root::BareRoot;
use isocheck_benches::cgroup_tree::{BenchCgroups, CGROUP_ROOT};
use isocheck_benches::full::{self, Fleet, FullStarter, NetPlan};
use isocheck_benches::peers::{self, Peer};
use isocheck_benches::probe::{self, NOOP_ARG};
use isocheck_benches::rootfs::{MinimalRootfs, PROBE_IN_ROOT};
use isocheck_benches::spawn::{all_container_flags, IdleChild, PreparedExec, CONTAINER_NAMESPACES};
use isocheck_benches::stages;
use isocheck_benches::{summary, workspace_root};
use isocheck_runtime::caps::CapPlan;
use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::cgroups::ParentHold;
use isocheck_runtime::network::{attach_netns, Bridge, Netns};
use isocheck_runtime::reaper::Reaper;
use isocheck_runtime::standin;
use std::time::Duration;

/// What every bench shares; dropping it removes what the run created.
struct Run {
    root: MinimalRootfs,
    cgroups: BenchCgroups,
    /// The stand-in's own namespace and the bridge of the networked benches.
    net: Option<(Netns, Bridge)>,
    /// Names the runtime's cgroups and temp dirs (`isocheck-<run_id>-*`).
    run_id: String,
    /// (id, reason) for every id not measured in this run.
    skipped: Vec<(String, String)>,
    /// The runtime's `isocheck` parents stay for the whole run instead of
    /// being made and removed around every container (dropped last).
    _parents: Option<ParentHold>,
    /// Dropped containers' temp dirs and cgroups are removed by its thread,
    /// off the start path (`start/sustained` counts that work).
    reaper: Option<Reaper>,
}

impl Drop for Run {
    fn drop(&mut self) {
        // Waits until every handed-over teardown is done.
        drop(self.reaper.take());
        if let Some((_, bridge)) = self.net.take() {
            if let Err(e) = bridge.delete() {
                eprintln!("isocheck-benches cleanup: {e}");
            }
        }
        for error in self.cgroups.remove() {
            eprintln!("isocheck-benches cleanup: {error}");
        }
        for left in self.cgroups.leftovers() {
            eprintln!("isocheck-benches cleanup: left behind {}", left.display());
        }
        // The runtime's own cgroups and temp dirs for this run.
        for left in full::leftovers(&self.run_id, "") {
            eprintln!("isocheck-benches cleanup: left behind {}", left.display());
        }
    }
}

impl Run {
    fn skip(&mut self, id: &str, reason: String) {
        eprintln!("skip {id}: {reason}");
        self.skipped.push((id.to_string(), reason));
    }
}

/// Waits for an idle machine before `next` is timed: what the benches
/// before left the kernel to tear down must not be timed as its own (see
/// `isocheck_benches::settle`).
fn quiet(next: &str) {
    if let Err(busy) = isocheck_benches::settle::settle(Duration::from_secs(30)) {
        eprintln!(
            "isocheck-benches: before {next}: the CPUs were still {:.0} % busy after 30 s",
            busy * 100.0
        );
    }
}

/// Slow starts (milliseconds each): flat sampling, fewer samples, so a
/// full run stays in minutes.
fn slow_group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group
}

/// `start/floor`: clone3 with the six namespaces of a full container, exec
/// the probe's no-op, wait; `start/floor-mounts`: the same with the root's
/// mounts made bare between clone and exec (`bare_root`).
fn bench_floor(c: &mut Criterion, run: &mut Run) {
    let exec = PreparedExec::new(&run.root.probe(), &[NOOP_ARG]).expect("prepare the probe's exec");
    let flags = all_container_flags();
    exec.clone_exec_wait(flags)
        .expect("one floor start before timing");
    let mut group = slow_group(c, "start");
    group.bench_function("floor", |b| {
        b.iter(|| exec.clone_exec_wait(flags).expect("floor start"))
    });
    let bare = BareRoot::new(
        run.root.path(),
        std::path::Path::new(PROBE_IN_ROOT),
        &[NOOP_ARG],
    );
    match bare.and_then(|bare| bare.clone_build_exec_wait(flags).map(|()| bare)) {
        Err(e) => run.skip("start/floor-mounts", e.to_string()),
        Ok(bare) => {
            group.bench_function("floor-mounts", |b| {
                b.iter(|| {
                    bare.clone_build_exec_wait(flags)
                        .expect("floor-mounts start")
                })
            });
        }
    }
    group.finish();
}

/// `ns/<name>`: one namespace alone; `ns/none`: plain fork + exec.
fn bench_namespaces(c: &mut Criterion, run: &Run) {
    let exec = PreparedExec::new(&run.root.probe(), &[NOOP_ARG]).expect("prepare the probe's exec");
    let mut group = slow_group(c, "ns");
    group.bench_function("none", |b| {
        b.iter(|| exec.clone_exec_wait(0).expect("fork+exec"))
    });
    for ns in CONTAINER_NAMESPACES {
        group.bench_function(ns.name, |b| {
            b.iter(|| exec.clone_exec_wait(ns.clone_flag).expect("clone+exec"))
        });
    }
    group.finish();
}

/// `cgroup/create-destroy`: the runtime's cgroup with memory, pids and cpu
/// limits made in every hierarchy, then removed.
fn bench_cgroup(c: &mut Criterion, run: &mut Run) {
    let manager = match CgroupManager::detect() {
        Ok(manager) => manager,
        Err(e) => return run.skip("cgroup/create-destroy", format!("no cgroup manager: {e}")),
    };
    let limits = full::bench_limits();
    let name = format!("bench-{}-cg", std::process::id());
    let once = manager.create(&name, &limits).and_then(|cg| cg.remove());
    if let Err(e) = once {
        return run.skip("cgroup/create-destroy", e.to_string());
    }
    let mut group = slow_group(c, "cgroup");
    group.bench_function("create-destroy", |b| {
        b.iter(|| {
            manager
                .create(&name, &limits)
                .and_then(|cg| cg.remove())
                .expect("cgroup create + remove")
        })
    });
    // `cgroup/add-process`: moving a process into the cgroup, in every
    // hierarchy (what the handshake does; no CLONE_INTO_CGROUP on v1).
    group.bench_function("add-process", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cgroup = manager.create(&name, &limits).expect("cgroup");
                let child = IdleChild::start().expect("idle child");
                let start = std::time::Instant::now();
                cgroup.add_process(child.pid()).expect("add process");
                total += start.elapsed();
                drop(child);
                cgroup.remove().expect("cgroup remove");
            }
            total
        })
    });
    group.finish();
}

/// `net/attach`: a veth pair to the bench bridge with its peer made inside a
/// fresh netns, addressed, up, routed. The netns is made before the timer
/// and the pair torn down after it.
fn bench_net_attach(c: &mut Criterion, run: &mut Run) {
    let Some((host, bridge)) = &run.net else {
        return run.skip("net/attach", "no bench bridge (see above)".into());
    };
    let attachment = full::bench_attachment(bridge);
    let mut counter = 0u64;
    let mut group = slow_group(c, "net");
    group.bench_function("attach", |b| {
        b.iter_batched(
            || Netns::new_anonymous().expect("container netns"),
            |container| {
                counter += 1;
                let veth = attach_netns(host, &container, &attachment, &format!("a{counter}"))
                    .expect("attach");
                // Dropped after the timer: detach, then the netns.
                (veth, container)
            },
            BatchSize::PerIteration,
        )
    });
    // `net/detach`: deleting the host end while the container's netns is
    // alive (what dropping a VethAttachment does): the kernel unregisters
    // both ends and waits for RCU, so this is the costly half.
    group.bench_function("detach", |b| {
        b.iter_batched(
            || {
                let container = Netns::new_anonymous().expect("container netns");
                counter += 1;
                let veth = attach_netns(host, &container, &attachment, &format!("d{counter}"))
                    .expect("attach");
                (veth, container)
            },
            |(veth, container)| {
                veth.detach().expect("detach");
                container
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// `rootfs/setup` and `caps/drop`: the child-side stages, timed alone.
fn bench_stages(c: &mut Criterion, run: &mut Run) {
    let spec = full::full_spec(&run.root, &full::noop_argv());
    let run_id = run.run_id.clone();
    let mut group = slow_group(c, "rootfs");
    match stages::rootfs_setup_once(&spec, &run_id, "rootfs0") {
        Err(e) => run.skip("rootfs/setup", e.to_string()),
        Ok(_) => {
            group.bench_function("setup", |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|i| {
                            stages::rootfs_setup_once(&spec, &run_id, &format!("rootfs{i}"))
                                .expect("rootfs setup")
                        })
                        .sum()
                })
            });
        }
    }
    group.finish();

    let plan = match CapPlan::new(&spec.capabilities) {
        Ok(plan) => plan,
        Err(e) => return run.skip("caps/drop", e.to_string()),
    };
    if let Err(e) = stages::caps_drop_once(&plan) {
        return run.skip("caps/drop", e.to_string());
    }
    let mut group = slow_group(c, "caps");
    group.bench_function("drop", |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| stages::caps_drop_once(&plan).expect("caps drop"))
                .sum()
        })
    });
    group.finish();
}

/// A starter for full containers running `argv`, with or without the veth.
fn starter(run: &Run, prefix: &str, argv: &[&str], with_net: bool) -> Result<FullStarter, String> {
    let net = if with_net {
        let (host, bridge) = run.net.as_ref().ok_or("no bench bridge (see above)")?;
        Some(NetPlan {
            host: host.try_clone().map_err(|e| e.to_string())?,
            attachment: full::bench_attachment(bridge),
        })
    } else {
        None
    };
    Ok(FullStarter::new(
        full::full_spec(&run.root, argv),
        &run.run_id,
        prefix,
        net,
    ))
}

/// A starter that has passed one trial start, or the reason it has not.
fn tried_starter(run: &Run, prefix: &str, with_net: bool) -> Result<FullStarter, String> {
    let mut starter = starter(run, prefix, &full::noop_argv(), with_net)?;
    starter.run_once().map_err(|e| e.to_string())?;
    Ok(starter)
}

/// `start/full` and `start/full-net`.
fn bench_full(c: &mut Criterion, run: &mut Run) {
    let mut group = slow_group(c, "start");
    for (name, with_net) in [("full", false), ("full-net", true)] {
        let prefix = if with_net { "net" } else { "full" };
        quiet(&format!("start/{name}"));
        match tried_starter(run, prefix, with_net) {
            Ok(mut starter) => {
                group.bench_function(name, |b| b.iter(|| starter.run_once().expect("full start")));
            }
            Err(reason) => run.skip(&format!("start/{name}"), reason),
        }
    }
    group.finish();
}

/// How many starts a `start/sustained` iteration makes back to back.
const SUSTAINED_BATCH: u64 = 10;

/// `start/sustained`: starts back to back with all their teardown counted:
/// after each batch, time runs on until nothing of the batch is left (no
/// cgroup, no temp dir), so teardown deferred off the start path would
/// show here. Per start.
fn bench_sustained(c: &mut Criterion, run: &mut Run) {
    let mut starter = match tried_starter(run, "sus", false) {
        Ok(starter) => starter,
        Err(reason) => return run.skip("start/sustained", reason),
    };
    let run_id = run.run_id.clone();
    let mut group = slow_group(c, "start");
    group.bench_function("sustained", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters * SUSTAINED_BATCH {
                starter.run_once().expect("sustained start");
            }
            let deadline = start + Duration::from_secs(30);
            while !full::leftovers(&run_id, "sus").is_empty() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "start/sustained: the batch's cgroups or temp dirs were still there after 30 s"
                );
                std::thread::sleep(Duration::from_micros(200));
            }
            start.elapsed() / SUSTAINED_BATCH as u32
        })
    });
    group.finish();
}

/// `scale/running/N`: one more full start while N idle containers (each
/// its own cgroup with limits and its own netns) are running.
fn bench_scale(c: &mut Criterion, run: &mut Run) {
    const LOADS: [usize; 3] = [1, 10, 100];
    let skip_all = |run: &mut Run, reason: String| {
        for n in LOADS {
            run.skip(&format!("scale/running/{n}"), reason.clone());
        }
    };
    let mut timed = match tried_starter(run, "scale", false) {
        Ok(starter) => starter,
        Err(reason) => return skip_all(run, reason),
    };
    let mut idle = match starter(run, "idle", &full::idle_argv(), false) {
        Ok(starter) => starter,
        Err(reason) => return skip_all(run, reason),
    };
    // One idle container as the trial, so a probe that cannot idle is a
    // skip with its reason rather than a panic mid-run.
    match Fleet::start(&mut idle, 1) {
        Ok(fleet) => fleet.stop(),
        Err(e) => return skip_all(run, e.to_string()),
    }
    let mut group = slow_group(c, "scale");
    for n in LOADS {
        // Started on first use: criterion calls the routine only when the
        // id passes the command line's filter, so a filtered run does not
        // start a hundred containers for nothing.
        quiet(&format!("scale/running/{n}"));
        let mut fleet: Option<Fleet> = None;
        group.bench_with_input(BenchmarkId::new("running", n), &n, |b, &n| {
            if fleet.is_none() {
                fleet = Some(Fleet::start(&mut idle, n).expect("idle containers"));
            }
            b.iter(|| timed.run_once().expect("full start under load"))
        });
        if let Some(mut fleet) = fleet {
            let still = fleet.still_running();
            if still != n {
                eprintln!("scale/running/{n}: only {still} of {n} idle containers ran to the end");
            }
            fleet.stop();
        }
    }
    group.finish();
}

/// Every peer that is installed and passes one trial start.
fn ready_peers(run: &mut Run) -> Vec<Peer> {
    let candidates: Vec<(&str, Result<Peer, peers::PeerError>)> = vec![
        (
            "peers/runc",
            Peer::oci("peers/runc", "runc", &run.root, &run.cgroups),
        ),
        (
            "peers/crun",
            Peer::oci("peers/crun", "crun", &run.root, &run.cgroups),
        ),
        (
            "peers/youki",
            if std::env::var_os("ISOCHECK_BENCH_YOUKI").is_some() {
                Peer::oci("peers/youki", "youki", &run.root, &run.cgroups)
            } else {
                Err(peers::PeerError::OptIn {
                    reason: "youki 0.7 now and then misses its container's exit and waits \
                             forever (the probe left a zombie under it), which would end the \
                             run; set ISOCHECK_BENCH_YOUKI=1 to include it",
                })
            },
        ),
        ("peers/bwrap", Peer::bwrap(&run.root)),
        ("peers/unshare-chroot", Peer::unshare_chroot(&run.root)),
    ];
    let mut ready = Vec::new();
    for (id, candidate) in candidates {
        match candidate.and_then(|mut peer| peer.trial().map(|()| peer)) {
            Ok(peer) => {
                eprintln!("{id} ({}): {}", peer.program().display(), peer.asked);
                ready.push(peer);
            }
            Err(reason) => run.skip(id, reason.to_string()),
        }
    }
    ready
}

fn bench_peers(c: &mut Criterion, run: &mut Run) {
    let mut ready = ready_peers(run);
    let mut group = slow_group(c, "peers");
    for peer in &mut ready {
        let name = peer.id.trim_start_matches("peers/").to_string();
        quiet(peer.id);
        group.bench_function(name, |b| b.iter(|| peer.run_once().expect("peer start")));
    }
    group.finish();
}

/// `cli/isocheck`: `isocheck container run` as a whole process, beside
/// `peers/bwrap` (also a whole process on the same rootfs).
fn bench_cli(c: &mut Criterion, run: &mut Run, workspace: &std::path::Path) {
    let cli = probe::isocheck_cli(workspace)
        .map_err(|e| peers::PeerError::Build(e.to_string()))
        .map(|program| Peer::isocheck_cli(program, &run.root))
        .and_then(|mut peer| peer.trial().map(|()| peer));
    let mut peer = match cli {
        Ok(peer) => peer,
        Err(reason) => return run.skip("cli/isocheck", reason.to_string()),
    };
    eprintln!(
        "cli/isocheck ({}): {}",
        peer.program().display(),
        peer.asked
    );
    let mut group = slow_group(c, "cli");
    group.bench_function("isocheck", |b| {
        b.iter(|| peer.run_once().expect("cli start"))
    });
    group.finish();
}

fn main() {
    // First, before criterion exists or any thread runs.
    if let Err(e) = standin::enter() {
        eprintln!("isocheck-benches needs root to create namespaces: {e}");
        std::process::exit(1);
    }
    let workspace = workspace_root();
    let probe = match probe::find_or_build(&workspace) {
        Ok(path) => path,
        Err(e) => {
            eprintln!("isocheck-benches: no probe: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("isocheck-benches: probe {}", probe.display());
    let mut run = Run {
        root: MinimalRootfs::new(&probe).expect("minimal rootfs"),
        cgroups: BenchCgroups::new(
            std::path::Path::new(CGROUP_ROOT),
            &std::process::id().to_string(),
        ),
        net: None,
        run_id: format!("bench{}", std::process::id()),
        skipped: Vec::new(),
        _parents: CgroupManager::detect().ok().map(|m| m.hold_parents()),
        reaper: match Reaper::start() {
            Ok(reaper) => Some(reaper),
            Err(e) => {
                eprintln!("isocheck-benches: no reaper thread, teardown stays on the path: {e}");
                None
            }
        },
    };
    match full::make_bridge() {
        Ok(net) => run.net = Some(net),
        Err(e) => eprintln!("isocheck-benches: bench bridge in the stand-in: {e}"),
    }

    // cargo runs a bench with the package dir as its cwd, where criterion
    // would write benches/target/criterion; the summary below reads the
    // workspace's, so tell criterion the same dir.
    let criterion_dir = summary::criterion_dir(&workspace);
    let mut criterion = Criterion::default()
        .output_directory(&criterion_dir)
        .configure_from_args();
    type Group = fn(&mut Criterion, &mut Run, &std::path::Path);
    let groups: [(&str, Group); 10] = [
        ("start/floor", |c, run, _| bench_floor(c, run)),
        ("ns", |c, run, _| bench_namespaces(c, run)),
        ("cgroup", |c, run, _| bench_cgroup(c, run)),
        ("net", |c, run, _| bench_net_attach(c, run)),
        ("rootfs, caps", |c, run, _| bench_stages(c, run)),
        ("start/full", |c, run, _| bench_full(c, run)),
        ("start/sustained", |c, run, _| bench_sustained(c, run)),
        ("peers", |c, run, _| bench_peers(c, run)),
        ("cli", bench_cli),
        ("scale", |c, run, _| bench_scale(c, run)),
    ];
    for (name, group) in groups {
        quiet(name);
        group(&mut criterion, &mut run, &workspace);
    }
    criterion.final_summary();

    if let Err(e) = summary::write_skipped(&criterion_dir, &run.skipped) {
        eprintln!("isocheck-benches: {e}");
    }
    drop(run);
    let (measurements, skipped) = summary::last_run(&criterion_dir);
    if !measurements.is_empty() {
        println!();
        print!("{}", summary::render(&measurements, &skipped));
    }
}

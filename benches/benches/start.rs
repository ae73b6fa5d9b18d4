//! Container start latency, one criterion run: the kernel's floor, each
//! namespace alone, the peers; then the summary with the issue-7 ratios.
//!
//! The whole process first moves into a stand-in host (own net, mount, UTS,
//! IPC namespaces) so nothing a bench creates reaches the real host.

use criterion::measurement::WallTime;
use criterion::BatchSize;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};
use isocheck_benches::cgroup_tree::{BenchCgroups, CGROUP_ROOT};
use isocheck_benches::oci::BENCH_LIMITS;
use isocheck_benches::peers::{self, Peer};
use isocheck_benches::probe::{self, NOOP_ARG};
use isocheck_benches::rootfs::MinimalRootfs;
use isocheck_benches::spawn::{all_container_flags, PreparedExec, CONTAINER_NAMESPACES};
use isocheck_benches::{standin, summary, workspace_root};
use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::network::{attach_netns, Bridge, Netns};
use isocheck_runtime::spec::{BridgeAttachment, CpuQuota, Limits};
use std::time::Duration;

/// The runtime's form of the limits every bench container gets.
fn runtime_limits() -> Limits {
    Limits {
        memory_bytes: Some(BENCH_LIMITS.memory_bytes),
        pids: Some(BENCH_LIMITS.pids),
        cpu: Some(CpuQuota {
            quota_us: BENCH_LIMITS.cpu_quota_us,
            period_us: BENCH_LIMITS.cpu_period_us,
        }),
        cpuset: None,
    }
}

/// The bridge of the networked benches, in the stand-in host.
const BENCH_BRIDGE_GATEWAY: &str = "10.213.0.1/24";
const BENCH_CONTAINER_ADDRESS: &str = "10.213.0.2/24";

fn bench_bridge_name() -> String {
    // isoc-br + pid keeps concurrent runs apart (IFNAMSIZ: 15 bytes).
    format!("isoc-br{}", std::process::id() % 100_000_000)
}

fn bench_attachment(bridge: &Bridge) -> BridgeAttachment {
    BridgeAttachment {
        bridge: bridge.name().to_string(),
        address: BENCH_CONTAINER_ADDRESS.to_string(),
        gateway: Some(bridge.gateway().addr().to_string()),
        publish: Vec::new(),
        detached: false,
    }
}

/// What every bench shares; dropping it removes what the run created.
struct Run {
    root: MinimalRootfs,
    cgroups: BenchCgroups,
    /// (id, reason) for every id not measured in this run.
    skipped: Vec<(String, String)>,
}

impl Drop for Run {
    fn drop(&mut self) {
        for error in self.cgroups.remove() {
            eprintln!("isocheck-benches cleanup: {error}");
        }
        for left in self.cgroups.leftovers() {
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
/// the probe's no-op, wait.
fn bench_floor(c: &mut Criterion, run: &Run) {
    let exec = PreparedExec::new(&run.root.probe(), &[NOOP_ARG]).expect("prepare the probe's exec");
    let flags = all_container_flags();
    exec.clone_exec_wait(flags)
        .expect("one floor start before timing");
    let mut group = slow_group(c, "start");
    group.bench_function("floor", |b| {
        b.iter(|| exec.clone_exec_wait(flags).expect("floor start"))
    });
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
    let limits = runtime_limits();
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
    group.finish();
}

/// `net/attach`: a veth pair to the bench bridge with its peer made inside a
/// fresh netns, addressed, up, routed. The netns is made before the timer
/// and the pair torn down after it.
fn bench_net_attach(c: &mut Criterion, run: &mut Run) {
    let prepared = Netns::current().and_then(|host| {
        let gateway = BENCH_BRIDGE_GATEWAY
            .parse()
            .expect("constant gateway parses");
        Bridge::create(&host, &bench_bridge_name(), gateway).map(|bridge| (host, bridge))
    });
    let (host, bridge) = match prepared {
        Ok(prepared) => prepared,
        Err(e) => return run.skip("net/attach", format!("bridge in the stand-in: {e}")),
    };
    let attachment = bench_attachment(&bridge);
    let mut counter = 0u64;
    let mut group = slow_group(c, "net");
    group.bench_function("attach", |b| {
        b.iter_batched(
            || Netns::new_anonymous().expect("container netns"),
            |container| {
                counter += 1;
                let veth = attach_netns(&host, &container, &attachment, &format!("a{counter}"))
                    .expect("attach");
                // Dropped after the timer: detach, then the netns.
                (veth, container)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
    if let Err(e) = bridge.delete() {
        eprintln!("isocheck-benches cleanup: {e}");
    }
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
            Peer::oci("peers/youki", "youki", &run.root, &run.cgroups),
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
        group.bench_function(name, |b| b.iter(|| peer.run_once().expect("peer start")));
    }
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
        skipped: Vec::new(),
    };

    let mut criterion = Criterion::default().configure_from_args();
    bench_floor(&mut criterion, &run);
    bench_namespaces(&mut criterion, &run);
    bench_cgroup(&mut criterion, &mut run);
    bench_net_attach(&mut criterion, &mut run);
    bench_peers(&mut criterion, &mut run);
    criterion.final_summary();

    let criterion_dir = summary::criterion_dir(&workspace);
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

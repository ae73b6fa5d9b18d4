//! Where a full start's time goes: `start/full`'s container started N times
//! (default 200) with the runtime's timeline on, then the median of each
//! interval between consecutive marks, parent's and child's together, and
//! the median whole start beside the floor (clone3 with the same
//! namespaces, exec, wait) measured in the same run.
//!
//! `cargo run --release -p isocheck-benches --features timeline --example
//! start-timeline [N] [--net] [--reaper]` (as root; it enters a stand-in
//! host first, as the benches do). `--net` times `start/full-net`'s
//! container: a veth to a bridge made in the stand-in; `--reaper` hands
//! teardown to a reaper thread, as the benches do.

use isocheck_benches::full::{self, FullStarter, NetPlan};
use isocheck_benches::probe;
use isocheck_benches::rootfs::MinimalRootfs;
use isocheck_benches::spawn::{all_container_flags, PreparedExec};
use isocheck_runtime::cgroups::CgroupManager;
use isocheck_runtime::{standin, timeline, StdioMode};
use std::collections::BTreeMap;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    standin::enter()?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_net = args.iter().any(|a| a == "--net");
    let with_reaper = args.iter().any(|a| a == "--reaper");
    let n: usize = match args.iter().find(|a| !a.starts_with("--")) {
        Some(a) => a.parse().map_err(|e| format!("N: {a:?}: {e}"))?,
        None => 200,
    };
    if n == 0 {
        return Err("N: give 1 or more".into());
    }
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("no workspace dir")?;
    let root = MinimalRootfs::new(&probe::find_or_build(workspace)?)?;
    let _parents = CgroupManager::detect()?.hold_parents();
    // As the benches run: teardown on the reaper's thread.
    let reaper = with_reaper
        .then(isocheck_runtime::reaper::Reaper::start)
        .transpose()?;
    timeline::enable()?;

    let run_id = format!("timeline{}", std::process::id());
    let spec = full::full_spec(&root, &full::noop_argv());
    let bridge = with_net.then(full::make_bridge).transpose()?;
    let net = match &bridge {
        Some((host, bridge)) => Some(NetPlan {
            host: host.try_clone()?,
            attachment: full::bench_attachment(bridge),
        }),
        None => None,
    };
    let mut starter = FullStarter::new(spec, &run_id, "t", net);
    // (side, position, from -> to) -> interval in ms, over every start.
    // The parent and the child run at once (the parent completes the
    // cgroup while the child builds its root), so each side's marks are
    // chained on their own.
    let mut intervals: BTreeMap<(&str, usize, String), Vec<f64>> = BTreeMap::new();
    let mut starts = Vec::with_capacity(n);
    for _ in 0..n {
        timeline::take();
        let t = Instant::now();
        let mut started = starter.start(StdioMode::Null)?;
        started.container.wait()?;
        drop(started);
        starts.push(t.elapsed().as_secs_f64() * 1e3);
        let marks = timeline::take();
        for side in ["parent", "child"] {
            let mine: Vec<_> = marks
                .iter()
                .filter(|m| (side == "parent") == timeline::is_parent(m.0))
                .collect();
            for (i, pair) in mine.windows(2).enumerate() {
                let key = format!(
                    "{} -> {}",
                    timeline::name(pair[0].0),
                    timeline::name(pair[1].0)
                );
                let ms = pair[1].1.saturating_sub(pair[0].1) as f64 / 1e6;
                intervals.entry((side, i, key)).or_default().push(ms);
            }
        }
    }
    // A side interleaves a little differently from start to start; an
    // interval seen in fewer than half of them is left out.
    println!("median ms  interval (in {n} starts)");
    let mut shown = "";
    for ((side, _, key), v) in intervals.into_iter().filter(|(_, v)| v.len() * 2 >= n) {
        if side != shown {
            println!("{side}:");
            shown = side;
        }
        println!("{:9.3}  {key}", median(v));
    }

    let exec = PreparedExec::new(&root.probe(), &[isocheck_benches::probe::NOOP_ARG])?;
    let flags = all_container_flags();
    let floor: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            exec.clone_exec_wait(flags)
                .map(|()| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_, _>>()?;
    let (full, floor) = (median(starts), median(floor));
    println!(
        "start {full:.3} ms, floor {floor:.3} ms, start / floor {:.2}",
        full / floor
    );
    drop(reaper);
    if let Some((_, bridge)) = bridge {
        bridge.delete()?;
    }
    let left = full::leftovers(&run_id, "");
    if !left.is_empty() {
        return Err(format!("left behind: {left:?}").into());
    }
    Ok(())
}

//! Run one qemu leg without the CLI (for developing the VM runner):
//! `vm_leg LEG ISOCHECK_BIN PROBE_BIN SCENARIOS_DIR [TIMEOUT_SECS] [JSON_OUT]`.
use std::path::PathBuf;
use std::time::Duration;

use isocheck_harness::vm::{default_cache_dir, run_leg, VmRunOptions};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        anyhow::bail!(
            "usage: vm_leg LEG ISOCHECK_BIN PROBE_BIN SCENARIOS_DIR [TIMEOUT_SECS] [JSON_OUT]"
        );
    }
    let timeout = args.get(5).map(|s| s.parse()).transpose()?.unwrap_or(300);
    let opts = VmRunOptions {
        isocheck_bin: PathBuf::from(&args[2]),
        probe_bin: PathBuf::from(&args[3]),
        scenarios_dir: PathBuf::from(&args[4]),
        cache_dir: default_cache_dir(),
        timeout: Duration::from_secs(timeout),
        only: None,
    };
    let out = run_leg(&args[1], &opts)?;
    println!(
        "leg {} kernel {} accel {} boot {:?}s total {:.1}s error {:?}",
        out.leg, out.kernel_version, out.accel, out.boot_secs, out.total_secs, out.error
    );
    for note in &out.notes {
        println!("note: {note}");
    }
    println!("console log: {}", out.console_log.display());
    match &out.report {
        Some(report) => {
            let json = serde_json::to_string_pretty(report)?;
            println!("{json}");
            if let Some(path) = args.get(6) {
                std::fs::write(path, json)?;
            }
        }
        None => println!("--- console tail ---\n{}", out.console_tail),
    }
    Ok(())
}

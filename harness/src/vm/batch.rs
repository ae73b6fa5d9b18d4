//! `isocheck vm run`: legs one after another, each leg's report written to
//! its file and its table printed; with more than one leg, the merged
//! matrix at the end. The host leg is this machine: the suite in a child
//! `isocheck run` of our own.

use super::{find_leg, list_legs, run_leg, LegOutcome, VmError, VmRunOptions};
use crate::fixtures::FixtureError;
use crate::report::Report;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct VmRunArgs {
    /// A leg from `isocheck vm list`.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub leg: Option<String>,
    /// Every leg, one after another.
    #[arg(long)]
    pub all: bool,
    /// Write the leg's JSON report here (one leg).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// With --all: write <leg>.json for each leg in this directory.
    #[arg(long, default_value = "isocheck-reports")]
    pub out_dir: PathBuf,
    /// Only these scenario ids (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// The runtime that starts the containers: `isocheck` (ours), `runc`,
    /// `crun`, `youki` (looked up on this host) or a host path; carried into
    /// each guest (runc and crun always are, when this host has them).
    #[arg(long, value_name = "NAME|PATH", default_value = "isocheck")]
    pub runtime: String,
    /// Whole-boot deadline per leg, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("vm run: no leg {0:?} (see `isocheck vm list`)")]
    NoLeg(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
}

/// Runs the legs `args` name; fails when any leg did not bring a report back
/// or any guarantee failed in one.
pub fn run(args: &VmRunArgs) -> Result<ExitCode, BatchError> {
    let legs: Vec<String> = if args.all {
        list_legs()
            .into_iter()
            .map(|l| l.name.to_string())
            .collect()
    } else {
        let name = args.leg.clone().unwrap_or_default();
        if find_leg(&name).is_none() {
            return Err(BatchError::NoLeg(name));
        }
        vec![name]
    };
    let exe = std::env::current_exe()?;
    let opts = VmRunOptions {
        isocheck_bin: exe.clone(),
        probe_bin: crate::fixtures::probe_binary()?,
        scenarios_dir: crate::scenario::default_dir(),
        cache_dir: super::default_cache_dir(),
        timeout: Duration::from_secs(args.timeout),
        only: (!args.only.is_empty()).then(|| args.only.clone()),
        runtime: (args.runtime != "isocheck").then(|| args.runtime.clone()),
    };
    let mut failed = false;
    let mut reports = Vec::new();
    for name in &legs {
        let target = match (&args.json, args.all) {
            (Some(j), false) => j.clone(),
            _ => {
                std::fs::create_dir_all(&args.out_dir)?;
                args.out_dir.join(format!("{name}.json"))
            }
        };
        eprintln!("isocheck vm: {name} ...");
        let report = match run_leg(name, &opts) {
            Err(VmError::HostLeg) => {
                let (ok, report) = run_host_leg(&exe, &target, &args.only, &args.runtime)?;
                failed |= !ok;
                report
            }
            Err(e) => {
                eprintln!("isocheck vm: {name}: {e}");
                failed = true;
                None
            }
            Ok(outcome) => {
                show_outcome(name, &outcome);
                failed |= outcome.report.is_none();
                if let Some(r) = &outcome.report {
                    std::fs::write(&target, serde_json::to_string_pretty(r)?)?;
                    failed |= r.failed() > 0;
                    print!("{}", r.to_table());
                }
                outcome.report
            }
        };
        if let Some(r) = report {
            reports.push((name.clone(), r));
        }
    }
    if reports.len() > 1 {
        print!("{}", crate::matrix::merge(&reports).to_text());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The host leg is this machine, no VM: the suite in a child process of
/// our own (it enters its own stand-in host). Gives whether it passed and
/// the report it wrote.
fn run_host_leg(
    exe: &Path,
    target: &Path,
    only: &[String],
    runtime: &str,
) -> Result<(bool, Option<Report>), BatchError> {
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["run", "--json"])
        .arg(target)
        .args(["--runtime", runtime]);
    if !only.is_empty() {
        cmd.args(["--only", &only.join(",")]);
    }
    let status = cmd.status()?;
    let report = std::fs::read_to_string(target)
        .ok()
        .and_then(|t| serde_json::from_str::<Report>(&t).ok());
    Ok((status.success(), report))
}

/// How a qemu leg went, on stderr: accel and times, notes, and the console's
/// tail when no report came back.
fn show_outcome(name: &str, outcome: &LegOutcome) {
    eprintln!(
        "isocheck vm: {name}: accel {:?}, boot {:.1} s, total {:.1} s{}",
        outcome.accel,
        outcome.boot_secs.unwrap_or(f64::NAN),
        outcome.total_secs,
        outcome
            .error
            .as_ref()
            .map(|e| format!(", error: {e}"))
            .unwrap_or_default()
    );
    for note in &outcome.notes {
        eprintln!("isocheck vm: {name}: {note}");
    }
    if outcome.report.is_none() {
        eprintln!(
            "isocheck vm: {name}: console tail:\n{}",
            outcome.console_tail
        );
    }
}

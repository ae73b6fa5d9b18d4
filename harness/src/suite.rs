//! `isocheck run`: the selected scenarios, each with its control, in the
//! stand-in host, round after round with `--repeat`; a progress line per
//! scenario on stderr, the table on stdout, the report's files at the end.

use crate::fixtures::FixtureError;
use crate::lanes::{self, LaneError, Progress};
use crate::oci::OciRuntime;
use crate::report::{Environment, Report, RuntimeInfo, Verdict};
use crate::requirements::{require_root, NotRoot};
use crate::runner::Runner;
use crate::scenario::{self, Scenario, ScenarioError};
use crate::signals::{self, Interrupt, SignalError};
use crate::{cleanup, standin};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Only these scenario ids (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Directory of scenario TOML files.
    #[arg(long)]
    pub scenarios: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Write TAP (version 13) here.
    #[arg(long)]
    pub tap: Option<PathBuf>,
    /// Run the whole selection N times and report any verdict that changed.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// The runtime that starts the containers: `isocheck` (ours, built in),
    /// `runc`, `crun`, `youki` (looked up on PATH) or a path to an OCI
    /// runtime binary with runc's command line.
    #[arg(long, value_name = "NAME|PATH", default_value = "isocheck")]
    pub runtime: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("--only: no scenario has id {0:?} (see `isocheck list`)")]
    UnknownId(String),
    #[error("--repeat: 0; give 1 or more")]
    NoRounds,
    #[error("{flag}: write {}: {source}", path.display())]
    Write {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    NotRoot(#[from] NotRoot),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Standin(#[from] standin::StandinError),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error("--runtime: {0}")]
    Runtime(#[from] crate::oci::RuntimeError),
    #[error(transparent)]
    Lane(#[from] LaneError),
}

/// Runs the suite as `isocheck run` asks; the exit code says whether every
/// guarantee held (or which signal stopped the run).
pub fn run(args: &RunArgs) -> Result<ExitCode, SuiteError> {
    let dir = args.scenarios.clone().unwrap_or_else(scenario::default_dir);
    // Every file is loaded and checked before anything runs.
    let selected = select(scenario::load_dir(&dir)?, &args.only)?;
    if args.repeat == 0 {
        return Err(SuiteError::NoRounds);
    }
    require_root("run")?;
    // Resolved before anything is set up: a runtime that is not there is
    // the user's error, named with what was asked for.
    let oci_runtime = match args.runtime.as_str() {
        "isocheck" => None,
        other => Some(OciRuntime::resolve(other)?),
    };
    let leftovers = cleanup::find().leftovers;
    if !leftovers.is_empty() {
        eprintln!(
            "isocheck: warning: leftovers of a dead run: {}; `isocheck cleanup` removes them",
            cleanup::summary(&leftovers)
        );
    }
    // Blocked before the stand-in host and before any thread; the watcher
    // thread starts after `standin::enter` (unshare needs one thread).
    signals::block(&signals::STOPPING)?;
    standin::enter()?;
    let interrupt = Interrupt::watch()?;
    let mut runner = Runner::new()?;
    runner.set_interrupt(interrupt.clone());
    if let Some(runtime) = oci_runtime {
        runner.set_runtime(runtime);
    }
    let mut report = Report {
        environment: Environment {
            runtime: runner.runtime_info(),
            ..Environment::gather(&runner.host.cgroup_mode)
        },
        results: Vec::new(),
        interrupted: false,
        wall_ms: 0,
    };
    let started = Instant::now();
    let history = run_rounds(
        &mut runner,
        &dir,
        &selected,
        args.repeat,
        &interrupt,
        &mut report,
    )?;
    if let Some(sig) = interrupt.signal() {
        report.interrupted = true;
        // Every container of the run is gone with its half, and each lane
        // with its own; the rest (the decoys, the network testbed, the run
        // dir) goes with the runner.
        drop(runner);
        print!("{}", report.to_table());
        println!("interrupted by {sig}: the report holds the scenarios that finished");
        write_outputs(args, &report)?;
        return Ok(ExitCode::from(signals::exit_code(sig)));
    }
    print!("{}", report.to_table());
    if args.repeat > 1 {
        let changed = changed_verdicts(&selected, &history);
        println!(
            "repeat: {} rounds in {:.1} s; verdicts changed: {}",
            args.repeat,
            started.elapsed().as_secs_f64(),
            if changed.is_empty() {
                "none".to_string()
            } else {
                changed.join("; ")
            }
        );
        if !changed.is_empty() {
            write_outputs(args, &report)?;
            return Ok(ExitCode::FAILURE);
        }
    }
    write_outputs(args, &report)?;
    Ok(if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The scenarios `--only` names (all when it names none); an unknown id is
/// refused before anything runs.
fn select(all: Vec<Scenario>, only: &[String]) -> Result<Vec<Scenario>, SuiteError> {
    if only.is_empty() {
        return Ok(all);
    }
    if let Some(id) = only.iter().find(|id| !all.iter().any(|s| &s.id == *id)) {
        return Err(SuiteError::UnknownId(id.clone()));
    }
    Ok(all.into_iter().filter(|s| only.contains(&s.id)).collect())
}

/// Runs `repeat` rounds until done or interrupted; `report` holds the last
/// round's results, in the selection's order. Gives each scenario's
/// verdicts, one per round. Our runtime gets a general lane per CPU (see
/// `lanes`); another runtime runs everything on `runner`, in order.
fn run_rounds(
    runner: &mut Runner,
    dir: &Path,
    selected: &[Scenario],
    repeat: u32,
    interrupt: &Interrupt,
    report: &mut Report,
) -> Result<Vec<Vec<Verdict>>, SuiteError> {
    let general = if runner.runtime_info() != RuntimeInfo::default() {
        0
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let mut history: Vec<Vec<Verdict>> = vec![Vec::new(); selected.len()];
    let mut progress = Progress::new(selected.len() * repeat as usize);
    for _ in 0..repeat {
        if interrupt.is_set() {
            break;
        }
        let round_started = Instant::now();
        let done = lanes::run_round(runner, general, dir, selected, &mut progress, interrupt)?;
        report.results.clear();
        for (i, result) in done {
            history[i].push(result.verdict);
            report.results.push(result);
        }
        report.wall_ms = round_started.elapsed().as_millis() as u64;
    }
    Ok(history)
}

/// `id (pass,fail,...)` for each scenario whose verdict changed between rounds.
fn changed_verdicts(selected: &[Scenario], history: &[Vec<Verdict>]) -> Vec<String> {
    selected
        .iter()
        .zip(history)
        .filter(|(_, h)| h.iter().any(|v| *v != h[0]))
        .map(|(s, h)| {
            format!(
                "{} ({})",
                s.id,
                h.iter().map(|v| v.label()).collect::<Vec<_>>().join(",")
            )
        })
        .collect()
}

/// The report's files that `--json`, `--junit` and `--tap` ask for.
fn write_outputs(args: &RunArgs, report: &Report) -> Result<(), SuiteError> {
    let write = |flag, path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|source| SuiteError::Write {
            flag,
            path: path.clone(),
            source,
        })
    };
    if let Some(path) = &args.json {
        write("--json", path, serde_json::to_string_pretty(report)?)?;
    }
    if let Some(path) = &args.junit {
        write("--junit", path, report.to_junit())?;
    }
    if let Some(path) = &args.tap {
        write("--tap", path, report.to_tap())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Vec<Scenario> {
        scenario::load_dir(&scenario::default_dir()).unwrap()
    }

    #[test]
    fn only_selects_by_id_and_refuses_an_unknown_one() {
        let all = shipped();
        let first = all[0].id.clone();
        let picked = select(all.clone(), std::slice::from_ref(&first)).unwrap();
        assert_eq!(picked.len(), 1);
        assert_eq!(picked[0].id, first);
        assert_eq!(select(all.clone(), &[]).unwrap().len(), all.len());
        let e = select(all, &[first, "no-such-id".into()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--only: no scenario has id \"no-such-id\" (see `isocheck list`)"
        );
    }

    #[test]
    fn a_verdict_that_changed_between_rounds_is_named_with_its_history() {
        let all: Vec<Scenario> = shipped().into_iter().take(2).collect();
        let history = vec![
            vec![Verdict::Pass, Verdict::Pass],
            vec![Verdict::Pass, Verdict::Fail],
        ];
        assert_eq!(
            changed_verdicts(&all, &history),
            vec![format!("{} (pass,FAIL)", all[1].id)]
        );
    }

    #[test]
    fn each_file_the_flags_ask_for_is_written_and_a_bad_path_named() {
        let dir = tempfile::tempdir().unwrap();
        let report = Report {
            environment: Environment::gather("hybrid"),
            results: Vec::new(),
            interrupted: false,
            wall_ms: 0,
        };
        let mut args = RunArgs {
            only: Vec::new(),
            scenarios: None,
            json: Some(dir.path().join("r.json")),
            junit: None,
            tap: Some(dir.path().join("r.tap")),
            repeat: 1,
            runtime: "isocheck".into(),
        };
        write_outputs(&args, &report).unwrap();
        assert!(dir.path().join("r.json").is_file());
        assert!(dir.path().join("r.tap").is_file());
        assert!(!dir.path().join("r.xml").exists());
        args.junit = Some(dir.path().join("missing/r.xml"));
        let e = write_outputs(&args, &report).unwrap_err().to_string();
        assert!(e.starts_with("--junit: write "), "{e}");
        assert!(e.contains("missing/r.xml"), "{e}");
    }
}

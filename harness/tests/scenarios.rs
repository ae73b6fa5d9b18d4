//! Every scenario as one libtest-mimic trial, `<id>`: it passes only when
//! the guarantee holds *and* its control (one protection switched off) shows
//! the violation, so cargo's own summary counts proofs, not halves. They run for real only with
//! `--features privileged` and as root; otherwise each is reported as
//! ignored with the reason.
//!
//! Then every scenario again through each OCI runtime the machine has
//! (runc, crun, youki on PATH or in ~/.cargo/bin), as `RUNTIME/SCENARIO`:
//! a runtime that is not installed, a scenario it cannot run and a config
//! it refuses are ignored with the reason; a FAIL listed in
//! harness/oci-findings.toml passes (printing the finding) while it is
//! still a FAIL and fails once the runtime passes (the row is stale); an
//! unlisted FAIL fails. `cargo test ... -- runc/` runs one runtime's.

use isocheck_harness::scenario::{self, Scenario};
use libtest_mimic::{Arguments, Trial};

fn main() {
    let mut args = Arguments::from_args();
    // One thread: the trials share the stand-in host and its decoys, and the
    // runtime clones from this process.
    args.test_threads = Some(1);
    let scenarios = match scenario::load_dir(&scenario::default_dir()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("scenario files: {e}");
            std::process::exit(101);
        }
    };
    libtest_mimic::run(&args, trials(scenarios)).exit();
}

/// The trial names: ours first, then each known runtime's.
fn names(scenarios: &[Scenario]) -> Vec<String> {
    let ours = scenarios.iter().map(|s| s.id.clone());
    let theirs = isocheck_harness::oci::runtime::KNOWN
        .iter()
        .flat_map(|r| scenarios.iter().map(move |s| format!("{r}/{}", s.id)));
    ours.chain(theirs).collect()
}

#[cfg(not(feature = "privileged"))]
fn trials(scenarios: Vec<Scenario>) -> Vec<Trial> {
    eprintln!("isocheck scenarios: ignored: they need root and `--features privileged`");
    names(&scenarios)
        .into_iter()
        .map(|name| Trial::test(name, || Ok(())).with_ignored_flag(true))
        .collect()
}

#[cfg(feature = "privileged")]
fn trials(scenarios: Vec<Scenario>) -> Vec<Trial> {
    use isocheck_harness::report::Verdict;
    use isocheck_harness::runner::Runner;
    use libtest_mimic::{Completion, Failed};
    use std::sync::{Arc, Mutex};

    let runner: Result<Runner, String> = if !nix::unistd::geteuid().is_root() {
        Err("needs root".into())
    } else {
        isocheck_harness::standin::enter()
            .map_err(|e| e.to_string())
            .and_then(|()| Runner::new().map_err(|e| e.to_string()))
    };
    let runner = match runner {
        Ok(r) => Arc::new(Mutex::new(r)),
        Err(why) => {
            // Without root the trials are skipped, visibly; a root run that
            // cannot set up is a failure of every trial.
            let skip = why == "needs root";
            return names(&scenarios)
                .into_iter()
                .map(|name| {
                    let why = why.clone();
                    Trial::ignorable_test(name, move || {
                        if skip {
                            Ok(Completion::ignored_with(why))
                        } else {
                            Err(Failed::from(format!("stand-in host setup: {why}")))
                        }
                    })
                })
                .collect();
        }
    };
    // One trial per scenario: it passes only when the run holds *and* the
    // control shows the violation, so a half alone can never go green.
    let mut trials: Vec<Trial> = scenarios
        .iter()
        .cloned()
        .map(|s| {
            let runner = Arc::clone(&runner);
            Trial::ignorable_test(s.id.clone(), move || {
                let mut runner = runner.lock().map_err(|_| Failed::from("runner poisoned"))?;
                runner.use_runtime(None);
                if let Some(why) = runner.unsupported(&s) {
                    return Ok(Completion::ignored_with(why));
                }
                let result = runner.run_scenario(&s);
                match result.verdict {
                    Verdict::Pass => Ok(Completion::Completed),
                    Verdict::Unsupported => {
                        Ok(Completion::ignored_with(result.reason.unwrap_or_default()))
                    }
                    Verdict::Fail => Err(Failed::from(format!(
                        "{} (protection {})\nobserved: {}",
                        result.reason.unwrap_or_default(),
                        result.protection,
                        serde_json::to_string(&result.observed).unwrap_or_default()
                    ))),
                }
            })
        })
        .collect();
    trials.extend(runtime_trials(&scenarios, &runner));
    trials
}

/// `RUNTIME/SCENARIO` for every known OCI runtime, judged against the
/// expected findings (see the module comment).
#[cfg(feature = "privileged")]
fn runtime_trials(
    scenarios: &[Scenario],
    runner: &std::sync::Arc<std::sync::Mutex<isocheck_harness::runner::Runner>>,
) -> Vec<Trial> {
    use isocheck_harness::oci::trials::{self, TrialOutcome};
    use isocheck_harness::oci::{runtime::KNOWN, OciRuntime};
    use libtest_mimic::{Completion, Failed};
    use std::sync::Arc;

    let findings = match trials::expected_findings() {
        Ok(f) => Arc::new(f),
        Err(e) => {
            // A broken table fails every runtime trial, loudly.
            return KNOWN
                .iter()
                .flat_map(|r| scenarios.iter().map(move |s| format!("{r}/{}", s.id)))
                .map(|name| {
                    let e = e.clone();
                    Trial::test(name, move || Err(Failed::from(e)))
                })
                .collect();
        }
    };
    let mut out = Vec::new();
    for name in KNOWN {
        // Not installed, or `--version` would not run: every trial of this
        // runtime is ignored, saying which.
        let runtime = trials::find_installed(name)
            .ok_or_else(|| {
                format!(
                    "{name} is not installed (not on PATH nor in $CARGO_HOME/bin or ~/.cargo/bin)"
                )
            })
            .and_then(|p| OciRuntime::resolve(&p.to_string_lossy()).map_err(|e| e.to_string()));
        for s in scenarios.iter().cloned() {
            let (runner, findings, runtime) =
                (Arc::clone(runner), Arc::clone(&findings), runtime.clone());
            out.push(Trial::ignorable_test(
                format!("{name}/{}", s.id),
                move || {
                    let runtime = match runtime {
                        Ok(r) => r,
                        Err(why) => return Ok(Completion::ignored_with(why)),
                    };
                    let finding = trials::finding_for(&findings, name, &runtime.version, &s.id);
                    let mut runner = runner.lock().map_err(|_| Failed::from("runner poisoned"))?;
                    runner.use_runtime(Some(runtime.clone()));
                    let result = runner.run_scenario(&s);
                    runner.use_runtime(None);
                    let detail = format!(
                        "{} {} (protection {})\nobserved: {}",
                        runtime.name,
                        runtime.version,
                        result.protection,
                        serde_json::to_string(&result.observed).unwrap_or_default()
                    );
                    match trials::trial_outcome(
                        result.verdict,
                        finding,
                        result.reason.as_deref(),
                        &detail,
                    ) {
                        TrialOutcome::Pass => Ok(Completion::Completed),
                        TrialOutcome::KnownFinding(msg) => {
                            // Passes, but never silently.
                            println!("\n  {name}/{}: {msg}", s.id);
                            Ok(Completion::Completed)
                        }
                        TrialOutcome::Fail(msg) => Err(Failed::from(msg)),
                        TrialOutcome::Ignored(why) => Ok(Completion::ignored_with(why)),
                    }
                },
            ));
        }
    }
    out
}

//! Every scenario as one libtest-mimic trial, `<id>`: it passes only when
//! the guarantee holds *and* its control (one protection switched off) shows
//! the violation, so cargo's own summary counts proofs, not halves. They run for real only with
//! `--features privileged` and as root; otherwise each is reported as
//! ignored with the reason.

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

#[cfg(not(feature = "privileged"))]
fn trials(scenarios: Vec<Scenario>) -> Vec<Trial> {
    eprintln!("isocheck scenarios: ignored: they need root and `--features privileged`");
    scenarios
        .iter()
        .map(|s| Trial::test(s.id.clone(), || Ok(())).with_ignored_flag(true))
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
            return scenarios
                .iter()
                .map(|s| s.id.clone())
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
    scenarios
        .into_iter()
        .map(|s| {
            let runner = Arc::clone(&runner);
            Trial::ignorable_test(s.id.clone(), move || {
                let mut runner = runner.lock().map_err(|_| Failed::from("runner poisoned"))?;
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
        .collect()
}

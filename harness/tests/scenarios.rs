//! Every scenario as two libtest-mimic trials, `<id>` (the guarantee holds)
//! and `<id>::control` (with the isolation switched off, the violation is
//! seen), so cargo's own summary counts them. They run for real only with
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
        .flat_map(|s| [s.id.clone(), format!("{}::control", s.id)])
        .map(|name| Trial::test(name, || Ok(())).with_ignored_flag(true))
        .collect()
}

#[cfg(feature = "privileged")]
fn trials(scenarios: Vec<Scenario>) -> Vec<Trial> {
    use isocheck_harness::runner::{Runner, Which};
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
                .flat_map(|s| [s.id.clone(), format!("{}::control", s.id)])
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
    let mut trials = Vec::new();
    for s in scenarios {
        let s = Arc::new(s);
        for which in [Which::Run, Which::Control] {
            let name = match which {
                Which::Run => s.id.clone(),
                Which::Control => format!("{}::control", s.id),
            };
            let (s, runner) = (Arc::clone(&s), Arc::clone(&runner));
            trials.push(Trial::ignorable_test(name, move || {
                let mut runner = runner.lock().map_err(|_| Failed::from("runner poisoned"))?;
                if let Some(why) = runner.unsupported(&s) {
                    return Ok(Completion::ignored_with(why));
                }
                let outcome = runner.check(&s, which);
                if outcome.failures.is_empty() {
                    Ok(Completion::Completed)
                } else {
                    Err(Failed::from(format!(
                        "{}\nobserved: {}",
                        outcome.failures.join("\n"),
                        serde_json::to_string(&outcome.observation).unwrap_or_default()
                    )))
                }
            }));
        }
    }
    trials
}

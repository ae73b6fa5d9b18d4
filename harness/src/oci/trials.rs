//! What the per-runtime trials of `cargo test --features privileged` need
//! (harness/tests/scenarios.rs, trials named `RUNTIME/SCENARIO`): which OCI
//! runtimes this machine has, the checked-in table of expected findings
//! (harness/oci-findings.toml), and the rule that turns a verdict and the
//! table into a trial's outcome. Kept here, without root, so the rule is
//! unit-tested.

use crate::report::Verdict;
use serde::Deserialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The table, compiled in: a test binary and the CLI read the same rows.
pub const FINDINGS_TOML: &str = include_str!("../../oci-findings.toml");

/// One guarantee a runtime is known to break.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// The runtime's name: `runc`, `crun`, `youki` (the binary's file name).
    pub runtime: String,
    /// A prefix of the version number `--version` prints ("1.1." matches
    /// "1.1.5+ds1").
    pub version: String,
    /// The scenario id.
    pub scenario: String,
    /// What was observed.
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    finding: Vec<Finding>,
}

/// Parses a findings table; errors name the file and what is wrong.
pub fn parse_findings(text: &str, origin: &str) -> Result<Vec<Finding>, String> {
    let table: Table = toml::from_str(text).map_err(|e| format!("{origin}: {e}"))?;
    for f in &table.finding {
        for (field, value) in [
            ("runtime", &f.runtime),
            ("version", &f.version),
            ("scenario", &f.scenario),
            ("reason", &f.reason),
        ] {
            if value.trim().is_empty() {
                return Err(format!(
                    "{origin}: finding for {}/{}: `{field}` is empty",
                    f.runtime, f.scenario
                ));
            }
        }
    }
    Ok(table.finding)
}

/// The checked-in table (harness/oci-findings.toml).
pub fn expected_findings() -> Result<Vec<Finding>, String> {
    parse_findings(FINDINGS_TOML, "harness/oci-findings.toml")
}

/// The version number in a runtime's `--version` first line: the first
/// word that starts with a digit ("runc version 1.1.5+ds1" -> "1.1.5+ds1",
/// "youki version: 0.7.0" -> "0.7.0"); the whole line when there is none.
pub fn version_number(version_line: &str) -> &str {
    version_line
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .unwrap_or(version_line)
}

/// The row for `scenario` through `runtime` at `version_line`, if any.
pub fn finding_for<'a>(
    findings: &'a [Finding],
    runtime: &str,
    version_line: &str,
    scenario: &str,
) -> Option<&'a Finding> {
    let number = version_number(version_line);
    findings
        .iter()
        .find(|f| f.runtime == runtime && f.scenario == scenario && number.starts_with(&f.version))
}

/// What a `RUNTIME/SCENARIO` trial reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialOutcome {
    /// The guarantee holds through the runtime.
    Pass,
    /// A listed finding, still there: the trial passes and prints it.
    KnownFinding(String),
    /// The trial fails with this message.
    Fail(String),
    /// Ignored, with the reason.
    Ignored(String),
}

/// The rule: a listed finding passes only while the verdict is FAIL, and
/// fails as stale once the runtime passes; an unlisted FAIL fails.
/// `fail_detail` is the failed expectations, for the message.
pub fn trial_outcome(
    verdict: Verdict,
    finding: Option<&Finding>,
    reason: Option<&str>,
    fail_detail: &str,
) -> TrialOutcome {
    let reason = reason.unwrap_or("no reason given");
    match (verdict, finding) {
        (Verdict::Pass, None) => TrialOutcome::Pass,
        (Verdict::Pass, Some(f)) => TrialOutcome::Fail(format!(
            "stale expected finding: {} {} now passes {}; delete its row from \
             harness/oci-findings.toml (it said: {})",
            f.runtime, f.version, f.scenario, f.reason
        )),
        (Verdict::Fail, Some(f)) => TrialOutcome::KnownFinding(format!(
            "expected finding (harness/oci-findings.toml, {} {}): {}\nthis run: {reason}",
            f.runtime, f.version, f.reason
        )),
        (Verdict::Fail, None) => TrialOutcome::Fail(format!("{reason}\n{fail_detail}")),
        (Verdict::Unsupported, None) => TrialOutcome::Ignored(reason.to_string()),
        (Verdict::Unsupported, Some(f)) => TrialOutcome::Ignored(format!(
            "{reason} (the expected finding for {} {} is not checked)",
            f.runtime, f.version
        )),
    }
}

/// `program` in a directory of PATH, if there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    find_in(program, std::env::var_os("PATH"), None)
}

/// Where a runtime is installed: PATH first, then cargo's bin directory
/// (`$CARGO_HOME/bin`, else `~/.cargo/bin`), where `cargo install youki`
/// puts it, often not on root's PATH under sudo.
pub fn find_installed(program: &str) -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    find_in(program, std::env::var_os("PATH"), cargo_home)
}

/// `program` in `path`'s directories, then in `cargo_home`/bin.
fn find_in(program: &str, path: Option<OsString>, cargo_home: Option<PathBuf>) -> Option<PathBuf> {
    let dirs = path.iter().flat_map(std::env::split_paths);
    let cargo_bin = cargo_home.map(|h| h.join("bin"));
    dirs.chain(cargo_bin)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(runtime: &str, version: &str, scenario: &str) -> Finding {
        Finding {
            runtime: runtime.into(),
            version: version.into(),
            scenario: scenario.into(),
            reason: "seen".into(),
        }
    }

    #[test]
    fn the_checked_in_table_parses_and_names_only_real_scenarios() {
        let findings = expected_findings().expect("harness/oci-findings.toml");
        assert!(!findings.is_empty());
        let ids: Vec<String> = crate::scenario::load_dir(&crate::scenario::default_dir())
            .expect("scenarios")
            .into_iter()
            .map(|s| s.id)
            .collect();
        for f in &findings {
            assert!(
                ids.contains(&f.scenario),
                "{}/{}: no such scenario",
                f.runtime,
                f.scenario
            );
            assert!(
                super::super::runtime::KNOWN.contains(&f.runtime.as_str()),
                "{}: not a runtime the trials look for",
                f.runtime
            );
        }
    }

    #[test]
    fn a_table_with_an_unknown_field_or_an_empty_reason_is_refused() {
        let err = parse_findings(
            "[[finding]]\nruntime='runc'\nversion='1'\nscenario='x'\nreason='r'\nnote='n'\n",
            "t.toml",
        )
        .expect_err("unknown field");
        assert!(err.contains("t.toml") && err.contains("note"), "{err}");
        let err = parse_findings(
            "[[finding]]\nruntime='runc'\nversion='1'\nscenario='x'\nreason=' '\n",
            "t.toml",
        )
        .expect_err("empty reason");
        assert!(err.contains("runc/x") && err.contains("reason"), "{err}");
    }

    #[test]
    fn version_numbers_come_out_of_each_runtimes_version_line() {
        assert_eq!(version_number("runc version 1.1.5+ds1"), "1.1.5+ds1");
        assert_eq!(version_number("crun version 1.8.1"), "1.8.1");
        assert_eq!(version_number("youki version: 0.7.0"), "0.7.0");
        assert_eq!(version_number("weird"), "weird");
    }

    #[test]
    fn a_finding_matches_its_runtime_scenario_and_version_prefix_only() {
        let t = [row("runc", "1.1.", "uts-own-hostname")];
        let hit = finding_for(&t, "runc", "runc version 1.1.5+ds1", "uts-own-hostname");
        assert_eq!(hit, Some(&t[0]));
        assert!(finding_for(&t, "runc", "runc version 1.2.0", "uts-own-hostname").is_none());
        assert!(finding_for(&t, "crun", "crun version 1.1.5", "uts-own-hostname").is_none());
        assert!(finding_for(&t, "runc", "runc version 1.1.5", "uts-hostname").is_none());
    }

    #[test]
    fn a_listed_fail_passes_and_a_listed_pass_is_stale() {
        let f = row("youki", "0.7.", "seccomp-default-filter");
        match trial_outcome(Verdict::Fail, Some(&f), Some("run: Seccomp 0"), "") {
            TrialOutcome::KnownFinding(m) => assert!(m.contains("seen") && m.contains("Seccomp 0")),
            other => panic!("{other:?}"),
        }
        match trial_outcome(Verdict::Pass, Some(&f), None, "") {
            TrialOutcome::Fail(m) => assert!(m.contains("stale") && m.contains("delete")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_unlisted_fail_fails_and_unsupported_is_ignored_with_its_reason() {
        assert_eq!(
            trial_outcome(Verdict::Fail, None, Some("run: x"), "observed: {}"),
            TrialOutcome::Fail("run: x\nobserved: {}".into())
        );
        assert_eq!(
            trial_outcome(Verdict::Pass, None, None, ""),
            TrialOutcome::Pass
        );
        assert_eq!(
            trial_outcome(Verdict::Unsupported, None, Some("refused at create"), ""),
            TrialOutcome::Ignored("refused at create".into())
        );
        let f = row("runc", "1.1.", "x");
        match trial_outcome(Verdict::Unsupported, Some(&f), Some("refused"), "") {
            TrialOutcome::Ignored(m) => assert!(m.contains("refused") && m.contains("not checked")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_runtime_is_found_on_path_first_then_in_cargos_bin() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (bin, home) = (tmp.path().join("bin"), tmp.path().join("home"));
        let cargo_bin = home.join(".cargo/bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::create_dir_all(&cargo_bin).expect("cargo bin");
        std::fs::write(cargo_bin.join("youki"), "").expect("youki");
        let path = Some(bin.clone().into_os_string());
        let home = Some(home.join(".cargo"));
        assert_eq!(
            find_in("youki", path.clone(), home.clone()),
            Some(cargo_bin.join("youki"))
        );
        std::fs::write(bin.join("youki"), "").expect("youki on PATH");
        assert_eq!(
            find_in("youki", path.clone(), home.clone()),
            Some(bin.join("youki"))
        );
        assert_eq!(find_in("runc", path, home), None);
    }
}

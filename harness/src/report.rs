//! The report: one result per scenario, for people (a table), for machines
//! (JSON, the contract other tools and `isocheck matrix` rely on) and for CI
//! (JUnit XML and TAP).

use serde::{Deserialize, Serialize};

/// The JSON report. Field names are a contract (DESIGN.md); do not rename.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub environment: Environment,
    pub results: Vec<ScenarioResult>,
    /// The run was stopped by a signal: `results` holds only the scenarios
    /// that finished before it. `false` in reports that predate the field.
    #[serde(default)]
    pub interrupted: bool,
    /// Wall time of the (last round of the) run, setup and teardown
    /// included; 0 in reports that predate the field.
    #[serde(default)]
    pub wall_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// `uname -r` of the kernel the suite ran on.
    pub kernel: String,
    /// "v1", "v2" or "hybrid".
    pub cgroup_mode: String,
    /// PRETTY_NAME from os-release, or "unknown".
    pub distro: String,
    pub cpus: u32,
    pub isocheck_version: String,
    /// The container runtime the scenarios ran with (reports written
    /// before runtimes could be chosen read as ours).
    #[serde(default)]
    pub runtime: RuntimeInfo,
}

/// Which runtime started the containers: ours (`isocheck`) or an OCI
/// runtime binary given by `isocheck run --runtime`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeInfo {
    pub name: String,
    /// The binary ("" for ours: the runtime is built into isocheck).
    pub path: String,
    /// Its `--version` first line, or isocheck's version for ours.
    pub version: String,
}

impl Default for RuntimeInfo {
    fn default() -> Self {
        RuntimeInfo {
            name: "isocheck".into(),
            path: String::new(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// A report file that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ReportError {
    pub path: std::path::PathBuf,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Unsupported,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioResult {
    pub id: String,
    pub guarantee: String,
    /// The one protection the control switches off (kebab-case name of
    /// `isocheck_runtime::Protection`); empty in reports that predate it.
    #[serde(default)]
    pub protection: String,
    pub verdict: Verdict,
    /// The control run (isolation switched off) showed the violation.
    pub control_violation_observed: bool,
    /// `{"run": {...}, "control": {...}}`: what was seen in each run.
    pub observed: serde_json::Value,
    /// The expectations checked, as text, for each run.
    pub expected: serde_json::Value,
    pub duration_ms: u64,
    /// Why it failed or is unsupported; `None` on a pass.
    pub reason: Option<String>,
}

impl Environment {
    /// Reads the environment of the machine the suite runs on.
    pub fn gather(cgroup_mode: &str) -> Environment {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into());
        let distro = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines().find_map(|l| {
                    l.strip_prefix("PRETTY_NAME=")
                        .map(|v| v.trim_matches('"').to_string())
                })
            })
            .unwrap_or_else(|| "unknown".into());
        Environment {
            kernel,
            cgroup_mode: cgroup_mode.to_string(),
            distro,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
            isocheck_version: env!("CARGO_PKG_VERSION").to_string(),
            runtime: RuntimeInfo::default(),
        }
    }
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Unsupported => "unsupported",
        }
    }
}

impl Report {
    /// Reads a JSON report written by `isocheck run --json`.
    pub fn load(path: &std::path::Path) -> Result<Report, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| ReportError {
            path: path.to_owned(),
            message: format!("not an isocheck JSON report: {e}"),
        })
    }

    pub fn failed(&self) -> usize {
        self.count(Verdict::Fail)
    }

    pub fn count(&self, verdict: Verdict) -> usize {
        self.results.iter().filter(|r| r.verdict == verdict).count()
    }

    /// The table for people: passes and fails first, unsupported shown apart
    /// so it never hides a fail.
    pub fn to_table(&self) -> String {
        let env = &self.environment;
        let mut out = format!(
            "isocheck {} on {} (kernel {}, cgroup {}, {} cpus)\n",
            env.isocheck_version, env.distro, env.kernel, env.cgroup_mode, env.cpus
        );
        if env.runtime != RuntimeInfo::default() {
            let r = &env.runtime;
            out.push_str(&format!(
                "containers started by {} ({}, {})\n",
                r.name, r.path, r.version
            ));
        }
        out.push('\n');
        let width = self
            .results
            .iter()
            .map(|r| r.id.len())
            .max()
            .unwrap_or(2)
            .max(2);
        out.push_str(&format!(
            "{:<width$}  {:<7}  {:<7}  {:>8}  detail\n",
            "id", "verdict", "control", "time"
        ));
        let (supported, unsupported): (Vec<_>, Vec<_>) = self
            .results
            .iter()
            .partition(|r| r.verdict != Verdict::Unsupported);
        for r in &supported {
            let control = if r.control_violation_observed {
                "seen"
            } else {
                "NOT seen"
            };
            let detail = match r.verdict {
                Verdict::Pass => r.guarantee.clone(),
                _ => r.reason.clone().unwrap_or_default(),
            };
            out.push_str(&format!(
                "{:<width$}  {:<7}  {:<7}  {:>6}ms  {}\n",
                r.id,
                r.verdict.label(),
                control,
                r.duration_ms,
                detail
            ));
        }
        if !unsupported.is_empty() {
            out.push_str("\nunsupported here:\n");
            for r in &unsupported {
                out.push_str(&format!(
                    "{:<width$}  {}\n",
                    r.id,
                    r.reason.as_deref().unwrap_or("no reason given")
                ));
            }
        }
        out.push_str(&format!(
            "\n{} passed, {} failed, {} unsupported in {:.1} s\n",
            self.count(Verdict::Pass),
            self.failed(),
            self.count(Verdict::Unsupported),
            self.wall_ms as f64 / 1000.0
        ));
        out
    }

    /// TAP version 13 (runc's, crun's and runtime-tools' suites speak it):
    /// the plan, `ok N - id` or `not ok N - id` with a YAML block carrying
    /// the reason, `# SKIP reason` for unsupported, and `Bail out!` when the
    /// run was interrupted. YAML strings are written as JSON strings, which
    /// YAML reads as they are.
    pub fn to_tap(&self) -> String {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut out = format!("TAP version 13\n1..{}\n", self.results.len());
        for (i, r) in self.results.iter().enumerate() {
            let n = i + 1;
            let reason = r.reason.as_deref().unwrap_or("no reason given");
            match r.verdict {
                Verdict::Pass => out.push_str(&format!("ok {n} - {}\n", r.id)),
                Verdict::Unsupported => {
                    out.push_str(&format!("ok {n} - {} # SKIP {}\n", r.id, one_line(reason)))
                }
                Verdict::Fail => {
                    out.push_str(&format!("not ok {n} - {}\n", r.id));
                    out.push_str("  ---\n");
                    out.push_str(&format!("  message: {}\n", quoted(reason)));
                    out.push_str(&format!("  guarantee: {}\n", quoted(&r.guarantee)));
                    out.push_str(&format!(
                        "  control_violation_observed: {}\n",
                        r.control_violation_observed
                    ));
                    out.push_str(&format!("  duration_ms: {}\n", r.duration_ms));
                    out.push_str("  ...\n");
                }
            }
        }
        if self.interrupted {
            out.push_str("Bail out! interrupted by a signal; the rest did not run\n");
        }
        out
    }

    /// JUnit XML: one test case per guarantee; unsupported is "skipped"
    /// with its reason.
    pub fn to_junit(&self) -> String {
        use quick_junit::{
            NonSuccessKind, Property, Report as JReport, TestCase, TestCaseStatus, TestSuite,
        };
        let mut suite = TestSuite::new("isocheck");
        let env = &self.environment;
        for (k, v) in [
            ("kernel", &env.kernel),
            ("cgroup_mode", &env.cgroup_mode),
            ("distro", &env.distro),
        ] {
            suite.add_property(Property::new(k, v.as_str()));
        }
        for r in &self.results {
            let status = match r.verdict {
                Verdict::Pass => TestCaseStatus::success(),
                Verdict::Fail => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
                Verdict::Unsupported => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(r.reason.clone().unwrap_or_default());
                    s
                }
            };
            let mut case = TestCase::new(r.id.as_str(), status);
            case.set_classname("isocheck.guarantees")
                .set_time(std::time::Duration::from_millis(r.duration_ms))
                .set_system_out(serde_json::to_string_pretty(&r.observed).unwrap_or_default());
            suite.add_test_case(case);
        }
        let mut report = JReport::new("isocheck");
        report.add_test_suite(suite);
        report.to_string().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Report {
        Report {
            environment: Environment {
                kernel: "6.18.0".into(),
                cgroup_mode: "hybrid".into(),
                distro: "Debian GNU/Linux 12 (bookworm)".into(),
                cpus: 2,
                isocheck_version: "0.1.0".into(),
                runtime: Default::default(),
            },
            results: vec![
                ScenarioResult {
                    id: "pid-namespace-init".into(),
                    guarantee: "The first process is PID 1 & sees only its own.".into(),
                    protection: "pid-namespace".into(),
                    verdict: Verdict::Pass,
                    control_violation_observed: true,
                    observed: json!({"run": {"probe": {"pid": 1}}, "control": {"probe": {"pid": 4242}}}),
                    expected: json!({"run": ["probe.pid == 1"], "control": ["probe.pid != 1"]}),
                    duration_ms: 42,
                    reason: None,
                },
                ScenarioResult {
                    id: "memory-oom-kill".into(),
                    guarantee: "A memory hog is OOM-killed at the limit.".into(),
                    protection: "pid-namespace".into(),
                    verdict: Verdict::Fail,
                    control_violation_observed: true,
                    observed: json!({}),
                    expected: json!({}),
                    duration_ms: 900,
                    reason: Some("run: exit.signal == 9: saw null".into()),
                },
                ScenarioResult {
                    id: "time-namespace".into(),
                    guarantee: "Clocks carry offsets.".into(),
                    protection: "pid-namespace".into(),
                    verdict: Verdict::Unsupported,
                    control_violation_observed: false,
                    observed: json!({}),
                    expected: json!({}),
                    duration_ms: 0,
                    reason: Some("this kernel has no time namespace".into()),
                },
            ],
            interrupted: false,
            wall_ms: 2345,
        }
    }

    #[test]
    fn json_has_exactly_the_contract_fields() {
        let v = serde_json::to_value(sample()).unwrap();
        let mut env: Vec<_> = v["environment"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        env.sort();
        assert_eq!(
            env,
            [
                "cgroup_mode",
                "cpus",
                "distro",
                "isocheck_version",
                "kernel",
                "runtime"
            ]
        );
        let mut fields: Vec<_> = v["results"][0]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "control_violation_observed",
                "duration_ms",
                "expected",
                "guarantee",
                "id",
                "observed",
                "protection",
                "reason",
                "verdict"
            ]
        );
        assert_eq!(v["results"][2]["verdict"], "unsupported");
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn table_snapshot() {
        insta::assert_snapshot!(sample().to_table());
    }

    #[test]
    fn tap_snapshot() {
        insta::assert_snapshot!(sample().to_tap());
    }

    #[test]
    fn tap_of_an_interrupted_run_bails_out() {
        let mut report = sample();
        report.results.truncate(1);
        report.interrupted = true;
        assert_eq!(
            report.to_tap(),
            "TAP version 13\n1..1\nok 1 - pid-namespace-init\nBail out! interrupted by a signal; the rest did not run\n"
        );
    }

    #[test]
    fn interrupted_is_top_level_and_old_reports_still_load() {
        let mut report = sample();
        report.interrupted = true;
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["interrupted"], true);
        let mut old = v.clone();
        old.as_object_mut().unwrap().remove("interrupted");
        let back: Report = serde_json::from_value(old).unwrap();
        assert!(!back.interrupted);
    }

    #[test]
    fn junit_snapshot() {
        insta::assert_snapshot!(sample().to_junit());
    }
}

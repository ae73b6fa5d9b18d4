//! The report: one result per scenario, for people (a table), for machines
//! (JSON, the contract other tools and `isocheck matrix` rely on) and for CI
//! (JUnit XML).

use serde::{Deserialize, Serialize};

/// The JSON report. Field names are a contract (DESIGN.md); do not rename.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub environment: Environment,
    pub results: Vec<ScenarioResult>,
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

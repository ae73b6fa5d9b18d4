//! The catalog of guarantees: which protection each scenario proves, the
//! protections no scenario proves yet, and the tables people read
//! (`isocheck list --protections`, `isocheck list --markdown`, the README).

use crate::report::{Report, ReportError};
use crate::scenario::{self, Scenario, ScenarioError};
use isocheck_runtime::Protection;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    #[arg(long)]
    pub scenarios: Option<PathBuf>,
    /// Every protection of the runtime with the scenarios whose control
    /// switches it off (and their verdicts, given --report).
    #[arg(long)]
    pub protections: bool,
    /// A JSON report (`isocheck run --json`) whose verdicts to show.
    #[arg(long, requires = "protections")]
    pub report: Option<PathBuf>,
    /// The guarantee table in Markdown (README.md's).
    #[arg(long, conflicts_with = "protections")]
    pub markdown: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// `isocheck list`: ids and sentences, or the protections' table, or the
/// README's Markdown table, on stdout.
pub fn list(args: &ListArgs) -> Result<(), ListError> {
    let dir = args.scenarios.clone().unwrap_or_else(scenario::default_dir);
    let all = scenario::load_dir(&dir)?;
    if args.markdown {
        print!("{}", markdown_table(&all));
    } else if args.protections {
        let verdicts = match &args.report {
            Some(path) => Report::load(path)?
                .results
                .into_iter()
                .map(|r| (r.id, r.verdict))
                .collect(),
            None => Default::default(),
        };
        print!("{}", coverage_table(&all, &verdicts));
    } else {
        let width = all.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for s in all {
            println!("{:<width$}  {}", s.id, s.guarantee);
        }
    }
    Ok(())
}

/// Each protection with the ids of the scenarios whose control switches it
/// off. Every protection is a key, those no scenario proves with an empty list.
pub fn coverage(scenarios: &[Scenario]) -> BTreeMap<Protection, Vec<&str>> {
    let mut map: BTreeMap<Protection, Vec<&str>> =
        Protection::all().map(|p| (p, Vec::new())).collect();
    for s in scenarios {
        map.entry(s.control.switch_off)
            .or_default()
            .push(s.id.as_str());
    }
    map
}

/// `isocheck list --protections`: one line per protection, its scenarios and
/// (when a report is given) their verdicts.
pub fn coverage_table(
    scenarios: &[Scenario],
    verdicts: &BTreeMap<String, crate::report::Verdict>,
) -> String {
    let cov = coverage(scenarios);
    let width = Protection::all().map(|p| p.name().len()).max().unwrap_or(0);
    let mut out = String::new();
    for (p, ids) in &cov {
        let list = if ids.is_empty() {
            "(no scenario: unproven)".to_string()
        } else {
            ids.iter()
                .map(|id| match verdicts.get(*id) {
                    Some(v) => format!("{id} ({})", v.label()),
                    None => id.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!("{:<width$}  {list}\n", p.name()));
    }
    out
}

/// The README's guarantee table: one row per scenario, its protection and
/// how the control switches it off. A test keeps README.md equal to it.
pub fn markdown_table(scenarios: &[Scenario]) -> String {
    let mut out =
        String::from("| id | guarantee | observed | control switches off |\n|---|---|---|---|\n");
    for s in scenarios {
        let how = match &s.control.how {
            Some(how) => format!("`{}` ({how})", s.control.switch_off),
            None => format!("`{}`", s.control.switch_off),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {how} |\n",
            s.id,
            s.guarantee.replace('|', "\\|"),
            s.observes.replace('|', "\\|"),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn shipped() -> Vec<Scenario> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        crate::scenario::load_dir(&dir).expect("shipped scenarios load")
    }

    #[test]
    fn every_protection_has_a_scenario() {
        let all = shipped();
        let unproven: Vec<&str> = coverage(&all)
            .into_iter()
            .filter(|(_, ids)| ids.is_empty())
            .map(|(p, _)| p.name())
            .collect();
        assert!(
            unproven.is_empty(),
            "protections no scenario's control switches off: {unproven:?}"
        );
    }

    #[test]
    fn coverage_lists_unproven_protections() {
        let text = r#"
id = "demo"
guarantee = "A demo."
observes = "nothing"
kind = "process"
[run]
probe = ["pids"]
expect = [{ field = "probe.pid", eq = 1 }]
[control]
switch_off = "pid-namespace"
expect = [{ field = "probe.pid", ne = 1 }]
"#;
        let s = Scenario::parse(Path::new("demo.toml"), text).expect("loads");
        let cov = coverage(std::slice::from_ref(&s));
        assert_eq!(cov[&Protection::PidNamespace], vec!["demo"]);
        assert!(cov[&Protection::GroupKill].is_empty());
        let table = coverage_table(&[s], &BTreeMap::new());
        assert!(table.contains("group-kill"), "{table}");
        assert!(table.contains("(no scenario: unproven)"), "{table}");
    }

    #[test]
    fn readme_has_the_current_guarantee_table() {
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
                .expect("README.md");
        let table = markdown_table(&shipped());
        assert!(
            readme.contains(&table),
            "README.md's guarantee table is stale: paste `isocheck list --markdown`:\n{table}"
        );
    }
}

//! The short text summary of a bench run: each id's median and p95, read
//! from criterion's saved files, and the start-latency ratios with their
//! targets.
//!
//! criterion saves, per bench id, `<dir>/<id>/new/estimates.json` (the
//! median's point estimate, in ns) and `new/sample.json` (`iters[i]`
//! iterations took `times[i]` ns in sample i). The p95 is taken over the
//! per-iteration times `times[i] / iters[i]` (nearest rank).

use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} holds no samples")]
    NoSamples { path: PathBuf },
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Debug, Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct Sample {
    iters: Vec<f64>,
    times: Vec<f64>,
}

/// One bench id's figures, in nanoseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub id: String,
    pub median_ns: f64,
    pub p95_ns: f64,
    pub samples: usize,
}

/// The ids in the order the summary lists them; others follow by name.
pub const KNOWN_IDS: [&str; 27] = [
    "start/floor",
    "start/floor-mounts",
    "start/full",
    "start/full-net",
    "start/sustained",
    "cli/isocheck",
    "ns/none",
    "ns/pid",
    "ns/mount",
    "ns/uts",
    "ns/ipc",
    "ns/net",
    "ns/cgroup",
    "cgroup/create-destroy",
    "cgroup/add-process",
    "rootfs/setup",
    "net/attach",
    "net/detach",
    "caps/drop",
    "peers/runc",
    "peers/crun",
    "peers/youki",
    "peers/bwrap",
    "peers/unshare-chroot",
    "scale/running/1",
    "scale/running/10",
    "scale/running/100",
];

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SummaryError> {
    let bytes = std::fs::read(path).map_err(|source| SummaryError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SummaryError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Nearest-rank percentile (`q` in 0..=1) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Read one id's median and p95 from `<criterion_dir>/<id>/new/`.
pub fn load(criterion_dir: &Path, id: &str) -> Result<Measurement, SummaryError> {
    let new = criterion_dir.join(id).join("new");
    let estimates: Estimates = read_json(&new.join("estimates.json"))?;
    let sample_path = new.join("sample.json");
    let sample: Sample = read_json(&sample_path)?;
    let per_iteration: Vec<f64> = sample
        .times
        .iter()
        .zip(&sample.iters)
        .filter(|(_, iters)| **iters > 0.0)
        .map(|(time, iters)| time / iters)
        .collect();
    let p95_ns =
        percentile(&per_iteration, 0.95).ok_or(SummaryError::NoSamples { path: sample_path })?;
    Ok(Measurement {
        id: id.to_string(),
        median_ns: estimates.median.point_estimate,
        p95_ns,
        samples: per_iteration.len(),
    })
}

/// Every id under the criterion dir that has `new/estimates.json`, known
/// ids first in `KNOWN_IDS` order.
pub fn discover_ids(criterion_dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    walk(criterion_dir, criterion_dir, 0, &mut found);
    found.sort_by_key(|id| {
        (
            KNOWN_IDS
                .iter()
                .position(|k| k == id)
                .unwrap_or(KNOWN_IDS.len()),
            id.clone(),
        )
    });
    found
}

fn walk(base: &Path, dir: &Path, depth: usize, found: &mut Vec<String>) {
    if depth > 4 {
        return;
    }
    if dir.join("new").join("estimates.json").is_file() {
        if let Ok(rel) = dir.strip_prefix(base) {
            found.push(rel.to_string_lossy().into_owned());
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if name == "new" || name == "base" || name == "change" || name == "report" {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            walk(base, &entry.path(), depth + 1, found);
        }
    }
}

/// A target for a ratio of medians.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    AtMost(f64),
    AtLeast(f64),
    MoreThan(f64),
}

impl Target {
    pub fn met(self, value: f64) -> bool {
        match self {
            Target::AtMost(t) => value <= t,
            Target::AtLeast(t) => value >= t,
            Target::MoreThan(t) => value > t,
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::AtMost(t) => write!(f, "<= {t}"),
            Target::AtLeast(t) => write!(f, ">= {t}"),
            Target::MoreThan(t) => write!(f, "> {t}"),
        }
    }
}

/// numerator ÷ denominator (medians) against a target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio {
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub target: Target,
}

/// The start-latency ratios and their targets (issues 7 and 17).
pub const RATIOS: [Ratio; 7] = [
    Ratio {
        numerator: "start/full",
        denominator: "start/floor",
        target: Target::AtMost(1.5),
    },
    Ratio {
        numerator: "peers/runc",
        denominator: "start/full",
        target: Target::AtLeast(8.0),
    },
    Ratio {
        numerator: "peers/bwrap",
        denominator: "start/full",
        target: Target::MoreThan(1.0),
    },
    Ratio {
        numerator: "start/full-net",
        denominator: "start/floor",
        target: Target::AtMost(2.5),
    },
    Ratio {
        numerator: "scale/running/100",
        denominator: "scale/running/1",
        target: Target::AtMost(1.3),
    },
    // Teardown deferred off the start path must still be paid somewhere.
    Ratio {
        numerator: "start/sustained",
        denominator: "start/full",
        target: Target::AtMost(1.3),
    },
    // `isocheck container run` as a whole process no slower than bwrap.
    Ratio {
        numerator: "peers/bwrap",
        denominator: "cli/isocheck",
        target: Target::AtLeast(1.0),
    },
];

/// A ratio's value and verdict, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Value { value: f64, met: bool },
    NotAvailable(String),
}

/// Ratios with no target, printed under the targets. `start/floor-mounts`
/// is the floor plus `start/full`'s root mounts made bare (`bare_root`):
/// the least any runtime that makes those mounts can reach here.
pub const REFERENCES: [(&str, &str); 1] = [("start/floor-mounts", "start/floor")];

pub fn evaluate(ratio: &Ratio, measurements: &[Measurement]) -> Outcome {
    match ratio_of(ratio.numerator, ratio.denominator, measurements) {
        Ok(value) => Outcome::Value {
            value,
            met: ratio.target.met(value),
        },
        Err(why) => Outcome::NotAvailable(why),
    }
}

/// numerator's median ÷ denominator's, or why there is none.
fn ratio_of(
    numerator: &str,
    denominator: &str,
    measurements: &[Measurement],
) -> Result<f64, String> {
    let find = |id: &str| measurements.iter().find(|m| m.id == id);
    let missing: Vec<&str> = [numerator, denominator]
        .into_iter()
        .filter(|id| find(id).is_none())
        .collect();
    match (find(numerator), find(denominator)) {
        (Some(num), Some(den)) if den.median_ns > 0.0 => Ok(num.median_ns / den.median_ns),
        (Some(_), Some(_)) => Err(format!("{denominator} has a zero median")),
        _ => Err(format!("no result for {}", missing.join(", "))),
    }
}

/// Milliseconds with three decimals: start latencies live between 0.1 and
/// 100 ms.
fn ms(ns: f64) -> String {
    format!("{:.3} ms", ns / 1e6)
}

/// The whole summary as text.
pub fn render(measurements: &[Measurement], skipped: &[(String, String)]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "isocheck bench summary (medians and p95 per start)");
    let _ = writeln!(
        out,
        "{:<24} {:>12} {:>12} {:>8}",
        "id", "median", "p95", "samples"
    );
    for m in measurements {
        let _ = writeln!(
            out,
            "{:<24} {:>12} {:>12} {:>8}",
            m.id,
            ms(m.median_ns),
            ms(m.p95_ns),
            m.samples
        );
    }
    for (id, reason) in skipped {
        let _ = writeln!(out, "{id:<24} skipped: {reason}");
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:>8} {:>8}  verdict",
        "ratio of medians", "value", "target"
    );
    for ratio in &RATIOS {
        let name = format!("{} / {}", ratio.numerator, ratio.denominator);
        let target = ratio.target.to_string();
        match evaluate(ratio, measurements) {
            Outcome::Value { value, met } => {
                let verdict = if met { "met" } else { "MISSED" };
                let _ = writeln!(out, "{name:<40} {value:>8.2} {target:>8}  {verdict}");
            }
            Outcome::NotAvailable(why) => {
                let _ = writeln!(out, "{name:<40} {:>8} {target:>8}  n/a ({why})", "-");
            }
        }
    }
    for (numerator, denominator) in REFERENCES {
        let name = format!("{numerator} / {denominator}");
        match ratio_of(numerator, denominator, measurements) {
            Ok(value) => {
                let _ = writeln!(out, "{name:<40} {value:>8.2} {:>8}  reference", "-");
            }
            Err(why) => {
                let _ = writeln!(out, "{name:<40} {:>8} {:>8}  n/a ({why})", "-", "-");
            }
        }
    }
    out
}

/// Load every id found under the criterion dir; ids whose files do not
/// parse are reported as skipped with the error.
pub fn collect(criterion_dir: &Path) -> (Vec<Measurement>, Vec<(String, String)>) {
    let mut measurements = Vec::new();
    let mut broken = Vec::new();
    for id in discover_ids(criterion_dir) {
        match load(criterion_dir, &id) {
            Ok(m) => measurements.push(m),
            Err(e) => broken.push((id, e.to_string())),
        }
    }
    (measurements, broken)
}

/// File (in the criterion dir) where the bench run lists the ids it
/// skipped and why, so the summary can say "n/a" with the reason.
pub const SKIPPED_FILE: &str = "isocheck-skipped.json";

pub fn write_skipped(
    criterion_dir: &Path,
    skipped: &[(String, String)],
) -> Result<(), SummaryError> {
    let path = criterion_dir.join(SKIPPED_FILE);
    std::fs::create_dir_all(criterion_dir).map_err(|source| SummaryError::Read {
        path: criterion_dir.to_path_buf(),
        source,
    })?;
    let text = serde_json::to_string_pretty(skipped).map_err(|source| SummaryError::Parse {
        path: path.clone(),
        source,
    })?;
    std::fs::write(&path, text).map_err(|source| SummaryError::Read { path, source })
}

/// The skipped ids of the last bench run (none if the file is absent).
pub fn read_skipped(criterion_dir: &Path) -> Vec<(String, String)> {
    read_json(&criterion_dir.join(SKIPPED_FILE)).unwrap_or_default()
}

/// Measurements and skips of the last run: ids skipped in the last run are
/// dropped from the measurements even if an older result is on disk.
pub fn last_run(criterion_dir: &Path) -> (Vec<Measurement>, Vec<(String, String)>) {
    let mut skipped = read_skipped(criterion_dir);
    let (measurements, broken) = collect(criterion_dir);
    let measurements = measurements
        .into_iter()
        .filter(|m| !skipped.iter().any(|(id, _)| *id == m.id))
        .collect();
    skipped.extend(broken);
    (measurements, skipped)
}

/// criterion's output dir: $CRITERION_HOME, else `<target>/criterion` with
/// $CARGO_TARGET_DIR or `<workspace>/target` (what criterion itself uses
/// under cargo).
pub fn criterion_dir(workspace: &Path) -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("criterion")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Write criterion-shaped files for one id.
    fn write_id(dir: &Path, id: &str, median_ns: f64, iters: &[f64], times: &[f64]) {
        let new = dir.join(id).join("new");
        std::fs::create_dir_all(&new).expect("mkdir");
        let estimate = |v: f64| {
            json!({"confidence_interval": {"confidence_level": 0.95, "lower_bound": v, "upper_bound": v},
                   "point_estimate": v, "standard_error": 0.0})
        };
        let estimates = json!({
            "mean": estimate(median_ns * 1.1), "median": estimate(median_ns),
            "median_abs_dev": estimate(1.0), "slope": null, "std_dev": estimate(1.0)
        });
        std::fs::write(new.join("estimates.json"), estimates.to_string()).expect("write");
        let sample = json!({"sampling_mode": "Flat", "iters": iters, "times": times});
        std::fs::write(new.join("sample.json"), sample.to_string()).expect("write");
    }

    #[test]
    fn skipped_ids_hide_stale_results_and_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_id(dir.path(), "start/floor", 2.0e6, &[1.0], &[2.0e6]);
        write_id(dir.path(), "peers/crun", 9.0e6, &[1.0], &[9.0e6]);
        write_skipped(
            dir.path(),
            &[("peers/crun".into(), "refuses hybrid".into())],
        )
        .expect("write");
        let (ms, skipped) = last_run(dir.path());
        assert_eq!(
            ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
            ["start/floor"]
        );
        assert_eq!(
            skipped,
            [("peers/crun".to_string(), "refuses hybrid".to_string())]
        );
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.95), Some(95.0));
        assert_eq!(percentile(&values, 0.5), Some(50.0));
        assert_eq!(percentile(&[3.0, 1.0], 0.95), Some(3.0));
        assert_eq!(percentile(&[7.0], 0.95), Some(7.0));
        assert_eq!(percentile(&[], 0.95), None);
    }

    #[test]
    fn load_reads_median_and_p95_of_per_iteration_times() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 20 samples of 2 iterations each; per-iteration times 1..=20 ms,
        // so the nearest-rank p95 is the 19th: 19 ms.
        let iters = vec![2.0; 20];
        let times: Vec<f64> = (1..=20).map(|i| 2.0 * f64::from(i) * 1e6).collect();
        write_id(dir.path(), "start/floor", 2.5e6, &iters, &times);
        let m = load(dir.path(), "start/floor").expect("load");
        assert_eq!(m.median_ns, 2.5e6);
        assert_eq!(m.p95_ns, 19e6);
        assert_eq!(m.samples, 20);
    }

    #[test]
    fn load_names_the_missing_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = load(dir.path(), "start/full").expect_err("missing");
        assert!(
            err.to_string().contains("start/full/new/estimates.json"),
            "{err}"
        );
    }

    #[test]
    fn discover_finds_nested_ids_in_known_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        for id in ["scale/running/10", "zzz/other", "peers/runc", "start/floor"] {
            write_id(dir.path(), id, 1.0, &[1.0], &[1.0]);
        }
        // criterion's HTML report dirs must not count as ids.
        std::fs::create_dir_all(dir.path().join("start/report")).expect("mkdir");
        assert_eq!(
            discover_ids(dir.path()),
            ["start/floor", "peers/runc", "scale/running/10", "zzz/other"]
        );
    }

    fn m(id: &str, median_ns: f64) -> Measurement {
        Measurement {
            id: id.into(),
            median_ns,
            p95_ns: median_ns,
            samples: 1,
        }
    }

    #[test]
    fn ratios_compare_medians_against_their_targets() {
        let ms = [
            m("start/floor", 2.0e6),
            m("start/full", 2.5e6),
            m("peers/runc", 30.0e6),
            m("peers/bwrap", 2.0e6),
        ];
        // 2.5 / 2.0 = 1.25 <= 1.5
        assert_eq!(
            evaluate(&RATIOS[0], &ms),
            Outcome::Value {
                value: 1.25,
                met: true
            }
        );
        // 30 / 2.5 = 12 >= 8
        assert_eq!(
            evaluate(&RATIOS[1], &ms),
            Outcome::Value {
                value: 12.0,
                met: true
            }
        );
        // 2.0 / 2.5 = 0.8, not > 1
        assert_eq!(
            evaluate(&RATIOS[2], &ms),
            Outcome::Value {
                value: 0.8,
                met: false
            }
        );
        assert_eq!(
            evaluate(&RATIOS[3], &ms),
            Outcome::NotAvailable("no result for start/full-net".into())
        );
        assert_eq!(
            evaluate(&RATIOS[4], &ms),
            Outcome::NotAvailable("no result for scale/running/100, scale/running/1".into())
        );
    }

    #[test]
    fn targets_have_the_right_edges() {
        assert!(Target::AtMost(1.5).met(1.5));
        assert!(!Target::AtMost(1.5).met(1.51));
        assert!(Target::AtLeast(8.0).met(8.0));
        assert!(!Target::MoreThan(1.0).met(1.0));
    }

    #[test]
    fn render_shows_met_missed_and_na() {
        let ms = [m("start/floor", 2.0e6), m("start/full", 4.0e6)];
        let text = render(&ms, &[("peers/crun".into(), "refused".into())]);
        assert!(text.contains("start/floor"), "{text}");
        assert!(text.contains("2.000 ms"), "{text}");
        assert!(text.contains("MISSED"), "{text}"); // 4/2 = 2 > 1.5
        assert!(text.contains("n/a (no result for peers/runc)"), "{text}");
        assert!(
            text.contains("peers/crun") && text.contains("skipped: refused"),
            "{text}"
        );
        assert!(
            text.contains("start/floor-mounts / start/floor")
                && text.contains("n/a (no result for start/floor-mounts)"),
            "{text}"
        );
        let ms = [m("start/floor", 2.0e6), m("start/floor-mounts", 2.5e6)];
        let text = render(&ms, &[]);
        let line = text
            .lines()
            .find(|l| l.starts_with("start/floor-mounts / start/floor"))
            .unwrap_or_default();
        assert!(
            line.contains("1.25") && line.ends_with("reference"),
            "{text}"
        );
    }
}

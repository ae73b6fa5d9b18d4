//! `isocheck matrix`: many JSON reports (one per kernel leg) merged into one
//! guarantee × leg table, legs ordered by kernel version, as text and HTML.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Report, Verdict};

/// One column: a leg (or report file) and its environment.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixLeg {
    pub name: String,
    pub kernel: String,
    pub cgroup_mode: String,
    pub pass: usize,
    pub fail: usize,
    pub unsupported: usize,
}

/// One cell: what a guarantee's scenario concluded on a leg.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCell {
    pub verdict: Verdict,
    pub reason: Option<String>,
}

/// One row: a scenario, with a cell per leg (`None`: not run there).
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixRow {
    pub id: String,
    pub guarantee: String,
    pub cells: Vec<Option<MatrixCell>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub legs: Vec<MatrixLeg>,
    pub rows: Vec<MatrixRow>,
}

/// The numeric release of a `uname -r` string: "6.1.0-37-amd64" → [6, 1, 0],
/// "6.12.48+deb13-amd64" → [6, 12, 48]. Missing parts count as 0.
pub fn kernel_release(kernel: &str) -> [u32; 3] {
    let mut out = [0; 3];
    let release = kernel.split(['-', '+']).next().unwrap_or("");
    for (slot, part) in out.iter_mut().zip(release.split('.')) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        *slot = digits.parse().unwrap_or(0);
    }
    out
}

/// Order by kernel release; unparsable kernels ("unknown") sort as 0.0.0.
pub fn compare_kernels(a: &str, b: &str) -> Ordering {
    kernel_release(a).cmp(&kernel_release(b))
}

/// Within one kernel, columns go v1, hybrid, v2 (old layout to new).
fn mode_rank(mode: &str) -> u8 {
    match mode {
        "v1" => 0,
        "hybrid" => 1,
        "v2" => 2,
        _ => 3,
    }
}

/// "reports/bookworm-6.1-v2.json" → "bookworm-6.1-v2"; leg names unchanged.
fn column_name(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.strip_suffix(".json").unwrap_or(base).to_owned()
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "FAIL",
        Verdict::Unsupported => "unsupported",
    }
}

/// Merge reports into one matrix. Legs are sorted by kernel release, then
/// cgroup mode (further ties keep the order given); rows by scenario id.
pub fn merge(reports: &[(String, Report)]) -> Matrix {
    let mut order: Vec<usize> = (0..reports.len()).collect();
    order.sort_by(|&a, &b| {
        let (ea, eb) = (&reports[a].1.environment, &reports[b].1.environment);
        compare_kernels(&ea.kernel, &eb.kernel)
            .then_with(|| mode_rank(&ea.cgroup_mode).cmp(&mode_rank(&eb.cgroup_mode)))
    });
    let mut legs = Vec::new();
    let mut rows: BTreeMap<String, MatrixRow> = BTreeMap::new();
    for (col, &i) in order.iter().enumerate() {
        let (name, report) = &reports[i];
        let mut leg = MatrixLeg {
            name: column_name(name),
            kernel: report.environment.kernel.clone(),
            cgroup_mode: report.environment.cgroup_mode.clone(),
            pass: 0,
            fail: 0,
            unsupported: 0,
        };
        for r in &report.results {
            match r.verdict {
                Verdict::Pass => leg.pass += 1,
                Verdict::Fail => leg.fail += 1,
                Verdict::Unsupported => leg.unsupported += 1,
            }
            let row = rows.entry(r.id.clone()).or_insert_with(|| MatrixRow {
                id: r.id.clone(),
                guarantee: r.guarantee.clone(),
                cells: vec![None; reports.len()],
            });
            row.cells[col] = Some(MatrixCell {
                verdict: r.verdict,
                reason: r.reason.clone(),
            });
        }
        legs.push(leg);
    }
    Matrix {
        legs,
        rows: rows.into_values().collect(),
    }
}

impl MatrixLeg {
    fn summary(&self) -> String {
        format!(
            "{}: kernel {}, cgroup {}: {} pass, {} FAIL, {} unsupported",
            self.name, self.kernel, self.cgroup_mode, self.pass, self.fail, self.unsupported
        )
    }
}

impl Matrix {
    /// A plain-text table for terminals and notes, then a summary per leg.
    pub fn to_text(&self) -> String {
        let first = self
            .rows
            .iter()
            .map(|r| r.id.len())
            .chain(["guarantee".len()])
            .max()
            .unwrap_or(0);
        let widths: Vec<usize> = self
            .legs
            .iter()
            .map(|l| l.name.len().max(l.kernel.len()).max("unsupported".len()))
            .collect();
        let mut out = String::new();
        let mut line = |cells: Vec<String>| {
            let mut s = format!("{:<first$}", cells[0]);
            for (cell, w) in cells[1..].iter().zip(&widths) {
                let _ = write!(s, "  {cell:<w$}");
            }
            out.push_str(s.trim_end());
            out.push('\n');
        };
        let header = |f: &dyn Fn(&MatrixLeg) -> String, label: &str| {
            std::iter::once(label.to_owned())
                .chain(self.legs.iter().map(f))
                .collect::<Vec<_>>()
        };
        line(header(&|l| l.name.clone(), "guarantee"));
        line(header(&|l| l.kernel.clone(), ""));
        line(header(&|l| format!("cgroup {}", l.cgroup_mode), ""));
        for row in &self.rows {
            let mut cells = vec![row.id.clone()];
            cells.extend(row.cells.iter().map(|c| match c {
                Some(c) => verdict_word(c.verdict).to_owned(),
                None => "-".to_owned(),
            }));
            line(cells);
        }
        out.push('\n');
        for leg in &self.legs {
            out.push_str(&leg.summary());
            out.push('\n');
        }
        out
    }

    /// A standalone HTML page with the same table; each cell's reason is on
    /// hover (title attribute), every text escaped.
    pub fn to_html(&self) -> String {
        let mut h = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>isocheck kernel matrix</title>\n<style>\n\
             table { border-collapse: collapse; font-family: sans-serif; }\n\
             th, td { border: 1px solid #999; padding: 4px 8px; }\n\
             td.pass { background: #cfc; }\n\
             td.fail { background: #f99; font-weight: bold; }\n\
             td.unsupported { background: #eee; color: #555; }\n\
             </style>\n</head>\n<body>\n<h1>isocheck kernel matrix</h1>\n<table>\n<tr><th>guarantee</th>",
        );
        for leg in &self.legs {
            let _ = write!(
                h,
                "<th>{}<br><small>{} · cgroup {}</small></th>",
                escape(&leg.name),
                escape(&leg.kernel),
                escape(&leg.cgroup_mode)
            );
        }
        h.push_str("</tr>\n");
        for row in &self.rows {
            let _ = write!(
                h,
                "<tr><th title=\"{}\">{}</th>",
                escape(&row.guarantee),
                escape(&row.id)
            );
            for cell in &row.cells {
                match cell {
                    Some(c) => {
                        let class = match c.verdict {
                            Verdict::Pass => "pass",
                            Verdict::Fail => "fail",
                            Verdict::Unsupported => "unsupported",
                        };
                        let title = c
                            .reason
                            .as_deref()
                            .map(|r| format!(" title=\"{}\"", escape(r)))
                            .unwrap_or_default();
                        let _ = write!(
                            h,
                            "<td class=\"{class}\"{title}>{}</td>",
                            verdict_word(c.verdict)
                        );
                    }
                    None => h.push_str("<td>-</td>"),
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n<ul>\n");
        for leg in &self.legs {
            let _ = writeln!(h, "<li>{}</li>", escape(&leg.summary()));
        }
        h.push_str("</ul>\n</body>\n</html>\n");
        h
    }
}

/// Escape text for HTML element content and double- or single-quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Environment, ScenarioResult};

    fn result(id: &str, verdict: Verdict, reason: Option<&str>) -> ScenarioResult {
        ScenarioResult {
            id: id.to_owned(),
            guarantee: format!("guarantee of {id}"),
            protection: "pid-namespace".into(),
            verdict,
            control_violation_observed: verdict == Verdict::Pass,
            observed: serde_json::json!({}),
            expected: serde_json::json!({}),
            duration_ms: 10,
            reason: reason.map(str::to_owned),
        }
    }

    fn report(kernel: &str, mode: &str, results: Vec<ScenarioResult>) -> Report {
        Report {
            environment: Environment {
                kernel: kernel.to_owned(),
                cgroup_mode: mode.to_owned(),
                distro: "Debian".to_owned(),
                cpus: 2,
                isocheck_version: "0.1.0".to_owned(),
            },
            results,
            interrupted: false,
            wall_ms: 0,
        }
    }

    fn sample() -> Vec<(String, Report)> {
        vec![
            (
                "host".to_owned(),
                report(
                    "6.18.0-isocheck",
                    "hybrid",
                    vec![
                        result("memory-oom-kill", Verdict::Pass, None),
                        result("pids-fork-bomb", Verdict::Pass, None),
                    ],
                ),
            ),
            (
                "reports/trixie-6.12-v2.json".to_owned(),
                report(
                    "6.12.48+deb13-amd64",
                    "v2",
                    vec![
                        result("memory-oom-kill", Verdict::Pass, None),
                        result(
                            "cpuset-pinning",
                            Verdict::Fail,
                            Some("ran on cpu 1 <outside> \"0\" & more"),
                        ),
                    ],
                ),
            ),
            (
                "bullseye-5.10-v1".to_owned(),
                report(
                    "5.10.0-32-amd64",
                    "v1",
                    vec![
                        result("memory-oom-kill", Verdict::Pass, None),
                        result(
                            "pids-fork-bomb",
                            Verdict::Unsupported,
                            Some("no pids controller"),
                        ),
                    ],
                ),
            ),
        ]
    }

    #[test]
    fn kernel_releases_parse_debian_uname_strings() {
        assert_eq!(kernel_release("5.10.0-32-amd64"), [5, 10, 0]);
        assert_eq!(kernel_release("6.12.48+deb13-amd64"), [6, 12, 48]);
        assert_eq!(kernel_release("6.1"), [6, 1, 0]);
        assert_eq!(kernel_release("unknown"), [0, 0, 0]);
    }

    #[test]
    fn kernels_order_numerically_not_lexically() {
        let mut ks = vec![
            "6.12.48+deb13-amd64",
            "6.1.0-37-amd64",
            "5.10.0-32-amd64",
            "6.18.0",
        ];
        ks.sort_by(|a, b| compare_kernels(a, b));
        assert_eq!(
            ks,
            [
                "5.10.0-32-amd64",
                "6.1.0-37-amd64",
                "6.12.48+deb13-amd64",
                "6.18.0"
            ]
        );
    }

    #[test]
    fn merge_orders_legs_by_kernel_and_fills_missing_cells() {
        let m = merge(&sample());
        let names: Vec<_> = m.legs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["bullseye-5.10-v1", "trixie-6.12-v2", "host"]);
        let ids: Vec<_> = m.rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["cpuset-pinning", "memory-oom-kill", "pids-fork-bomb"]);
        assert_eq!(m.rows[0].cells[0], None);
        assert_eq!(
            m.rows[0].cells[1].as_ref().map(|c| c.verdict),
            Some(Verdict::Fail)
        );
        assert_eq!(
            (m.legs[1].pass, m.legs[1].fail, m.legs[1].unsupported),
            (1, 1, 0)
        );
    }

    #[test]
    fn same_kernel_legs_go_v1_hybrid_v2() {
        let k = "6.1.0-37-amd64";
        let m = merge(&[
            ("b-v2".to_owned(), report(k, "v2", vec![])),
            ("b-hybrid".to_owned(), report(k, "hybrid", vec![])),
            ("b-v1".to_owned(), report(k, "v1", vec![])),
        ]);
        let names: Vec<_> = m.legs.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["b-v1", "b-hybrid", "b-v2"]);
    }

    #[test]
    fn text_matrix_snapshot() {
        insta::assert_snapshot!(merge(&sample()).to_text());
    }

    #[test]
    fn html_matrix_snapshot() {
        let html = merge(&sample()).to_html();
        assert!(html.contains("title=\"ran on cpu 1 &lt;outside&gt; &quot;0&quot; &amp; more\""));
        assert!(!html.contains("<outside>"));
        insta::assert_snapshot!(html);
    }
}

//! `isocheck matrix`: many JSON reports (one per kernel leg) merged into one
//! guarantee × leg table, legs ordered by kernel version, as text and HTML.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Report, ReportError, Verdict};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("--html: write {}: {source}", path.display())]
    Html {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `isocheck matrix`: the reports merged, as text on stdout and, given
/// `html`, as a page in that file. Each column is named by its file's stem.
pub fn run(reports: &[PathBuf], html: Option<&Path>) -> Result<(), MatrixError> {
    let mut loaded = Vec::new();
    for path in reports {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        loaded.push((name, Report::load(path)?));
    }
    let matrix = merge(&loaded);
    print!("{}", matrix.to_text());
    if let Some(path) = html {
        std::fs::write(path, matrix.to_html()).map_err(|source| MatrixError::Html {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(())
}

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

/// One cell: what a guarantee's scenario concluded on a leg, and the
/// evidence of both halves.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCell {
    pub verdict: Verdict,
    pub reason: Option<String>,
    pub control_seen: bool,
    /// `{"run": {...}, "control": {...}}` as the report has it.
    pub observed: serde_json::Value,
    /// The expectations checked in each half, as text.
    pub expected: serde_json::Value,
}

/// One row: a scenario, with a cell per leg (`None`: not run there).
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixRow {
    pub id: String,
    pub guarantee: String,
    /// The protection the control switches off (empty in old reports).
    pub protection: String,
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
            name: match report.environment.runtime.name.as_str() {
                "isocheck" => column_name(name),
                other => format!("{}/{other}", column_name(name)),
            },
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
                protection: r.protection.clone(),
                cells: vec![None; reports.len()],
            });
            if row.protection.is_empty() {
                row.protection = r.protection.clone();
            }
            row.cells[col] = Some(MatrixCell {
                verdict: r.verdict,
                reason: r.reason.clone(),
                control_seen: r.control_violation_observed,
                observed: r.observed.clone(),
                expected: r.expected.clone(),
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

    /// One self-contained HTML page (no script, no fetch): a row per
    /// guarantee with its sentence and protection, a column per leg with its
    /// environment and counts, and per cell the verdict, the reason of a
    /// failed or unsupported one, and both halves' evidence one click away
    /// (a `details` element). Every text is escaped.
    pub fn to_html(&self) -> String {
        let mut h = String::from(HTML_HEAD);
        h.push_str("<h1>isocheck matrix</h1>\n<p class=\"totals\">");
        let (pass, fail, unsupported) = self.legs.iter().fold((0, 0, 0), |t, l| {
            (t.0 + l.pass, t.1 + l.fail, t.2 + l.unsupported)
        });
        let _ = write!(
            h,
            "{} guarantees on {} legs: {pass} pass, {fail} FAIL, {unsupported} unsupported",
            self.rows.len(),
            self.legs.len()
        );
        h.push_str("</p>\n<table>\n<thead>\n<tr><th>guarantee</th><th>protection</th>");
        for leg in &self.legs {
            let _ = write!(
                h,
                "<th class=\"leg\">{}<br><small>{} · cgroup {}</small>\
                 <div class=\"counts\"><span class=\"pass\">{} pass</span> \
                 <span class=\"fail\">{} FAIL</span> \
                 <span class=\"unsupported\">{} unsupported</span></div></th>",
                escape(&leg.name),
                escape(&leg.kernel),
                escape(&leg.cgroup_mode),
                leg.pass,
                leg.fail,
                leg.unsupported
            );
        }
        h.push_str("</tr>\n</thead>\n<tbody>\n");
        for row in &self.rows {
            let _ = write!(
                h,
                "<tr id=\"{id}\"><th class=\"guarantee\"><code>{id}</code><p>{}</p></th>\
                 <td class=\"protection\"><code>{}</code></td>",
                escape(&row.guarantee),
                escape(&row.protection),
                id = escape(&row.id),
            );
            for (cell, leg) in row.cells.iter().zip(&self.legs) {
                match cell {
                    Some(c) => cell_html(&mut h, c, &leg.name),
                    None => h.push_str("<td class=\"none\">not run</td>"),
                }
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n</table>\n</body>\n</html>\n");
        h
    }
}

const HTML_HEAD: &str = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
<title>isocheck matrix</title>\n<style>\n\
body { font-family: sans-serif; margin: 1em; }\n\
table { border-collapse: collapse; }\n\
th, td { border: 1px solid #999; padding: 4px 8px; vertical-align: top; text-align: left; }\n\
thead th { position: sticky; top: 0; background: #fff; }\n\
th.guarantee p { font-weight: normal; max-width: 28em; margin: 2px 0; }\n\
td.pass { background: #cfc; }\n\
td.fail { background: #f99; }\n\
td.unsupported { background: #eee; color: #444; }\n\
td.none { color: #888; }\n\
.counts span { display: inline-block; margin-right: 4px; font-weight: normal; }\n\
.reason { max-width: 22em; font-size: small; }\n\
details pre { max-width: 40em; max-height: 24em; overflow: auto; font-size: small; background: #fff; }\n\
summary { cursor: pointer; font-weight: bold; }\n\
</style>\n</head>\n<body>\n";

/// A cell: the verdict as the `details` summary, the reason beside it, the
/// evidence of both halves inside.
fn cell_html(h: &mut String, c: &MatrixCell, leg: &str) {
    let class = match c.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Unsupported => "unsupported",
    };
    let _ = write!(
        h,
        "<td class=\"{class}\" data-leg=\"{}\"><details><summary>{}</summary>",
        escape(leg),
        verdict_word(c.verdict)
    );
    for (half, label) in [("run", "run"), ("control", "control (protection off)")] {
        let _ = write!(
            h,
            "<div class=\"half {half}\"><b>{label}</b>: expected<pre>{}</pre>observed<pre>{}</pre></div>",
            escape(&pretty(&c.expected[half])),
            escape(&pretty(&c.observed[half])),
        );
    }
    let _ = write!(
        h,
        "<div>control showed the violation: {}</div></details>",
        if c.control_seen { "yes" } else { "no" }
    );
    if let Some(reason) = &c.reason {
        let _ = write!(h, "<div class=\"reason\">{}</div>", escape(reason));
    }
    h.push_str("</td>");
}

fn pretty(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "(nothing)".to_owned(),
        v => serde_json::to_string_pretty(v).unwrap_or_default(),
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
    use serde_json::{json, Value};
    use std::process::Command;

    fn result(id: &str, verdict: Verdict, reason: Option<&str>) -> ScenarioResult {
        ScenarioResult {
            id: id.to_owned(),
            guarantee: format!("guarantee of {id}"),
            protection: "pid-namespace".into(),
            verdict,
            control_violation_observed: verdict == Verdict::Pass,
            observed: serde_json::json!({"run": {"probe": {"pid": 1}}, "control": {"probe": {"pid": 7}}}),
            expected: serde_json::json!({"run": ["probe.pid eq 1"], "control": ["probe.pid ne 1"]}),
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
                runtime: Default::default(),
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
        assert!(html.contains("ran on cpu 1 &lt;outside&gt; &quot;0&quot; &amp; more"));
        assert!(!html.contains("<outside>"));
        insta::assert_snapshot!(html);
    }

    fn chromium() -> Option<String> {
        let named = std::env::var("ISOCHECK_CHROMIUM").ok();
        named
            .into_iter()
            .chain(["chromium", "chromium-browser", "google-chrome"].map(str::to_owned))
            .find(|b| {
                Command::new(b)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
    }

    /// Finds, in the page, what a reader needs; JSON into #result.
    const QUERY: &str = r#"<script>
    const r = {};
    r.rows = [...document.querySelectorAll('tbody tr')].map(tr => tr.id);
    r.legs = [...document.querySelectorAll('thead th.leg')].map(th => th.innerText);
    const fail = document.querySelector('tr#pids-fork-bomb td.fail');
    r.fail_summary = fail.querySelector('summary').innerText;
    r.fail_reason = fail.querySelector('.reason').innerText;
    const pre = fail.querySelector('.half.control pre:last-of-type');
    r.hidden_before = !pre.checkVisibility();
    fail.querySelector('details').open = true;
    r.shown_after = pre.checkVisibility() && pre.offsetHeight > 0;
    r.control_observed = JSON.parse(pre.innerText);
    r.protection = document.querySelector('tr#pids-fork-bomb td.protection').innerText;
    r.sentence = document.querySelector('tr#pids-fork-bomb th.guarantee p').innerText;
    r.bold_tags = document.querySelectorAll('th.guarantee b').length;
    r.fetching = document.querySelectorAll('link, img, iframe, script[src]').length;
    r.not_run = document.querySelectorAll('td.none').length;
    const out = document.createElement('pre');
    out.id = 'result';
    out.textContent = JSON.stringify(r);
    document.body.appendChild(out);
    </script>"#;

    #[test]
    /// The page as a person sees it: rendered by a real headless Chromium and
    /// queried through its DOM (not by matching the HTML's text). A script
    /// added to a copy of the page (the page itself has none) reads the table,
    /// opens a failed cell's evidence, checks it became visible, and leaves its
    /// findings in the DOM that `chromium --dump-dom` prints. Without a
    /// Chromium the test says so and passes as skipped (`.ci/run` installs one).
    fn the_matrix_page_reads_right_in_a_browser() {
        let Some(browser) = chromium() else {
            eprintln!(
                "skipped: no chromium on PATH (apt-get install chromium, or set ISOCHECK_CHROMIUM)"
            );
            return;
        };
        let mut fail = result(
            "pids-fork-bomb",
            Verdict::Fail,
            Some("forks reached 200 <no limit>"),
        );
        fail.guarantee = "The sentence of pids-fork-bomb <b>with markup</b>.".to_owned();
        fail.protection = "pids-limit".to_owned();
        fail.observed =
            json!({"run": {"probe": {"forks": 31}}, "control": {"probe": {"forks": 200}}});
        let m = merge(&[
            (
                "bookworm-6.1-v2".to_owned(),
                report(
                    "6.1.0-37-amd64",
                    "v2",
                    vec![fail, result("memory-oom-kill", Verdict::Pass, None)],
                ),
            ),
            (
                "host".to_owned(),
                report(
                    "6.18.0",
                    "hybrid",
                    vec![result("memory-oom-kill", Verdict::Pass, None)],
                ),
            ),
        ]);
        let html = m.to_html();
        assert!(!html.contains("<script"), "the page itself runs no script");
        let dir = tempfile::tempdir().expect("browser test");
        let page = dir.path().join("matrix.html");
        std::fs::write(&page, html.replace("</body>", &format!("{QUERY}</body>")))
            .expect("browser test");
        let out = Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--virtual-time-budget=2000",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg("--dump-dom")
            .arg(format!("file://{}", page.display()))
            .output()
            .expect("browser test");
        let dom = String::from_utf8_lossy(&out.stdout);
        let json = dom
            .split_once("<pre id=\"result\">")
            .and_then(|(_, rest)| rest.split_once("</pre>"))
            .map(|(text, _)| {
                text.replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            })
            .unwrap_or_else(|| {
                panic!(
                    "no result in the DOM ({browser} exit {:?}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        let r: Value = serde_json::from_str(&json).expect("browser test");
        assert_eq!(
            r["rows"],
            json!(["memory-oom-kill", "pids-fork-bomb"]),
            "{r}"
        );
        let legs = r["legs"].as_array().expect("browser test");
        assert_eq!(legs.len(), 2, "{r}");
        assert!(
            legs[0].as_str().expect("browser test").contains("1 pass"),
            "{r}"
        );
        assert!(
            legs[0].as_str().expect("browser test").contains("1 FAIL"),
            "{r}"
        );
        assert!(
            legs[1].as_str().expect("browser test").contains("1 pass"),
            "{r}"
        );
        assert_eq!(r["fail_summary"], "FAIL", "{r}");
        assert_eq!(r["fail_reason"], "forks reached 200 <no limit>", "{r}");
        assert_eq!(
            r["hidden_before"], true,
            "evidence shown before a click: {r}"
        );
        assert_eq!(
            r["shown_after"], true,
            "evidence not shown once opened: {r}"
        );
        assert_eq!(
            r["control_observed"],
            json!({"probe": {"forks": 200}}),
            "{r}"
        );
        assert_eq!(r["protection"], "pids-limit", "{r}");
        assert_eq!(
            r["sentence"], "The sentence of pids-fork-bomb <b>with markup</b>.",
            "markup in a sentence must show as text: {r}"
        );
        assert_eq!(r["bold_tags"], 0, "{r}");
        assert_eq!(r["fetching"], 0, "the page must fetch nothing: {r}");
        assert_eq!(r["not_run"], 1, "{r}");
    }
}

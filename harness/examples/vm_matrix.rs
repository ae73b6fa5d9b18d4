//! Merge JSON reports into the kernel matrix without the CLI:
//! `vm_matrix REPORT.json... [--html FILE]`.
use isocheck_harness::matrix::merge;
use isocheck_harness::report::Report;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut reports = Vec::new();
    let mut html = None;
    while let Some(arg) = args.next() {
        if arg == "--html" {
            html = args.next();
            continue;
        }
        let report: Report = serde_json::from_str(&std::fs::read_to_string(&arg)?)?;
        reports.push((arg, report));
    }
    let matrix = merge(&reports);
    print!("{}", matrix.to_text());
    if let Some(path) = html {
        std::fs::write(path, matrix.to_html())?;
    }
    Ok(())
}

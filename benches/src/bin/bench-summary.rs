//! Print each bench id's median and p95 and the issue-7 ratios from
//! criterion's saved results: `cargo run -p isocheck-benches --bin
//! bench-summary [CRITERION_DIR]`.

use isocheck_benches::summary;
use std::path::PathBuf;

fn main() {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| summary::criterion_dir(&isocheck_benches::workspace_root()));
    let (measurements, skipped) = summary::last_run(&dir);
    if measurements.is_empty() {
        eprintln!(
            "no criterion results under {}; run `cargo bench -p isocheck-benches` first",
            dir.display()
        );
        std::process::exit(1);
    }
    print!("{}", summary::render(&measurements, &skipped));
}

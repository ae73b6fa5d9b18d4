//! `isocheck`: the CLI over the scenario runner, the cleanup, one-off
//! containers, the kernel matrix and its merged report. It parses the
//! arguments, installs the log subscriber and calls the library; each
//! subcommand's logic lives in the module named beside it.

use anyhow::Result;
use clap::{Parser, Subcommand};
use isocheck_harness::catalog::{self, ListArgs};
use isocheck_harness::container::{self, ContainerRunArgs};
use isocheck_harness::lanes::{self, LaneArgs};
use isocheck_harness::suite::{self, RunArgs};
use isocheck_harness::vm::batch::{self, VmRunArgs};
use isocheck_harness::{cleanup, matrix, vm};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "isocheck",
    version,
    about = "Verify Linux container isolation on a real kernel"
)]
struct Cli {
    /// More detail on stderr (-v: info, -vv: debug, -vvv: trace). Warnings,
    /// such as a teardown step that failed, are always shown.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the guarantees: ids and one-line sentences.
    List(ListArgs),
    /// Run the guarantee suite (each scenario and its control) and report.
    Run(RunArgs),
    /// Remove what a crashed run of ours left: only temp dirs and cgroups
    /// whose owner record shows a dead owner, and empty temp dirs of such a
    /// run caught before their record; look-alikes are left alone.
    Cleanup,
    /// One container by hand.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// The kernel matrix: the suite in qemu guests with Debian kernels.
    #[command(subcommand)]
    Vm(VmCommand),
    /// A general lane of `isocheck run` (started by it, not by hand).
    #[command(hide = true)]
    Lane(LaneArgs),
    /// Merge JSON reports into one kernel x guarantee table.
    Matrix {
        /// Reports written by `isocheck run --json` or `isocheck vm run`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// Also write the table as HTML (reasons on hover).
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum VmCommand {
    /// The legs: suite, kernel and cgroup mode.
    List,
    /// Boot a leg (or every leg) and run the suite inside.
    Run(VmRunArgs),
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Start one container and wait for it; its exit status becomes ours.
    Run(Box<ContainerRunArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isocheck: error: {}", error_line(&e));
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    Ok(match cli.command {
        Command::List(args) => catalog::list(&args).map(|()| ExitCode::SUCCESS)?,
        Command::Run(args) => suite::run(&args)?,
        Command::Cleanup => cleanup::run()?,
        Command::Lane(args) => lanes::lane_main(&args)?,
        Command::Container(ContainerCommand::Run(args)) => container::run(&args)?,
        Command::Vm(VmCommand::List) => {
            vm::legs::print_list();
            ExitCode::SUCCESS
        }
        Command::Vm(VmCommand::Run(args)) => batch::run(&args)?,
        Command::Matrix { reports, html } => {
            matrix::run(&reports, html.as_deref()).map(|()| ExitCode::SUCCESS)?
        }
    })
}

/// The error and its causes on one line, as `{:#}` would print them, but a
/// cause whose text the line already holds is left out: many library errors
/// print their source in their own message *and* return it as `source()`,
/// which would show the same step, path and errno twice.
fn error_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The runtime reports teardown problems (a cgroup that would not go, a
/// veth or nft table left) through `tracing`; without a subscriber they
/// would vanish.
/// Only stderr: stdout carries the reports (`list`, the table, the matrix).
fn init_logging(verbose: u8) {
    tracing_subscriber::fmt()
        .with_max_level(log_level(verbose))
        .with_writer(std::io::stderr)
        // Colour codes only for a person: CI logs and `2> file` stay plain.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .without_time()
        .init();
}

fn log_level(verbose: u8) -> tracing::Level {
    match verbose {
        0 => tracing::Level::WARN,
        1 => tracing::Level::INFO,
        2 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("read {path}: {source}")]
    struct Repeats {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn warnings_always_and_each_v_adds_a_level() {
        assert_eq!(log_level(0), tracing::Level::WARN);
        assert_eq!(log_level(1), tracing::Level::INFO);
        assert_eq!(log_level(2), tracing::Level::DEBUG);
        assert_eq!(log_level(3), tracing::Level::TRACE);
        assert_eq!(log_level(9), tracing::Level::TRACE);
        // -v is global: it may follow the subcommand.
        let cli = Cli::try_parse_from(["isocheck", "list", "-vv"]).unwrap();
        assert_eq!(cli.verbose, 2);
    }

    #[test]
    fn error_line_prints_each_cause_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let err = anyhow::Error::from(Repeats {
            path: "/x",
            source: io,
        })
        .context("load the scenarios");
        assert_eq!(
            error_line(&err),
            "load the scenarios: read /x: No such file or directory (os error 2)"
        );
        let child = isocheck_runtime::Error::from(isocheck_runtime::ChildError {
            step: isocheck_runtime::Step::VerifyReadonly,
            errno: nix::errno::Errno::ENOENT,
            path: "/data".into(),
        });
        assert_eq!(
            error_line(&anyhow::Error::from(child)),
            "container setup failed in the child: verify_readonly /data: No such file or directory (ENOENT)"
        );
    }
}

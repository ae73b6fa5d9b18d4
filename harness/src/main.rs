//! `isocheck`: the CLI over the scenario runner, the cleanup, one-off
//! containers, the kernel matrix and its merged report.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use isocheck_harness::report::{Environment, Report, Verdict};
use isocheck_harness::runner::Runner;
use isocheck_harness::{cleanup, scenario, standin};
use std::io::{IsTerminal, Write};
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
    List {
        #[arg(long)]
        scenarios: Option<PathBuf>,
        /// Every protection of the runtime with the scenarios whose control
        /// switches it off (and their verdicts, given --report).
        #[arg(long)]
        protections: bool,
        /// A JSON report (`isocheck run --json`) whose verdicts to show.
        #[arg(long, requires = "protections")]
        report: Option<PathBuf>,
        /// The guarantee table in Markdown (README.md's).
        #[arg(long, conflicts_with = "protections")]
        markdown: bool,
    },
    /// Run the guarantee suite (each scenario and its control) and report.
    Run(RunArgs),
    /// Remove what a crashed run of ours left: only temp dirs and cgroups
    /// whose owner record shows a dead owner; look-alikes are left alone.
    Cleanup,
    /// One container by hand.
    #[command(subcommand)]
    Container(ContainerCommand),
    /// The kernel matrix: the suite in qemu guests with Debian kernels.
    #[command(subcommand)]
    Vm(VmCommand),
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
    Run {
        /// A leg from `isocheck vm list`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        leg: Option<String>,
        /// Every leg, one after another.
        #[arg(long)]
        all: bool,
        /// Write the leg's JSON report here (one leg).
        #[arg(long)]
        json: Option<PathBuf>,
        /// With --all: write <leg>.json for each leg in this directory.
        #[arg(long, default_value = "isocheck-reports")]
        out_dir: PathBuf,
        /// Only these scenario ids (comma separated).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Whole-boot deadline per leg, in seconds.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Only these scenario ids (comma separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Directory of scenario TOML files.
    #[arg(long)]
    scenarios: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write JUnit XML here.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Write TAP (version 13) here.
    #[arg(long)]
    tap: Option<PathBuf>,
    /// Run the whole selection N times and report any verdict that changed.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Start one container and wait for it; its exit status becomes ours.
    Run(Box<ContainerRunArgs>),
}

#[derive(Args, Debug)]
struct ContainerRunArgs {
    /// Root filesystem: a directory, a .tar/.tar.gz, or an OCI layout dir.
    /// Default: a minimal root with the probe (and busybox if installed).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Memory limit, e.g. 64M (swap off).
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Pids limit.
    #[arg(long, allow_hyphen_values = true)]
    pids: Option<String>,
    /// CPU quota in CPUs, e.g. 0.5.
    #[arg(long, allow_hyphen_values = true)]
    cpus: Option<String>,
    /// cpuset cpus, e.g. 0 or 0-1.
    #[arg(long, allow_hyphen_values = true)]
    cpuset: Option<String>,
    /// memory.high, e.g. 32M: throttled and reclaimed above it (cgroup v2).
    #[arg(long, allow_hyphen_values = true)]
    memory_high: Option<String>,
    /// Swap allowed beside --memory, e.g. 64M (default: none).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// An OOM kill takes every task (memory.oom.group, cgroup v2).
    #[arg(long)]
    oom_group: bool,
    /// CPU weight 1-10000 (default 100; cgroup v1: cpu.shares weight*1024/100).
    #[arg(long, allow_hyphen_values = true)]
    cpu_weight: Option<String>,
    /// Write bandwidth cap on a block device (repeatable).
    #[arg(long, value_name = "DEVICE:RATE")]
    device_write_bps: Vec<String>,
    /// RLIMIT_NOFILE of the command.
    #[arg(long, allow_hyphen_values = true)]
    nofile: Option<String>,
    /// RLIMIT_NPROC of the command (per real uid; not enforced for root).
    #[arg(long, allow_hyphen_values = true)]
    nproc: Option<String>,
    /// oom_score_adj of the command, -1000..1000.
    #[arg(long, allow_hyphen_values = true)]
    oom_score_adj: Option<String>,
    /// Bind SRC at DST read-only (repeatable).
    #[arg(long = "ro-bind", value_name = "SRC:DST")]
    ro_bind: Vec<String>,
    /// Hostname inside.
    #[arg(long)]
    hostname: Option<String>,
    /// `none`: its own network namespace with lo only. `bridge`: a veth to a
    /// bridge isoc-br* made in the caller's network namespace for this run.
    #[arg(long, default_value = "none", value_parser = ["none", "bridge"])]
    net: String,
    /// The bridge's subnet (with --net bridge); the bridge gets .1, the
    /// container .2.
    #[arg(long, default_value = "10.89.0.0/24")]
    subnet: String,
    /// Forward HOST_PORT of the caller's addresses to CONTAINER_PORT (TCP,
    /// with --net bridge; turns IPv4 forwarding on in the caller's netns).
    #[arg(long, value_name = "HOST:CONTAINER")]
    publish: Vec<String>,
    /// A user namespace: uid/gid 0-65535 inside are 100000-165535 outside.
    #[arg(long)]
    userns: bool,
    /// Seconds PID 1 gets to exit after a forwarded SIGINT, SIGTERM or SIGHUP
    /// before the whole container is killed (a second one kills it at once).
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// Switch one protection off (repeatable), by its name in `isocheck
    /// list --protections`: seccomp, masked-paths, readonly-paths,
    /// device-allowlist, nodev, no-new-privs, capability-drop... Every
    /// protection is on by default, as in the scenarios.
    #[arg(long = "switch-off", value_name = "PROTECTION")]
    switch_off: Vec<isocheck_runtime::Protection>,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
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

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List {
            scenarios,
            protections,
            report,
            markdown,
        } => {
            let dir = scenarios.unwrap_or_else(scenario::default_dir);
            let all = scenario::load_dir(&dir)?;
            if markdown {
                print!("{}", isocheck_harness::catalog::markdown_table(&all));
                return Ok(ExitCode::SUCCESS);
            }
            if protections {
                let verdicts = match report {
                    Some(path) => isocheck_harness::report::Report::load(&path)?
                        .results
                        .into_iter()
                        .map(|r| (r.id, r.verdict))
                        .collect(),
                    None => Default::default(),
                };
                print!(
                    "{}",
                    isocheck_harness::catalog::coverage_table(&all, &verdicts)
                );
                return Ok(ExitCode::SUCCESS);
            }
            let width = all.iter().map(|s| s.id.len()).max().unwrap_or(0);
            for s in all {
                println!("{:<width$}  {}", s.id, s.guarantee);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => run(args),
        Command::Cleanup => {
            require_root("cleanup")?;
            let found = cleanup::find();
            for n in &found.not_ours {
                println!("not ours, left alone: {n}");
            }
            if found.leftovers.is_empty() {
                println!("nothing to clean up");
                return Ok(ExitCode::SUCCESS);
            }
            for l in &found.leftovers {
                println!("removing {l}");
            }
            let errors = cleanup::remove(&found.leftovers);
            for e in &errors {
                eprintln!("isocheck: cleanup: {e}");
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Container(ContainerCommand::Run(args)) => container_run(*args),
        Command::Vm(VmCommand::List) => {
            for leg in isocheck_harness::vm::list_legs() {
                println!("{leg}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Vm(VmCommand::Run {
            leg,
            all,
            json,
            out_dir,
            only,
            timeout,
        }) => vm_run(leg, all, json, out_dir, only, timeout),
        Command::Matrix { reports, html } => {
            let mut loaded = Vec::new();
            for path in &reports {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("read {}", path.display()))?;
                let report: Report = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not an isocheck JSON report", path.display()))?;
                let name = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                loaded.push((name, report));
            }
            let matrix = isocheck_harness::matrix::merge(&loaded);
            print!("{}", matrix.to_text());
            if let Some(html) = html {
                std::fs::write(&html, matrix.to_html())
                    .with_context(|| format!("--html: write {}", html.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn vm_run(
    leg: Option<String>,
    all: bool,
    json: Option<PathBuf>,
    out_dir: PathBuf,
    only: Vec<String>,
    timeout: u64,
) -> Result<ExitCode> {
    use isocheck_harness::vm::{self, VmError, VmRunOptions};
    let legs: Vec<String> = if all {
        vm::list_legs()
            .into_iter()
            .map(|l| l.name.to_string())
            .collect()
    } else {
        let name = leg.unwrap_or_default();
        if vm::find_leg(&name).is_none() {
            bail!("vm run: no leg {name:?} (see `isocheck vm list`)");
        }
        vec![name]
    };
    let exe = std::env::current_exe()?;
    let opts = VmRunOptions {
        isocheck_bin: exe.clone(),
        probe_bin: isocheck_harness::fixtures::probe_binary()?,
        scenarios_dir: scenario::default_dir(),
        cache_dir: vm::default_cache_dir(),
        timeout: std::time::Duration::from_secs(timeout),
        only: (!only.is_empty()).then(|| only.clone()),
    };
    let mut failed = false;
    let mut reports = Vec::new();
    for name in &legs {
        let target = match (&json, all) {
            (Some(j), false) => j.clone(),
            _ => {
                std::fs::create_dir_all(&out_dir)?;
                out_dir.join(format!("{name}.json"))
            }
        };
        eprintln!("isocheck vm: {name} ...");
        let report = match vm::run_leg(name, &opts) {
            Err(VmError::HostLeg) => {
                // The host leg is this machine, no VM: the suite in a child
                // process of our own (it enters its own stand-in host).
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["run", "--json"]).arg(&target);
                if !only.is_empty() {
                    cmd.args(["--only", &only.join(",")]);
                }
                let status = cmd.status()?;
                failed |= !status.success();
                std::fs::read_to_string(&target)
                    .ok()
                    .and_then(|t| serde_json::from_str::<Report>(&t).ok())
            }
            Err(e) => {
                eprintln!("isocheck vm: {name}: {e}");
                failed = true;
                None
            }
            Ok(outcome) => {
                eprintln!(
                    "isocheck vm: {name}: accel {:?}, boot {:.1} s, total {:.1} s{}",
                    outcome.accel,
                    outcome.boot_secs.unwrap_or(f64::NAN),
                    outcome.total_secs,
                    outcome
                        .error
                        .as_ref()
                        .map(|e| format!(", error: {e}"))
                        .unwrap_or_default()
                );
                for note in &outcome.notes {
                    eprintln!("isocheck vm: {name}: {note}");
                }
                if outcome.report.is_none() {
                    eprintln!(
                        "isocheck vm: {name}: console tail:\n{}",
                        outcome.console_tail
                    );
                    failed = true;
                }
                if let Some(r) = &outcome.report {
                    std::fs::write(&target, serde_json::to_string_pretty(r)?)?;
                    failed |= r.failed() > 0;
                    print!("{}", r.to_table());
                }
                outcome.report
            }
        };
        if let Some(r) = report {
            reports.push((name.clone(), r));
        }
    }
    if reports.len() > 1 {
        print!("{}", isocheck_harness::matrix::merge(&reports).to_text());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn require_root(what: &str) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("`isocheck {what}` needs root: it creates namespaces, mounts and cgroups (run it with sudo)");
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<ExitCode> {
    let dir = args.scenarios.clone().unwrap_or_else(scenario::default_dir);
    // Every file is loaded and checked before anything runs.
    let all = scenario::load_dir(&dir)?;
    let selected: Vec<_> = if args.only.is_empty() {
        all
    } else {
        for id in &args.only {
            if !all.iter().any(|s| &s.id == id) {
                bail!("--only: no scenario has id {id:?} (see `isocheck list`)");
            }
        }
        all.into_iter()
            .filter(|s| args.only.contains(&s.id))
            .collect()
    };
    if args.repeat == 0 {
        bail!("--repeat: 0; give 1 or more");
    }
    require_root("run")?;
    let leftovers = cleanup::find().leftovers;
    if !leftovers.is_empty() {
        eprintln!(
            "isocheck: warning: leftovers of a dead run: {}; `isocheck cleanup` removes them",
            cleanup::summary(&leftovers)
        );
    }
    // Blocked before the stand-in host and before any thread; the watcher
    // thread starts after `standin::enter` (unshare needs one thread).
    isocheck_harness::signals::block(&isocheck_harness::signals::STOPPING)?;
    standin::enter()?;
    let interrupt = isocheck_harness::signals::Interrupt::watch()?;
    let mut runner = Runner::new()?;
    runner.set_interrupt(interrupt.clone());
    let environment = Environment::gather(&runner.host.cgroup_mode);
    let mut history: Vec<Vec<Verdict>> = vec![Vec::new(); selected.len()];
    let mut report = Report {
        environment,
        results: Vec::new(),
        interrupted: false,
        wall_ms: 0,
    };
    let total = selected.len() * args.repeat as usize;
    let started = std::time::Instant::now();
    'rounds: for round in 0..args.repeat {
        if interrupt.is_set() {
            break;
        }
        report.results.clear();
        let round_started = std::time::Instant::now();
        for (i, s) in selected.iter().enumerate() {
            if interrupt.is_set() {
                break 'rounds;
            }
            let n = round as usize * selected.len() + i + 1;
            // On a terminal the "running" line is overwritten by the result;
            // in a log each result is one plain line.
            let (clear, tty) = if std::io::stderr().is_terminal() {
                ("\r\x1b[K", true)
            } else {
                ("", false)
            };
            if tty {
                eprint!("{clear}[{n}/{total}] {} ...", s.id);
                let _ = std::io::stderr().flush();
            }
            let result = runner.run_scenario(s);
            if interrupt.is_set() {
                // Stopped part way: its verdict would be noise. The
                // report holds only what finished.
                eprintln!("{clear}[{n}/{total}] {:<32} interrupted", s.id);
                break 'rounds;
            }
            eprintln!(
                "{clear}[{n}/{total}] {:<32} {:<11} control {:<8} {:>6} ms",
                s.id,
                result.verdict.label(),
                if result.control_violation_observed {
                    "seen"
                } else {
                    "NOT seen"
                },
                result.duration_ms
            );
            history[i].push(result.verdict);
            report.results.push(result);
            report.wall_ms = round_started.elapsed().as_millis() as u64;
        }
    }
    if let Some(sig) = interrupt.signal() {
        report.interrupted = true;
        // Every container of the run is gone with its half; the rest (the
        // decoys, the network testbed, the run dir) goes with the runner.
        drop(runner);
        print!("{}", report.to_table());
        println!("interrupted by {sig}: the report holds the scenarios that finished");
        write_outputs(&args, &report)?;
        return Ok(ExitCode::from(isocheck_harness::signals::exit_code(sig)));
    }
    print!("{}", report.to_table());
    if args.repeat > 1 {
        let changed: Vec<_> = selected
            .iter()
            .zip(&history)
            .filter(|(_, h)| h.iter().any(|v| *v != h[0]))
            .map(|(s, h)| {
                format!(
                    "{} ({})",
                    s.id,
                    h.iter().map(|v| v.label()).collect::<Vec<_>>().join(",")
                )
            })
            .collect();
        println!(
            "repeat: {} rounds in {:.1} s; verdicts changed: {}",
            args.repeat,
            started.elapsed().as_secs_f64(),
            if changed.is_empty() {
                "none".to_string()
            } else {
                changed.join("; ")
            }
        );
        if !changed.is_empty() {
            write_outputs(&args, &report)?;
            return Ok(ExitCode::FAILURE);
        }
    }
    write_outputs(&args, &report)?;
    Ok(if report.failed() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn write_outputs(args: &RunArgs, report: &Report) -> Result<()> {
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(report)?)
            .with_context(|| format!("--json: write {}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.to_junit())
            .with_context(|| format!("--junit: write {}", path.display()))?;
    }
    if let Some(path) = &args.tap {
        std::fs::write(path, report.to_tap())
            .with_context(|| format!("--tap: write {}", path.display()))?;
    }
    Ok(())
}

/// Checks the network flags before anything exists: the subnet parses and
/// overlaps none of the host's routes, each published port is free.
fn plan_network(
    args: &ContainerRunArgs,
) -> Result<Option<(ipnet::Ipv4Net, Vec<isocheck_runtime::spec::PortForward>)>> {
    if args.net == "none" {
        if let Some(p) = args.publish.first() {
            bail!("--publish {p}: needs --net bridge");
        }
        return Ok(None);
    }
    let subnet: ipnet::Ipv4Net = args
        .subnet
        .parse()
        .ok()
        .filter(|n: &ipnet::Ipv4Net| n.network() == n.addr() && n.prefix_len() <= 30)
        .with_context(|| {
            format!(
                "--subnet {}: not an IPv4 network of /30 or larger, e.g. 10.89.0.0/24",
                args.subnet
            )
        })?;
    for (dest, iface) in host_routes() {
        if isocheck_runtime::network::overlaps(&subnet, &dest) && dest.prefix_len() > 0 {
            bail!("--subnet {subnet}: overlaps the host's route {dest} on {iface}");
        }
    }
    let mut publish = Vec::new();
    for p in &args.publish {
        let forward = isocheck_harness::runner::parse_publish(p)
            .map_err(|e| anyhow::anyhow!("--publish {p}: {e}"))?;
        if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", forward.host_port)) {
            bail!(
                "--publish {p}: host port {} is taken ({e})",
                forward.host_port
            );
        }
        if publish
            .iter()
            .any(|f: &isocheck_runtime::spec::PortForward| f.host_port == forward.host_port)
        {
            bail!(
                "--publish {p}: host port {} is published twice",
                forward.host_port
            );
        }
        publish.push(forward);
    }
    Ok(Some((subnet, publish)))
}

/// The IPv4 routes of the caller's network namespace (/proc/net/route:
/// destination and mask in hex, host byte order).
fn host_routes() -> Vec<(ipnet::Ipv4Net, String)> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let dest = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the network-order word as a native number.
            let addr = std::net::Ipv4Addr::from(dest.to_ne_bytes());
            let prefix = mask.count_ones() as u8;
            Some((
                ipnet::Ipv4Net::new(addr, prefix).ok()?.trunc(),
                f[0].to_string(),
            ))
        })
        .collect()
}

/// The resource flags beyond --memory/--pids/--cpus/--cpuset, each checked
/// with the spec's own rules; an error names the flag and the value.
fn set_resource_limits(
    args: &ContainerRunArgs,
    l: &mut isocheck_runtime::spec::Limits,
) -> Result<()> {
    use isocheck_runtime::spec as rspec;
    fn number<T: std::str::FromStr>(flag: &str, v: &Option<String>) -> Result<Option<T>> {
        v.as_ref()
            .map(|t| {
                t.parse()
                    .ok()
                    .with_context(|| format!("{flag} {t}: not a whole number"))
            })
            .transpose()
    }
    if let Some(m) = &args.memory_high {
        l.memory_high_bytes =
            Some(rspec::parse_memory(m).map_err(|e| anyhow::anyhow!("--memory-high {m}: {e}"))?);
    }
    if let Some(m) = &args.memory_swap {
        l.swap_bytes =
            rspec::parse_memory(m).map_err(|e| anyhow::anyhow!("--memory-swap {m}: {e}"))?;
    }
    l.oom_group = args.oom_group;
    l.cpu_weight = number("--cpu-weight", &args.cpu_weight)?;
    for d in &args.device_write_bps {
        l.io_write_bps.push(
            rspec::parse_device_rate(d)
                .map_err(|e| anyhow::anyhow!("--device-write-bps {d}: {e}"))?,
        );
    }
    l.nofile = number("--nofile", &args.nofile)?;
    l.nproc = number("--nproc", &args.nproc)?;
    l.oom_score_adj = number("--oom-score-adj", &args.oom_score_adj)?;
    // The spec's own checks, before anything exists, naming the flag.
    let spec = isocheck_runtime::ContainerSpec {
        limits: l.clone(),
        ..Default::default()
    };
    if let Err(e @ rspec::SpecError::Invalid { .. }) = spec.validate_limits(&Default::default()) {
        let flag = [
            ("limits.memory_high", "--memory-high"),
            ("limits.swap", "--memory-swap"),
            ("limits.cpu_weight", "--cpu-weight"),
            ("limits.io_write_bps", "--device-write-bps"),
            ("limits.nofile", "--nofile"),
            ("limits.nproc", "--nproc"),
            ("limits.oom_score_adj", "--oom-score-adj"),
        ]
        .iter()
        .find(|(field, _)| e.to_string().starts_with(field))
        .map_or("a limit", |(_, flag)| flag);
        bail!("{flag}: {e}");
    }
    Ok(())
}

fn container_run(args: ContainerRunArgs) -> Result<ExitCode> {
    use isocheck_runtime::spec::{self as rspec, ContainerSpec, RootfsSource};
    use isocheck_runtime::{Container, SpawnOptions};
    // Every flag is checked before anything is created.
    let mut spec = ContainerSpec::default();
    if let Some(m) = &args.memory {
        spec.limits.memory_bytes =
            Some(rspec::parse_memory(m).map_err(|e| anyhow::anyhow!("--memory {m}: {e}"))?);
    }
    if let Some(p) = &args.pids {
        spec.limits.pids = Some(
            p.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .with_context(|| format!("--pids {p}: not a positive whole number"))?,
        );
    }
    if let Some(c) = &args.cpus {
        spec.limits.cpu =
            Some(rspec::parse_cpus(c).map_err(|e| anyhow::anyhow!("--cpus {c}: {e}"))?);
    }
    set_resource_limits(&args, &mut spec.limits)?;
    if let Some(c) = &args.cpuset {
        spec.limits.cpuset =
            Some(rspec::parse_cpuset(c).map_err(|e| anyhow::anyhow!("--cpuset {c}: {e}"))?);
        // The spec's own check: every cpu must be online here.
        spec.validate_limits(&rspec::host_online_cpus()?)
            .map_err(|e| anyhow::anyhow!("--cpuset {c}: {e}"))?;
    }
    for b in &args.ro_bind {
        let mut bind = rspec::parse_bind(b).map_err(|e| anyhow::anyhow!("--ro-bind {b}: {e}"))?;
        if !bind.source.exists() {
            bail!(
                "--ro-bind {b}: the source {} does not exist",
                bind.source.display()
            );
        }
        bind.readonly = true;
        spec.mounts.push(bind);
    }
    spec.hostname = args.hostname.clone();
    spec.command = args.command.clone();
    if args.userns {
        isocheck_harness::runner::with_user_namespace(&mut spec);
    }
    for p in &args.switch_off {
        if !p.in_spec() {
            anyhow::bail!("--switch-off {p}: not a protection of a container's spec");
        }
        p.switch_off(&mut spec);
    }
    let network = plan_network(&args)?;
    require_root("container run")?;
    // Before anything exists: from here on the forwarded signals wait in
    // this fd, whatever thread or child is made.
    let signals = isocheck_harness::signals::forwarding_fd()?;
    // Registers the run so `isocheck cleanup` leaves its resources alone.
    let run = isocheck_harness::fixtures::RunDir::create()?;
    spec.rootfs.source = match &args.rootfs {
        Some(p) if p.is_dir() && p.join("index.json").is_file() => {
            RootfsSource::OciLayout(p.clone())
        }
        Some(p) if p.is_dir() => RootfsSource::Dir(p.clone()),
        Some(p) => RootfsSource::Tar(p.clone()),
        None => {
            let root = run.join("rootfs");
            let probe = isocheck_harness::fixtures::probe_binary()?;
            let mut bins: Vec<(PathBuf, &str)> = vec![(probe, "/probe")];
            let busybox = PathBuf::from("/bin/busybox");
            if busybox.is_file() {
                bins.push((busybox, "/bin/busybox"));
            }
            let refs: Vec<(&std::path::Path, &str)> =
                bins.iter().map(|(p, d)| (p.as_path(), *d)).collect();
            isocheck_runtime::rootfs::minimal_rootfs(&root, &refs)?;
            if bins.len() > 1 {
                for applet in ["sh", "ls", "cat", "ps", "mount", "id", "hostname", "ip"] {
                    let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
                }
            }
            RootfsSource::Dir(root)
        }
    };
    spec.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    // The bridge (and the published ports' forwarding) live as long as the
    // container; both go when this function returns.
    let _bridge = match network {
        Some((subnet, publish)) => {
            use isocheck_runtime::network::{enable_forwarding, Bridge, Netns, SubnetPlan};
            let host = Netns::current()?;
            let mut plan = SubnetPlan::new(subnet, &[])?;
            let bridge = Bridge::create(&host, &format!("isoc-br{}", run.run_id), plan.gateway())?;
            if !publish.is_empty() {
                enable_forwarding(&host)?;
            }
            spec.network = rspec::NetworkMode::Bridge(rspec::BridgeAttachment {
                bridge: bridge.name().to_string(),
                address: plan.allocate()?.to_string(),
                gateway: Some(plan.gateway().addr().to_string()),
                address6: None,
                gateway6: None,
                publish,
                detached: false,
            });
            Some(bridge)
        }
        None => None,
    };
    // A stop asked for while the container was being prepared: nothing
    // runs yet, so nothing to forward it to; tear down and go.
    if let Some(sig) = isocheck_harness::signals::pending(&signals)
        .into_iter()
        .find(|s| isocheck_harness::signals::STOPPING.contains(s))
    {
        return Ok(ExitCode::from(isocheck_harness::signals::exit_code(sig)));
    }
    let opts = SpawnOptions::new(run.run_id.clone(), "manual");
    let mut container = Container::spawn(&spec, opts)?;
    let stop_timeout = std::time::Duration::from_secs(args.stop_timeout);
    let status = forward_until_exit(&mut container, &signals, stop_timeout)?;
    // Dropping the container (then the bridge, then the run dir) tears
    // everything down before we exit with its status.
    drop(container);
    Ok(match (status.code, status.signal) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    })
}

/// Waits for PID 1, forwarding every signal of `signals` to it (through its
/// pidfd, as `runc run` does). PID 1 may ignore a stopping signal (the init
/// of a pid namespace gets only the signals it handles), so a second
/// SIGINT, SIGTERM or SIGHUP, or `stop_timeout` after the first, kills the
/// whole container.
fn forward_until_exit(
    container: &mut isocheck_runtime::Container,
    signals: &nix::sys::signalfd::SignalFd,
    stop_timeout: std::time::Duration,
) -> Result<isocheck_runtime::ExitStatus> {
    use isocheck_harness::signals::{pending, STOPPING};
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    use std::time::Instant;
    // Set by the first stopping signal; cleared once the container is killed.
    let mut kill_at: Option<Instant> = None;
    let mut killed = false;
    loop {
        let wait_ms = kill_at
            .map(|t| t.saturating_duration_since(Instant::now()).as_millis())
            .map_or(PollTimeout::NONE, |ms| {
                PollTimeout::from(ms.min(u128::from(u16::MAX)) as u16)
            });
        let (signalled, exited) = {
            let mut fds = [
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(container.pidfd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, wait_ms) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => bail!("poll the container and the signals: {e}"),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if exited {
            return Ok(container.wait()?);
        }
        let mut kill_now = false;
        if signalled {
            for sig in pending(signals) {
                tracing::debug!(%sig, pid = container.pid(), "forwarding to PID 1");
                container.signal(sig)?;
                if STOPPING.contains(&sig) && !killed {
                    if kill_at.is_some() {
                        eprintln!("isocheck: {sig} again: killing the container");
                        kill_now = true;
                    } else {
                        kill_at = Some(Instant::now() + stop_timeout);
                    }
                }
            }
        }
        if !kill_now && kill_at.is_some_and(|t| Instant::now() >= t) {
            eprintln!(
                "isocheck: PID 1 still runs {} s after the stop signal: killing the container",
                stop_timeout.as_secs()
            );
            kill_now = true;
        }
        if kill_now {
            container.kill()?;
            killed = true;
            kill_at = None;
        }
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

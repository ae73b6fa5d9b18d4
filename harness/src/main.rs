//! `isocheck`: the CLI over the scenario runner, the cleanup, one-off
//! containers, the kernel matrix and its merged report.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use isocheck_harness::report::{Environment, Report, Verdict};
use isocheck_harness::runner::Runner;
use isocheck_harness::{cleanup, scenario, standin};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "isocheck",
    version,
    about = "Verify Linux container isolation on a real kernel"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List the guarantees: ids and one-line sentences.
    List {
        #[arg(long)]
        scenarios: Option<PathBuf>,
    },
    /// Run the guarantee suite (each scenario and its control) and report.
    Run(RunArgs),
    /// Remove every isocheck-* resource left by a crashed run.
    Cleanup,
    /// One container by hand.
    #[command(subcommand)]
    Container(ContainerCommand),
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
    /// Run the whole selection N times and report any verdict that changed.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
}

#[derive(Subcommand, Debug)]
enum ContainerCommand {
    /// Start one container and wait for it; its exit status becomes ours.
    Run(ContainerRunArgs),
}

#[derive(Args, Debug)]
struct ContainerRunArgs {
    /// Root filesystem: a directory, a .tar/.tar.gz, or an OCI layout dir.
    /// Default: a minimal root with the probe (and busybox if installed).
    #[arg(long)]
    rootfs: Option<PathBuf>,
    /// Memory limit, e.g. 64M (swap off).
    #[arg(long)]
    memory: Option<String>,
    /// Pids limit.
    #[arg(long)]
    pids: Option<String>,
    /// CPU quota in CPUs, e.g. 0.5.
    #[arg(long)]
    cpus: Option<String>,
    /// cpuset cpus, e.g. 0 or 0-1.
    #[arg(long)]
    cpuset: Option<String>,
    /// Bind SRC at DST read-only (repeatable).
    #[arg(long = "ro-bind", value_name = "SRC:DST")]
    ro_bind: Vec<String>,
    /// Hostname inside.
    #[arg(long)]
    hostname: Option<String>,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("isocheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::List { scenarios } => {
            let dir = scenarios.unwrap_or_else(scenario::default_dir);
            let all = scenario::load_dir(&dir)?;
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
            if found.is_empty() {
                println!("nothing to clean up");
                return Ok(ExitCode::SUCCESS);
            }
            for l in &found {
                println!("removing {l}");
            }
            let errors = cleanup::remove(&found);
            for e in &errors {
                eprintln!("isocheck: cleanup: {e}");
            }
            Ok(if errors.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Container(ContainerCommand::Run(args)) => container_run(args),
    }
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
    let leftovers = cleanup::find();
    if !leftovers.is_empty() {
        eprintln!(
            "isocheck: warning: leftovers of a dead run: {}; `isocheck cleanup` removes them",
            cleanup::summary(&leftovers)
        );
    }
    standin::enter()?;
    let mut runner = Runner::new()?;
    let environment = Environment::gather(&runner.host.cgroup_mode);
    let mut history: Vec<Vec<Verdict>> = vec![Vec::new(); selected.len()];
    let mut report = Report {
        environment,
        results: Vec::new(),
    };
    let total = selected.len() * args.repeat as usize;
    let started = std::time::Instant::now();
    for round in 0..args.repeat {
        report.results.clear();
        for (i, s) in selected.iter().enumerate() {
            let n = round as usize * selected.len() + i + 1;
            eprint!("\r\x1b[K[{n}/{total}] {} ...", s.id);
            let _ = std::io::stderr().flush();
            let result = runner.run_scenario(s);
            eprintln!(
                "\r\x1b[K[{n}/{total}] {:<32} {:<11} control {:<8} {:>6} ms",
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
        }
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
    if let Some(c) = &args.cpuset {
        spec.limits.cpuset =
            Some(rspec::parse_cpuset(c).map_err(|e| anyhow::anyhow!("--cpuset {c}: {e}"))?);
    }
    for b in &args.ro_bind {
        let mut bind = rspec::parse_bind(b).map_err(|e| anyhow::anyhow!("--ro-bind {b}: {e}"))?;
        bind.readonly = true;
        spec.mounts.push(bind);
    }
    spec.hostname = args.hostname.clone();
    spec.command = args.command.clone();
    let scratch;
    spec.rootfs.source = match &args.rootfs {
        Some(p) if p.is_dir() && p.join("index.json").is_file() => {
            RootfsSource::OciLayout(p.clone())
        }
        Some(p) if p.is_dir() => RootfsSource::Dir(p.clone()),
        Some(p) => RootfsSource::Tar(p.clone()),
        None => {
            scratch = tempfile::Builder::new().prefix("isocheck-").tempdir()?;
            let probe = isocheck_harness::fixtures::probe_binary()?;
            let mut bins: Vec<(PathBuf, &str)> = vec![(probe, "/probe")];
            let busybox = PathBuf::from("/bin/busybox");
            if busybox.is_file() {
                bins.push((busybox, "/bin/busybox"));
            }
            let refs: Vec<(&std::path::Path, &str)> =
                bins.iter().map(|(p, d)| (p.as_path(), *d)).collect();
            isocheck_runtime::rootfs::minimal_rootfs(scratch.path(), &refs)?;
            if bins.len() > 1 {
                for applet in ["sh", "ls", "cat", "ps", "mount", "id", "hostname", "ip"] {
                    let _ = std::os::unix::fs::symlink(
                        "busybox",
                        scratch.path().join("bin").join(applet),
                    );
                }
            }
            RootfsSource::Dir(scratch.path().to_owned())
        }
    };
    spec.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    require_root("container run")?;
    // Registers the run so `isocheck cleanup` leaves its resources alone.
    let run = isocheck_harness::fixtures::RunDir::create()?;
    let opts = SpawnOptions::new(run.run_id.clone(), "manual");
    let mut container = Container::spawn(&spec, opts)?;
    let status = container.wait()?;
    Ok(match (status.code, status.signal) {
        (Some(c), _) => ExitCode::from(c.clamp(0, 255) as u8),
        (None, Some(sig)) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
        _ => ExitCode::FAILURE,
    })
}

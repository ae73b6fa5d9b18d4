//! `isocheck container run`: one container by hand. Every flag is checked
//! (and named in its error) before anything exists; then the run dir, the
//! root, the bridge when asked, the container; signals are forwarded to
//! PID 1 until it exits, and its status becomes ours.

use crate::fixtures::{self, FixtureError, RunDir};
use crate::requirements::{require_root, NotRoot};
use crate::signals::{self, SignalError, STOPPING};
use isocheck_runtime::network::{self, NetworkError};
use isocheck_runtime::rootfs::RootfsError;
use isocheck_runtime::spec::{self as rspec, ContainerSpec, PortForward, RootfsSource, SpecError};
use isocheck_runtime::{Container, ExitStatus, SpawnOptions};
use nix::sys::signalfd::SignalFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ContainerRunArgs {
    /// Root filesystem: a directory, a .tar/.tar.gz, or an OCI layout dir.
    /// Default: a minimal root with the probe (and busybox if installed).
    #[arg(long)]
    pub rootfs: Option<PathBuf>,
    /// Memory limit, e.g. 64M (swap off).
    #[arg(long, allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Pids limit.
    #[arg(long, allow_hyphen_values = true)]
    pub pids: Option<String>,
    /// CPU quota in CPUs, e.g. 0.5.
    #[arg(long, allow_hyphen_values = true)]
    pub cpus: Option<String>,
    /// cpuset cpus, e.g. 0 or 0-1.
    #[arg(long, allow_hyphen_values = true)]
    pub cpuset: Option<String>,
    /// memory.high, e.g. 32M: throttled and reclaimed above it (cgroup v2).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_high: Option<String>,
    /// Swap allowed beside --memory, e.g. 64M (default: none).
    #[arg(long, allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// An OOM kill takes every task (memory.oom.group, cgroup v2).
    #[arg(long)]
    pub oom_group: bool,
    /// CPU weight 1-10000 (default 100; cgroup v1: cpu.shares weight*1024/100).
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_weight: Option<String>,
    /// Write bandwidth cap on a block device (repeatable).
    #[arg(long, value_name = "DEVICE:RATE")]
    pub device_write_bps: Vec<String>,
    /// RLIMIT_NOFILE of the command.
    #[arg(long, allow_hyphen_values = true)]
    pub nofile: Option<String>,
    /// RLIMIT_NPROC of the command (per real uid; not enforced for root).
    #[arg(long, allow_hyphen_values = true)]
    pub nproc: Option<String>,
    /// oom_score_adj of the command, -1000..1000.
    #[arg(long, allow_hyphen_values = true)]
    pub oom_score_adj: Option<String>,
    /// Bind SRC at DST read-only (repeatable).
    #[arg(long = "ro-bind", value_name = "SRC:DST")]
    pub ro_bind: Vec<String>,
    /// Hostname inside.
    #[arg(long)]
    pub hostname: Option<String>,
    /// `none`: its own network namespace with lo only. `bridge`: a veth to a
    /// bridge isoc-br* made in the caller's network namespace for this run.
    #[arg(long, default_value = "none", value_parser = ["none", "bridge"])]
    pub net: String,
    /// The bridge's subnet (with --net bridge); the bridge gets .1, the
    /// container .2.
    #[arg(long, default_value = "10.89.0.0/24")]
    pub subnet: String,
    /// Forward HOST_PORT of the caller's addresses to CONTAINER_PORT (TCP,
    /// with --net bridge; turns IPv4 forwarding on in the caller's netns).
    #[arg(long, value_name = "HOST:CONTAINER")]
    pub publish: Vec<String>,
    /// A user namespace: uid/gid 0-65535 inside are 100000-165535 outside.
    #[arg(long)]
    pub userns: bool,
    /// Seconds PID 1 gets to exit after a forwarded SIGINT, SIGTERM or SIGHUP
    /// before the whole container is killed (a second one kills it at once).
    #[arg(long, default_value_t = 10)]
    pub stop_timeout: u64,
    /// Switch one protection off (repeatable), by its name in `isocheck
    /// list --protections`: seccomp, masked-paths, readonly-paths,
    /// device-allowlist, nodev, no-new-privs, capability-drop... Every
    /// protection is on by default, as in the scenarios.
    #[arg(long = "switch-off", value_name = "PROTECTION")]
    pub switch_off: Vec<isocheck_runtime::Protection>,
    /// Command and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerRunError {
    /// A flag's value refused; the reason names what is wrong with it.
    #[error("{flag} {value}: {reason}")]
    Flag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// A limit the spec's own checks refused (their message holds the value).
    #[error("{flag}: {source}")]
    Limit {
        flag: &'static str,
        source: SpecError,
    },
    #[error("poll the container and the signals: {0}")]
    Poll(nix::Error),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    NotRoot(#[from] NotRoot),
    #[error(transparent)]
    Signal(#[from] SignalError),
    #[error(transparent)]
    Fixture(#[from] FixtureError),
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Runtime(#[from] isocheck_runtime::Error),
}

fn flag(flag: &'static str, value: &str, reason: impl ToString) -> ContainerRunError {
    ContainerRunError::Flag {
        flag,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// The bridge's subnet and the ports to publish, for `--net bridge`.
type NetworkPlan = (ipnet::Ipv4Net, Vec<PortForward>);

/// Runs the container `args` describe; the exit code is its status (128 +
/// the signal that killed it).
pub fn run(args: &ContainerRunArgs) -> Result<ExitCode, ContainerRunError> {
    let mut spec = spec_from_flags(args)?;
    let network = plan_network(args)?;
    require_root("container run")?;
    // Before anything exists: from here on the forwarded signals wait in
    // this fd, whatever thread or child is made.
    let signals = signals::forwarding_fd()?;
    // Registers the run so `isocheck cleanup` leaves its resources alone.
    // Beside the container's temp dir (tmpfs where there is one): it holds
    // only the owner record and, without --rootfs, the small default image.
    let run = RunDir::create_in(&isocheck_runtime::rootfs::temp_base())?;
    spec.rootfs.source = match &args.rootfs {
        Some(p) if p.is_dir() && p.join("index.json").is_file() => {
            RootfsSource::OciLayout(p.clone())
        }
        Some(p) if p.is_dir() => RootfsSource::Dir(p.clone()),
        Some(p) => RootfsSource::Tar(p.clone()),
        None => RootfsSource::Dir(default_rootfs(&run)?),
    };
    spec.validate()?;
    // The bridge (and the published ports' forwarding) live as long as the
    // container; both go when this function returns.
    let _bridge = match network {
        Some(plan) => Some(attach_bridge(&mut spec, &run, plan)?),
        None => None,
    };
    // A stop asked for while the container was being prepared: nothing
    // runs yet, so nothing to forward it to; tear down and go.
    if let Some(sig) = signals::pending(&signals)
        .into_iter()
        .find(|s| STOPPING.contains(s))
    {
        return Ok(ExitCode::from(signals::exit_code(sig)));
    }
    let opts = SpawnOptions::new(run.run_id.clone(), "manual");
    let mut container = Container::spawn(&spec, opts)?;
    tracing::info!(pid = container.pid(), "container started");
    let stop_timeout = Duration::from_secs(args.stop_timeout);
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

/// The spec the flags ask for, every value checked, the rootfs left unset.
fn spec_from_flags(args: &ContainerRunArgs) -> Result<ContainerSpec, ContainerRunError> {
    let mut spec = ContainerSpec::default();
    if let Some(m) = &args.memory {
        spec.limits.memory_bytes =
            Some(rspec::parse_memory(m).map_err(|e| flag("--memory", m, e))?);
    }
    if let Some(p) = &args.pids {
        spec.limits.pids = Some(
            p.parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| flag("--pids", p, "not a positive whole number"))?,
        );
    }
    if let Some(c) = &args.cpus {
        spec.limits.cpu = Some(rspec::parse_cpus(c).map_err(|e| flag("--cpus", c, e))?);
    }
    set_resource_limits(args, &mut spec.limits)?;
    if let Some(c) = &args.cpuset {
        spec.limits.cpuset = Some(rspec::parse_cpuset(c).map_err(|e| flag("--cpuset", c, e))?);
        // The spec's own check: every cpu must be online here.
        spec.validate_limits(&rspec::host_online_cpus()?)
            .map_err(|e| flag("--cpuset", c, e))?;
    }
    for b in &args.ro_bind {
        let mut bind = rspec::parse_bind(b).map_err(|e| flag("--ro-bind", b, e))?;
        if !bind.source.exists() {
            let reason = format!("the source {} does not exist", bind.source.display());
            return Err(flag("--ro-bind", b, reason));
        }
        bind.readonly = true;
        spec.mounts.push(bind);
    }
    spec.hostname = args.hostname.clone();
    spec.command = args.command.clone();
    if args.userns {
        crate::proof::with_user_namespace(&mut spec);
    }
    for p in &args.switch_off {
        if !p.in_spec() {
            let reason = "not a protection of a container's spec";
            return Err(flag("--switch-off", &p.to_string(), reason));
        }
        p.switch_off(&mut spec);
    }
    Ok(spec)
}

/// The resource flags beyond --memory/--pids/--cpus/--cpuset, each checked
/// with the spec's own rules; an error names the flag and the value.
fn set_resource_limits(
    args: &ContainerRunArgs,
    l: &mut rspec::Limits,
) -> Result<(), ContainerRunError> {
    fn number<T: std::str::FromStr>(
        name: &'static str,
        v: &Option<String>,
    ) -> Result<Option<T>, ContainerRunError> {
        v.as_ref()
            .map(|t| t.parse().map_err(|_| flag(name, t, "not a whole number")))
            .transpose()
    }
    if let Some(m) = &args.memory_high {
        l.memory_high_bytes =
            Some(rspec::parse_memory(m).map_err(|e| flag("--memory-high", m, e))?);
    }
    if let Some(m) = &args.memory_swap {
        l.swap_bytes = rspec::parse_memory(m).map_err(|e| flag("--memory-swap", m, e))?;
    }
    l.oom_group = args.oom_group;
    l.cpu_weight = number("--cpu-weight", &args.cpu_weight)?;
    for d in &args.device_write_bps {
        l.io_write_bps
            .push(rspec::parse_device_rate(d).map_err(|e| flag("--device-write-bps", d, e))?);
    }
    l.nofile = number("--nofile", &args.nofile)?;
    l.nproc = number("--nproc", &args.nproc)?;
    l.oom_score_adj = number("--oom-score-adj", &args.oom_score_adj)?;
    // The spec's own checks, before anything exists, naming the flag.
    let spec = ContainerSpec {
        limits: l.clone(),
        ..Default::default()
    };
    if let Err(e @ SpecError::Invalid { .. }) = spec.validate_limits(&Default::default()) {
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
        return Err(ContainerRunError::Limit { flag, source: e });
    }
    Ok(())
}

/// Checks the network flags before anything exists: the subnet parses and
/// overlaps none of the host's routes, each published port is free.
fn plan_network(args: &ContainerRunArgs) -> Result<Option<NetworkPlan>, ContainerRunError> {
    if args.net == "none" {
        if let Some(p) = args.publish.first() {
            return Err(flag("--publish", p, "needs --net bridge"));
        }
        return Ok(None);
    }
    let subnet: ipnet::Ipv4Net = args
        .subnet
        .parse()
        .ok()
        .filter(|n: &ipnet::Ipv4Net| n.network() == n.addr() && n.prefix_len() <= 30)
        .ok_or_else(|| {
            let reason = "not an IPv4 network of /30 or larger, e.g. 10.89.0.0/24";
            flag("--subnet", &args.subnet, reason)
        })?;
    for (dest, iface) in host_routes() {
        if network::overlaps(&subnet, &dest) && dest.prefix_len() > 0 {
            let reason = format!("overlaps the host's route {dest} on {iface}");
            return Err(flag("--subnet", &subnet.to_string(), reason));
        }
    }
    let mut publish: Vec<PortForward> = Vec::new();
    for p in &args.publish {
        let forward = crate::proof::parse_publish(p).map_err(|e| flag("--publish", p, e))?;
        let port = forward.host_port;
        if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", port)) {
            return Err(flag(
                "--publish",
                p,
                format!("host port {port} is taken ({e})"),
            ));
        }
        if publish.iter().any(|f| f.host_port == port) {
            return Err(flag(
                "--publish",
                p,
                format!("host port {port} is published twice"),
            ));
        }
        publish.push(forward);
    }
    Ok(Some((subnet, publish)))
}

/// The IPv4 routes of the caller's network namespace (/proc/net/route),
/// each with its interface; none when the table cannot be read.
fn host_routes() -> Vec<(ipnet::Ipv4Net, String)> {
    let routes = procfs::net::route().unwrap_or_default();
    routes
        .into_iter()
        .filter_map(|r| {
            let prefix = u32::from(r.mask).count_ones() as u8;
            Some((
                ipnet::Ipv4Net::new(r.destination, prefix).ok()?.trunc(),
                r.iface,
            ))
        })
        .collect()
}

/// Without --rootfs: a minimal root in the run dir with the probe, and
/// busybox with a few applets when the host has it.
fn default_rootfs(run: &RunDir) -> Result<PathBuf, ContainerRunError> {
    let root = run.join("rootfs");
    let probe = fixtures::probe_binary()?;
    let mut bins: Vec<(PathBuf, &str)> = vec![(probe, "/probe")];
    let busybox = PathBuf::from("/bin/busybox");
    if busybox.is_file() {
        bins.push((busybox, "/bin/busybox"));
    }
    let refs: Vec<(&Path, &str)> = bins.iter().map(|(p, d)| (p.as_path(), *d)).collect();
    isocheck_runtime::rootfs::minimal_rootfs(&root, &refs)?;
    if bins.len() > 1 {
        for applet in ["sh", "ls", "cat", "ps", "mount", "id", "hostname", "ip"] {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    Ok(root)
}

/// Makes the run's bridge in the caller's network namespace and points the
/// spec's network at it; the bridge goes when the returned value drops.
fn attach_bridge(
    spec: &mut ContainerSpec,
    run: &RunDir,
    (subnet, publish): NetworkPlan,
) -> Result<network::Bridge, ContainerRunError> {
    let host = network::Netns::current()?;
    let mut plan = network::SubnetPlan::new(subnet, &[])?;
    let bridge = network::Bridge::create(&host, &format!("isoc-br{}", run.run_id), plan.gateway())?;
    if !publish.is_empty() {
        network::enable_forwarding(&host)?;
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
    Ok(bridge)
}

/// Waits for PID 1, forwarding every signal of `signals` to it (through its
/// pidfd, as `runc run` does). PID 1 may ignore a stopping signal (the init
/// of a pid namespace gets only the signals it handles), so a second
/// SIGINT, SIGTERM or SIGHUP, or `stop_timeout` after the first, kills the
/// whole container.
fn forward_until_exit(
    container: &mut Container,
    signals: &SignalFd,
    stop_timeout: Duration,
) -> Result<ExitStatus, ContainerRunError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
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
                Err(e) => return Err(ContainerRunError::Poll(e)),
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if exited {
            return Ok(container.wait()?);
        }
        let mut kill_now = false;
        if signalled {
            for sig in signals::pending(signals) {
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
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        args: ContainerRunArgs,
    }

    fn args(flags: &[&str]) -> ContainerRunArgs {
        let argv = ["isocheck"]
            .iter()
            .chain(flags)
            .chain(&["--", "/probe", "noop"]);
        Flags::try_parse_from(argv).unwrap().args
    }

    fn refused(flags: &[&str]) -> String {
        let a = args(flags);
        match spec_from_flags(&a).and_then(|_| plan_network(&a)) {
            Ok(_) => panic!("{flags:?} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn flags_become_the_spec() {
        let a = args(&[
            "--memory",
            "64M",
            "--pids",
            "32",
            "--hostname",
            "h",
            "--ro-bind",
            "/:/data",
            "--nofile",
            "128",
        ]);
        let spec = spec_from_flags(&a).unwrap();
        assert_eq!(spec.limits.memory_bytes, Some(64 << 20));
        assert_eq!(spec.limits.pids, Some(32));
        assert_eq!(spec.limits.nofile, Some(128));
        assert_eq!(spec.hostname.as_deref(), Some("h"));
        assert!(spec.mounts[0].readonly);
        assert_eq!(spec.command, ["/probe", "noop"]);
        assert!(plan_network(&a).unwrap().is_none());
        let off = spec_from_flags(&args(&["--switch-off", "seccomp"])).unwrap();
        let on = spec_from_flags(&args(&[])).unwrap();
        assert_ne!(
            serde_json::to_value(&off).unwrap(),
            serde_json::to_value(&on).unwrap()
        );
    }

    #[test]
    fn a_bad_flag_is_named_with_its_value() {
        assert_eq!(
            refused(&["--pids", "0"]),
            "--pids 0: not a positive whole number"
        );
        assert_eq!(
            refused(&["--nofile", "x"]),
            "--nofile x: not a whole number"
        );
        let e = refused(&["--ro-bind", "/nonexistent-isocheck:/d"]);
        assert!(
            e.ends_with("the source /nonexistent-isocheck does not exist"),
            "{e}"
        );
        assert_eq!(
            refused(&["--publish", "8080:80"]),
            "--publish 8080:80: needs --net bridge"
        );
        let e = refused(&["--net", "bridge", "--subnet", "10.0.0.1/24"]);
        assert!(
            e.starts_with("--subnet 10.0.0.1/24: not an IPv4 network"),
            "{e}"
        );
    }
}

//! A full container start through the runtime, as `start/full`,
//! `start/full-net` and `scale/running/*` time it: `Container::spawn` with
//! all six namespaces, its cgroup with memory + pids + cpu limits, overlay
//! root, pivot_root, caps dropped, no_new_privs, optionally a bridged veth;
//! the probe's no-op; wait; drop, which removes every piece again.

use crate::oci::BENCH_LIMITS;
use crate::probe::NOOP_ARG;
use crate::rootfs::{MinimalRootfs, PROBE_IN_ROOT};
use isocheck_runtime::network::{Bridge, Netns, NetworkError};
use isocheck_runtime::spec::{
    BridgeAttachment, CpuQuota, Limits, NetworkMode, RootEntry, Rootfs, RootfsSource,
};
use isocheck_runtime::{Container, ContainerSpec, SpawnOptions, StdioMode};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FullError {
    #[error("spawning container {name}: {source}")]
    Spawn {
        name: String,
        source: isocheck_runtime::Error,
    },
    #[error("waiting for container {name}: {source}")]
    Wait {
        name: String,
        source: isocheck_runtime::Error,
    },
    #[error("container {name} ended with {status:?}")]
    Status {
        name: String,
        status: isocheck_runtime::ExitStatus,
    },
    #[error("container {name} exited at once; the probe must idle for `{action}`")]
    NotIdle { name: String, action: &'static str },
    #[error("network: {0}")]
    Network(#[from] NetworkError),
}

/// The runtime's form of the limits every bench container gets.
pub fn bench_limits() -> Limits {
    Limits {
        memory_bytes: Some(BENCH_LIMITS.memory_bytes),
        pids: Some(BENCH_LIMITS.pids),
        cpu: Some(CpuQuota {
            quota_us: BENCH_LIMITS.cpu_quota_us,
            period_us: BENCH_LIMITS.cpu_period_us,
        }),
        ..Limits::default()
    }
}

/// The full container: the six namespaces (the spec's defaults), overlay
/// over the minimal rootfs, pivot_root, no capabilities, no_new_privs,
/// hostname, `argv` in the rootfs.
pub fn full_spec(root: &MinimalRootfs, argv: &[&str]) -> ContainerSpec {
    full_spec_in(root.path(), argv)
}

/// [`full_spec`] over any directory rootfs.
pub fn full_spec_in(root: &std::path::Path, argv: &[&str]) -> ContainerSpec {
    ContainerSpec {
        rootfs: Rootfs {
            source: RootfsSource::Dir(root.to_path_buf()),
            overlay: true,
            entry: RootEntry::PivotRoot,
        },
        hostname: Some("isocheck".into()),
        limits: bench_limits(),
        network: NetworkMode::None,
        capabilities: Vec::new(),
        no_new_privs: true,
        command: argv.iter().map(|a| a.to_string()).collect(),
        ..ContainerSpec::default()
    }
}

/// The bridge of the networked benches, in the stand-in host.
pub const BENCH_BRIDGE_GATEWAY: &str = "10.213.0.1/24";
pub const BENCH_CONTAINER_ADDRESS: &str = "10.213.0.2/24";

pub fn bench_bridge_name() -> String {
    // isoc-br + pid keeps concurrent runs apart (IFNAMSIZ: 15 bytes).
    format!("isoc-br{}", std::process::id() % 100_000_000)
}

pub fn bench_attachment(bridge: &Bridge) -> BridgeAttachment {
    BridgeAttachment {
        bridge: bridge.name().to_string(),
        address: BENCH_CONTAINER_ADDRESS.to_string(),
        gateway: Some(bridge.gateway().addr().to_string()),
        address6: None,
        gateway6: None,
        publish: Vec::new(),
        detached: false,
    }
}

/// The bench bridge in the stand-in host, made once.
pub fn make_bridge() -> Result<(Netns, Bridge), String> {
    let host = Netns::current().map_err(|e| e.to_string())?;
    let gateway = BENCH_BRIDGE_GATEWAY
        .parse()
        .map_err(|e| format!("{BENCH_BRIDGE_GATEWAY}: {e}"))?;
    let bridge = Bridge::create(&host, &bench_bridge_name(), gateway).map_err(|e| e.to_string())?;
    Ok((host, bridge))
}

/// The veth side of `start/full-net`: the host (stand-in) namespace the
/// bridge lives in and the attachment every container gets.
#[derive(Debug)]
pub struct NetPlan {
    pub host: Netns,
    pub attachment: BridgeAttachment,
}

/// Starts full containers one after the other, each with a fresh name.
/// `Container::spawn` makes the cgroup (`isocheck/<run_id>-<name>`, with
/// the spec's limits) and, for a bridged spec, the veth; dropping the
/// container kills its cgroup, reaps it and removes cgroup, veth and temp
/// dir.
#[derive(Debug)]
pub struct FullStarter {
    spec: ContainerSpec,
    run_id: String,
    /// Container names are `<prefix><counter>`: one prefix per starter.
    prefix: String,
    counter: u64,
    host: Option<Netns>,
}

/// A started container.
#[derive(Debug)]
pub struct Started {
    pub name: String,
    pub container: Container,
}

impl FullStarter {
    /// `net`: attach every container to `net.attachment`'s bridge in
    /// `net.host` (the spec's network becomes that bridge).
    pub fn new(
        mut spec: ContainerSpec,
        run_id: &str,
        prefix: &str,
        net: Option<NetPlan>,
    ) -> FullStarter {
        let host = net.map(|net| {
            spec.network = NetworkMode::Bridge(net.attachment);
            net.host
        });
        FullStarter {
            spec,
            run_id: run_id.to_string(),
            prefix: prefix.to_string(),
            counter: 0,
            host,
        }
    }

    /// Spawn one container; returns once its command was exec'd.
    pub fn start(&mut self, stdin: StdioMode) -> Result<Started, FullError> {
        self.counter += 1;
        let name = format!("{}{}", self.prefix, self.counter);
        let mut opts = SpawnOptions::new(self.run_id.clone(), name.clone());
        opts.stdin = stdin;
        opts.stdout = StdioMode::Null;
        if let Some(host) = &self.host {
            opts.host_netns = Some(host.try_clone()?);
        }
        let container = Container::spawn(&self.spec, opts).map_err(|source| FullError::Spawn {
            name: name.clone(),
            source,
        })?;
        Ok(Started { name, container })
    }

    /// One whole start: spawn, wait for the no-op, drop (cleanup).
    pub fn run_once(&mut self) -> Result<(), FullError> {
        let mut started = self.start(StdioMode::Null)?;
        let status = started.container.wait().map_err(|source| FullError::Wait {
            name: started.name.clone(),
            source,
        })?;
        if !status.success() {
            return Err(FullError::Status {
                name: started.name,
                status,
            });
        }
        Ok(())
    }
}

/// The runtime's cgroups and temp dirs still there for containers of
/// `run_id` whose names start with `prefix` ("" for all of the run).
pub fn leftovers(run_id: &str, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut left = Vec::new();
    if let Ok(manager) = isocheck_runtime::cgroups::CgroupManager::detect() {
        let cgroup = format!("{run_id}-{prefix}");
        left.extend(manager.leftovers().into_iter().filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&cgroup))
        }));
    }
    // `isocheck-<run_id>-<name>-*` (rootfs::temp_prefix, with a partial name).
    let temp = format!("isocheck-{run_id}-{prefix}");
    if let Ok(entries) = std::fs::read_dir(isocheck_runtime::rootfs::temp_base()) {
        left.extend(
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(&temp))
                .map(|e| e.path()),
        );
    }
    left
}

/// The probe action that idles until its stdin closes.
pub const IDLE_ACTION: &str = "wait";

/// N idle containers (each its own cgroup with limits, own netns), kept
/// running while `scale/running/N` times one more full start.
#[derive(Debug, Default)]
pub struct Fleet {
    running: Vec<Started>,
}

impl Fleet {
    /// Start `n` containers running `/probe wait` with a piped stdin held
    /// open by us; each must still be running right after its start.
    pub fn start(starter: &mut FullStarter, n: usize) -> Result<Fleet, FullError> {
        let mut fleet = Fleet::default();
        for _ in 0..n {
            let mut started = starter.start(StdioMode::Piped)?;
            let exited = started
                .container
                .wait_timeout(Duration::from_millis(0))
                .map_err(|source| FullError::Wait {
                    name: started.name.clone(),
                    source,
                })?;
            if exited.is_some() {
                return Err(FullError::NotIdle {
                    name: started.name,
                    action: IDLE_ACTION,
                });
            }
            fleet.running.push(started);
        }
        Ok(fleet)
    }

    pub fn len(&self) -> usize {
        self.running.len()
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// How many are still running (an idle container that exited early
    /// would make the scale figure a lie).
    pub fn still_running(&mut self) -> usize {
        let mut running = 0;
        for started in &mut self.running {
            if matches!(started.container.wait_timeout(Duration::ZERO), Ok(None)) {
                running += 1;
            }
        }
        running
    }

    /// Stop them all: each drop kills the container's cgroup, reaps it and
    /// removes what it had.
    pub fn stop(self) {
        drop(self.running);
    }
}

/// The argv of the idle containers.
pub fn idle_argv() -> [&'static str; 2] {
    [PROBE_IN_ROOT, IDLE_ACTION]
}

/// The argv of the timed no-op.
pub fn noop_argv() -> [&'static str; 2] {
    [PROBE_IN_ROOT, NOOP_ARG]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_spec_has_six_namespaces_overlay_limits_and_no_caps() {
        let probe = tempfile::NamedTempFile::new().expect("temp file");
        let root = MinimalRootfs::new(probe.path()).expect("rootfs");
        let spec = full_spec(&root, &noop_argv());
        let ns = spec.namespaces;
        assert!(ns.pid && ns.mount && ns.uts && ns.ipc && ns.net && ns.cgroup);
        assert!(!ns.user && !ns.time);
        assert!(spec.rootfs.overlay);
        assert_eq!(spec.rootfs.entry, RootEntry::PivotRoot);
        assert!(spec.capabilities.is_empty());
        assert!(spec.no_new_privs);
        assert_eq!(spec.limits.memory_bytes, Some(64 * 1024 * 1024));
        assert_eq!(spec.limits.pids, Some(32));
        assert_eq!(spec.command, ["/probe", "noop"]);
        spec.validate().expect("the bench spec is valid");
    }
}

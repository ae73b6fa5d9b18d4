//! Scenarios are data: one TOML file per guarantee, with the container it
//! needs, the probe action, the expectations, and the control (the same check
//! with one isolation switched off, which must then show the violation).
//!
//! Loading is strict: unknown fields, unknown probe actions, unknown host
//! checks and a run without expectations are refused, and every error names
//! the file, the line and the field.

use crate::expect::Expectation;
use isocheck_runtime::Protection;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The probe's actions (harness/probe). A scenario naming any other action
/// is refused at load time, before anything runs.
pub const PROBE_ACTIONS: &[&str] = &[
    "noop",
    "pids",
    "kill",
    "write",
    "mount-private",
    "hostname",
    "shm",
    "chroot-escape",
    "overlay-write",
    "ns",
    "caps",
    "clocks",
    "wait",
    "alloc",
    "forkbomb",
    "burn",
    "burn-procs",
    "alloc-swap",
    "fill",
    "nofile",
    "nproc",
    "oom-pick",
    "oom-group",
    "write-direct",
    "cgroup",
    "daemon",
    "links",
    "ping",
    "tcp-connect",
    "tcp-serve",
    "remount-rw",
    "find-host-root",
    "submount",
    "sysfs-write",
    "sysctl-write",
    "mknod",
    "setns-net",
    "ptrace",
    "cgroup-move",
    "sysrq-kmsg",
    "read",
    "id",
    "status",
    "leaked-fds",
    "setuid-exec",
    "exec-copies",
    "groups",
    "trap",
    "ls",
    "mounts",
    "seccomp",
    "masked",
    "readonly-paths",
    "device",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub id: String,
    /// The guarantee, in one sentence.
    pub guarantee: String,
    /// What is observed, in a few words (the README's table).
    pub observes: String,
    /// Scenario family: process, mount, resource, network, escape. The kill -9
    /// fault test picks one scenario of each kind.
    pub kind: String,
    /// What the host must offer, checked before running: e.g.
    /// "controller:memory", "time-namespace", "nft". Missing → unsupported.
    #[serde(default)]
    pub requires: Vec<String>,
    /// Wall-clock limit for one run (isolated or control), in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Fixtures the harness prepares in the stand-in host before each run.
    #[serde(default)]
    pub fixtures: Vec<Fixture>,
    /// How the harness interacts with the running container.
    #[serde(default)]
    pub interaction: Interaction,
    /// A server container started first on the first bridge, with this
    /// probe argv; its observation is `peer`, its address `{peer.address}`.
    #[serde(default)]
    pub peer: Option<Vec<String>>,
    /// A probe run in the "outside world" namespace: a server started before
    /// the container, or (interaction outside-client) a client run once the
    /// container is ready. Its observation is `outside`.
    #[serde(default)]
    pub outside: Option<Vec<String>>,
    pub run: Variant,
    pub control: Control,
    /// Where it was loaded from (set by the loader).
    #[serde(skip)]
    pub file: PathBuf,
    /// The run's container changes (set by the loader).
    #[serde(skip)]
    pub run_container: ContainerOverrides,
    /// The control's: the run's with the control's keys merged over them.
    #[serde(skip)]
    pub control_container: ContainerOverrides,
    /// Whether the runner must still apply `Protection::switch_off` to the
    /// control's spec (false when the control's keys already changed it).
    #[serde(skip)]
    pub apply_switch_off: bool,
}

fn default_timeout() -> u64 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// argv after the probe path: the action and its arguments, with
    /// `{placeholders}` filled in by the runner (see runner::Vars).
    pub probe: Vec<String>,
    /// Changes to the default container.
    #[serde(default)]
    pub container: toml::Table,
    /// A second probe run by the interaction (exec, outside client/server).
    #[serde(default)]
    pub companion: Option<Vec<String>>,
    pub expect: Vec<Expectation>,
}

/// The control: the run's container and probe with exactly one protection
/// switched off. The loader refuses a control that changes anything else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The one protection the control removes.
    pub switch_off: Protection,
    /// How it is switched off, in a few words, when the default way
    /// (`Protection::switch_off`) needs saying (e.g. "raised to 256").
    #[serde(default)]
    pub how: Option<String>,
    /// Keys of the run's container changed for this protection alone (a
    /// raised limit's value); merged over the run's `container`.
    #[serde(default)]
    pub container: toml::Table,
    /// What must be seen when the protection is off: the violation.
    pub expect: Vec<Expectation>,
}

/// The harness-side preparations a scenario can ask for. Adding one needs
/// Rust code in `fixtures.rs`; using one needs only TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fixture {
    /// A directory with a file and a tmpfs submount, to be bound read-only.
    RoBindSource,
    /// A file in the stand-in host whose content is a random token.
    EscapeMarker,
    /// A root-owned 0600 file in a directory bound into the container.
    SecretFile,
    /// A private copy of the image (controls that write to the image).
    ImageCopy,
    /// A host directory holding a marker (`{leak.marker}`, content
    /// `{leak.token}`), open WITHOUT O_CLOEXEC across the container's spawn.
    LeakedHostFd,
    /// A loop device over a file in the run dir, `{loop.device}`.
    LoopDevice,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interaction {
    /// Start, wait for exit.
    #[default]
    None,
    /// Probe says ready; harness checks its own mountinfo for the inside
    /// mount, then mounts a marker of its own, then says go.
    MountLeak,
    /// Like mount-leak, but the harness's marker tmpfs is mounted under the
    /// bind source (fixture ro-bind-source) while the container runs.
    MountUnderBindSource,
    /// Probe says ready; harness runs the companion probe with
    /// `Container::exec` (control: started on the host without joining).
    Exec,
    /// After the probe's first JSON line, the harness kills the container:
    /// the whole group in the run, PID 1 only in the control; then counts
    /// the tasks left in the cgroup.
    KillAfterOutput,
    /// After the container exits, a second container with the same spec runs
    /// the companion probe.
    ThenCompanion,
    /// Once the container says ready, the `outside` probe runs as a client.
    OutsideClient,
    /// Probe says ready; harness says go, reads the cgroup's CPU usage
    /// counter twice while the probe burns (`measure::usage_rate`), then
    /// says go again to stop it: `host.usage_cpus` is the usage between the
    /// reads over the time between them.
    UsageWindow,
    /// Once the container says ready, the harness measures its cgroup's CPU
    /// usage over a window, pauses it (`Container::pause`), measures a
    /// window, resumes, measures a window: `host.usage_*_ms`.
    PauseResume,
    /// A twin container — the same spec with the control's protection
    /// switched off, i.e. the kernel's default — runs the same probe beside
    /// it; both cgroups' CPU usage over one window gives
    /// `host.usage_ratio` (this one's over the twin's).
    CpuTwin,
}

/// A scenario's changes to the default container. Every field is optional;
/// what is not given keeps the safe default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerOverrides {
    /// Namespaces to switch on (true) or off (false).
    #[serde(default)]
    pub namespaces: BTreeMap<String, bool>,
    /// Capabilities kept; "ALL" keeps every capability.
    pub capabilities: Option<Vec<String>>,
    /// "" leaves the spec without one.
    pub hostname: Option<String>,
    /// "32M", "512M"...
    pub memory: Option<String>,
    pub pids: Option<u64>,
    /// CPUs of quota, e.g. "0.2".
    pub cpus: Option<String>,
    pub cpuset: Option<String>,
    /// memory.high, e.g. "32M" (v2 only).
    pub memory_high: Option<String>,
    /// memory.oom.group (v2 only).
    pub oom_group: Option<bool>,
    /// Swap allowed beside the memory limit, e.g. "256M" (default none).
    pub swap: Option<String>,
    /// cpu.weight 1..=10000 (v1: cpu.shares weight*1024/100).
    pub cpu_weight: Option<u64>,
    /// Write bandwidth caps, `DEVICE:RATE` (e.g. "{loop.device}:4M").
    #[serde(default)]
    pub device_write_bps: Vec<String>,
    /// RLIMIT_NOFILE of the first process.
    pub nofile: Option<u64>,
    /// RLIMIT_NPROC of the first process.
    pub nproc: Option<u64>,
    pub oom_score_adj: Option<i32>,
    /// Binds, `SRC:DST` or `SRC:DST:ro`; SRC may use placeholders.
    #[serde(default)]
    pub binds: Vec<String>,
    /// Mount an overlay over the image (default true).
    pub overlay: Option<bool>,
    /// Use the private image copy (fixture image-copy) as the rootfs.
    #[serde(default)]
    pub image_copy: bool,
    /// "pivot_root" (default) or "chroot_only".
    pub root_entry: Option<String>,
    pub time_offset_secs: Option<i64>,
    pub proc_sys_readonly: Option<bool>,
    pub mask_proc_files: Option<bool>,
    pub host_cgroupfs_rw: Option<bool>,
    /// "none" (lo only, the default) or "bridge".
    pub network: Option<String>,
    /// Attach to the second bridge, which is not connected to the first.
    #[serde(default)]
    pub second_bridge: bool,
    /// Leave the veth's host end off the bridge.
    #[serde(default)]
    pub detached: bool,
    /// "HOST:CONTAINER" TCP port forward (DNAT).
    pub publish: Option<String>,
    /// Masquerade the first bridge's subnet out of the uplink.
    #[serde(default)]
    pub nat: bool,
    /// A user namespace mapping uid/gid 0-65535 inside to 100000-165535 outside.
    #[serde(default)]
    pub userns: bool,
    /// Protections switched off in this half (applied last). A control's
    /// own protection is named by `control.switch_off`; this is for the
    /// other layer that would also stop the attack, switched off in both
    /// halves so the proof says which layer held.
    #[serde(default)]
    pub switched_off: Vec<Protection>,
}

/// A scenario file that could not be loaded. The message names the file,
/// the line and the field.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{dir}: no scenario files (*.toml)")]
    Empty { dir: PathBuf },
    #[error("{file}: id {id} is also used by {other}")]
    DuplicateId {
        file: PathBuf,
        id: String,
        other: PathBuf,
    },
}

/// Line number (1-based) of a byte offset in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of the first `key =` or `[key]` in the text, for semantic errors.
fn line_of_key(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start();
            t.starts_with(&format!("{key} "))
                || t.starts_with(&format!("{key}="))
                || t.starts_with(&format!("[{key}"))
        })
        .map(|i| i + 1)
        .unwrap_or(1)
}

impl Scenario {
    /// Parses and checks one scenario file's text.
    pub fn parse(file: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let mut scenario: Scenario = toml::from_str(text).map_err(|e| ScenarioError::Invalid {
            file: file.to_owned(),
            line: e.span().map(|s| line_of(text, s.start)).unwrap_or(1),
            message: e.message().trim().to_string(),
        })?;
        scenario.file = file.to_owned();
        let invalid = |key: &str, message: String| ScenarioError::Invalid {
            file: file.to_owned(),
            line: line_of_key(text, key),
            message,
        };
        if scenario.id.is_empty()
            || !scenario
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(
                "id",
                format!(
                    "id: {:?} must be lowercase letters, digits and '-'",
                    scenario.id
                ),
            ));
        }
        let probes = [
            ("probe", Some(&scenario.run.probe)),
            ("companion", scenario.run.companion.as_ref()),
            ("peer", scenario.peer.as_ref()),
            ("outside", scenario.outside.as_ref()),
        ];
        for (key, argv) in probes {
            let Some(argv) = argv else { continue };
            match argv.first() {
                None => return Err(invalid(key, format!("{key}: empty; name a probe action"))),
                Some(action) if !PROBE_ACTIONS.contains(&action.as_str()) => {
                    return Err(invalid(
                        key,
                        format!("{key}: unknown probe action {action:?}"),
                    ))
                }
                Some(_) => {}
            }
        }
        if scenario.run.expect.is_empty() {
            return Err(invalid(
                "expect",
                "run.expect: no expectation; a run must check something".into(),
            ));
        }
        if scenario.control.expect.is_empty() {
            return Err(invalid(
                "expect",
                "control.expect: no expectation; the control must show the violation".into(),
            ));
        }
        for req in &scenario.requires {
            crate::requirements::Requirement::parse(req)
                .map_err(|m| invalid("requires", format!("requires: {m}")))?;
        }
        let overrides = |table: &toml::Table, section: &str| {
            ContainerOverrides::deserialize(toml::Value::Table(table.clone()))
                .map_err(|e| invalid("container", format!("{section}.container: {e}")))
        };
        scenario.run_container = overrides(&scenario.run.container, "run")?;
        let merged = merge_tables(&scenario.run.container, &scenario.control.container);
        scenario.control_container = overrides(&merged, "control")?;
        let proof = crate::proof::check_control(&scenario)
            .map_err(|m| invalid("switch_off", format!("control: {m}")))?;
        scenario.apply_switch_off = proof.apply_switch_off;
        Ok(scenario)
    }

    pub fn load(file: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(file).map_err(|source| ScenarioError::Read {
            file: file.to_owned(),
            source,
        })?;
        Scenario::parse(file, &text)
    }

    /// Whether the scenario needs the network testbed: a bridged container,
    /// a peer, an outside probe, or an argument naming one of its addresses.
    pub fn needs_network(&self) -> bool {
        let bridged = [&self.run_container, &self.control_container]
            .iter()
            .any(|c| c.network.as_deref() == Some("bridge"));
        let args = [Some(&self.run.probe), self.run.companion.as_ref()];
        let named = args.into_iter().flatten().flatten().any(|a| {
            ["{standin.", "{bridge.", "{uplink.", "{outside.", "{peer."]
                .iter()
                .any(|p| a.contains(p))
        });
        bridged || named || self.peer.is_some() || self.outside.is_some()
    }

    /// Whether any expectation of either half reads `field`.
    pub fn expects_field(&self, field: &str) -> bool {
        self.run
            .expect
            .iter()
            .chain(&self.control.expect)
            .any(|e| e.field == field || e.other_field() == Some(field))
    }

    /// The container changes of one half.
    pub fn container(&self, control: bool) -> &ContainerOverrides {
        if control {
            &self.control_container
        } else {
            &self.run_container
        }
    }
}

/// `over`'s keys replace `base`'s; tables (e.g. `namespaces`) merge key by key.
fn merge_tables(base: &toml::Table, over: &toml::Table) -> toml::Table {
    let mut out = base.clone();
    for (key, value) in over {
        match (out.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                *b = merge_tables(b, o);
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    out
}

/// Loads every `*.toml` in `dir`, sorted by file name. All files are checked
/// before anything runs: one bad file fails the whole load.
pub fn load_dir(dir: &Path) -> Result<Vec<Scenario>, ScenarioError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ScenarioError::Read {
        file: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(ScenarioError::Empty {
            dir: dir.to_owned(),
        });
    }
    let mut scenarios: Vec<Scenario> = Vec::with_capacity(files.len());
    for file in files {
        let s = Scenario::load(&file)?;
        if let Some(other) = scenarios.iter().find(|o| o.id == s.id) {
            return Err(ScenarioError::DuplicateId {
                file,
                id: s.id,
                other: other.file.clone(),
            });
        }
        scenarios.push(s);
    }
    Ok(scenarios)
}

/// The scenarios directory shipped with isocheck: `ISOCHECK_SCENARIOS`, else
/// `scenarios/` beside the workspace (for cargo runs), else next to the
/// binary (for copies such as the VM initramfs).
pub fn default_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ISOCHECK_SCENARIOS") {
        return PathBuf::from(dir);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    if workspace.is_dir() {
        return workspace;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("scenarios")))
        .unwrap_or_else(|| PathBuf::from("scenarios"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
id = "demo"
guarantee = "A demo."
observes = "nothing much"
kind = "process"

[run]
probe = ["pids"]
expect = [{ field = "probe.pid", eq = 1 }]

[control]
switch_off = "pid-namespace"
expect = [{ field = "probe.pid", ne = 1 }]
"#;

    fn err(text: &str) -> String {
        Scenario::parse(Path::new("scenarios/demo.toml"), text)
            .expect_err("must be refused")
            .to_string()
    }

    #[test]
    fn a_good_file_loads() {
        let s = Scenario::parse(Path::new("demo.toml"), GOOD).expect("loads");
        assert_eq!(s.id, "demo");
        assert_eq!(s.control.switch_off, Protection::PidNamespace);
        assert_eq!(s.control_container.namespaces.get("pid"), None);
        assert!(s.apply_switch_off);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let text = GOOD.replace(
            "kind = \"process\"",
            "kind = \"process\"\ncolour = \"blue\"",
        );
        let e = err(&text);
        assert!(e.starts_with("scenarios/demo.toml:6:"), "{e}");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let text = GOOD.replace("[control]", "[control");
        let e = err(&text);
        assert!(e.starts_with("scenarios/demo.toml:11:"), "{e}");
    }

    #[test]
    fn unknown_probe_action_is_refused() {
        let e = err(&GOOD.replace("probe = [\"pids\"]", "probe = [\"teleport\"]"));
        assert!(e.contains("unknown probe action \"teleport\""), "{e}");
        assert!(e.starts_with("scenarios/demo.toml:8:"), "{e}");
    }

    #[test]
    fn missing_expectation_is_refused() {
        let e = err(&GOOD.replace(
            "expect = [{ field = \"probe.pid\", eq = 1 }]",
            "expect = []",
        ));
        assert!(e.contains("run.expect: no expectation"), "{e}");
    }

    #[test]
    fn expectation_without_operator_is_refused() {
        let e = err(&GOOD.replace("eq = 1", "note = 1"));
        assert!(e.contains("note"), "{e}");
        // The loader names the file and line of the expectation.
        let e = err(&GOOD.replace(", eq = 1", ""));
        assert!(e.contains("demo.toml:9: probe.pid: no operator"), "{e}");
    }

    #[test]
    fn network_scenarios_are_recognised() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let all = load_dir(&dir).expect("shipped scenarios load");
        let net: Vec<_> = all
            .iter()
            .filter(|s| s.needs_network())
            .map(|s| s.id.as_str())
            .collect();
        assert!(net.contains(&"net-none-loopback-only"), "{net:?}");
        assert!(net.contains(&"net-port-forward"), "{net:?}");
        assert!(!net.contains(&"pid-namespace-init"), "{net:?}");
    }

    #[test]
    fn expects_field_sees_both_halves_and_field_comparisons() {
        let s = Scenario::parse(Path::new("demo.toml"), GOOD).expect("loads");
        assert!(s.expects_field("probe.pid"));
        assert!(!s.expects_field("host.image_unchanged"));
        let text = GOOD.replace("ne = 1", "ne_field = \"host.other\"");
        let s = Scenario::parse(Path::new("demo.toml"), &text).expect("loads");
        assert!(s.expects_field("host.other"));
    }

    #[test]
    fn shipped_scenarios_all_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        let scenarios = load_dir(&dir).expect("shipped scenarios load");
        assert!(scenarios.len() >= 11, "found {}", scenarios.len());
    }
}

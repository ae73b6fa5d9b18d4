//! From a scenario's container changes to a [`ContainerSpec`], and the rule
//! of a proof: a control is the run with exactly one protection switched
//! off. The loader calls [`check_control`] on every file, so a control that
//! changes two protections (or anything that is not a protection) never
//! runs.

use crate::scenario::{ContainerOverrides, Scenario};
use isocheck_runtime::protection::changed_protections;
use isocheck_runtime::spec::{
    self as rspec, BridgeAttachment, ContainerSpec, NetworkMode, PortForward, RootEntry,
    RootfsSource,
};
use isocheck_runtime::Protection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Memory limit of every scenario container unless it sets its own.
pub const DEFAULT_MEMORY: &str = "256M";
/// Task limit of every scenario container unless it sets its own.
pub const DEFAULT_PIDS: u64 = 128;
/// First host uid/gid of the user-namespace mapping scenarios use.
pub const USERNS_BASE: u32 = 100_000;
/// The hostname scenario containers get in their UTS namespace.
pub const CONTAINER_HOSTNAME: &str = "isocheck-ctr";

/// Bridge names in specs built before the testbed exists; the runner puts
/// the testbed's real attachment in their place.
const FIRST_BRIDGE: &str = "first";
const SECOND_BRIDGE: &str = "second";

/// What the loader learnt about a valid control.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlProof {
    /// The runner must still apply `Protection::switch_off` (the control's
    /// keys did not already change that protection).
    pub apply_switch_off: bool,
}

/// Checks that the control differs from the run in `switch_off` alone.
pub fn check_control(s: &Scenario) -> Result<ControlProof, String> {
    let p = s.control.switch_off;
    let vars = BTreeMap::new();
    let image = Path::new("/image");
    let run = build_spec(&s.run_container, &s.run.probe, &vars, image)?;
    let mut control = build_spec(&s.control_container, &s.run.probe, &vars, image)?;
    let changed_by_keys = changed(&run, &control, &s.run_container, &s.control_container);
    let apply_switch_off = !changed_by_keys.contains(&p);
    if apply_switch_off {
        p.switch_off(&mut control);
    }
    let found = changed(&run, &control, &s.run_container, &s.control_container);
    if found != BTreeSet::from([p]) {
        let names: Vec<&str> = found.iter().map(|p| p.name()).collect();
        return Err(format!(
            "switch_off = {:?} must be the one protection the control changes; it changes [{}]",
            p.name(),
            names.join(", ")
        ));
    }
    // Beyond its protection, the control's container must be the run's.
    let mut expected = run.clone();
    copy_protection_fields(p, &control, &mut expected);
    if normalized(&expected) != normalized(&control) {
        return Err(format!(
            "the control changes the container beyond {p}: run {:?} vs control {:?}",
            normalized(&run),
            normalized(&control)
        ));
    }
    if !p.in_spec() && s.control_container.nat == s.run_container.nat {
        return Err(format!(
            "switch_off = {:?} but the control keeps it",
            p.name()
        ));
    }
    Ok(ControlProof { apply_switch_off })
}

/// The protections two halves differ in, the harness-level ones included.
fn changed(
    a: &ContainerSpec,
    b: &ContainerSpec,
    oa: &ContainerOverrides,
    ob: &ContainerOverrides,
) -> BTreeSet<Protection> {
    let mut set = changed_protections(a, b);
    if oa.nat != ob.nat {
        set.insert(Protection::Masquerade);
    }
    set
}

/// Copies the fields `p` owns from `from` into `to`, by switching it off in
/// `to` and then taking the limits' values (a control may raise a limit by
/// another factor than the default).
fn copy_protection_fields(p: Protection, from: &ContainerSpec, to: &mut ContainerSpec) {
    p.switch_off(to);
    match p {
        Protection::MemoryLimit => to.limits.memory_bytes = from.limits.memory_bytes,
        Protection::PidsLimit => to.limits.pids = from.limits.pids,
        Protection::NofileLimit => to.limits.nofile = from.limits.nofile,
        Protection::NprocLimit => to.limits.nproc = from.limits.nproc,
        Protection::NoSwap => to.limits.swap_bytes = from.limits.swap_bytes,
        Protection::CapabilityDrop => to.capabilities = from.capabilities.clone(),
        _ => {}
    }
}

/// A spec with the parts that legitimately differ between halves made
/// equal: the probe's path (a host path without a mount namespace), and the
/// order of kept capabilities.
fn normalized(spec: &ContainerSpec) -> ContainerSpec {
    let mut s = spec.clone();
    if let Some(first) = s.command.first_mut() {
        *first = String::from("/probe");
    }
    s.capabilities.sort();
    s
}

/// The default scenario container with `o`'s changes, running the probe
/// with `probe_args`. A bridged container gets a stand-in attachment naming
/// its bridge; the runner replaces it with the testbed's.
pub fn build_spec(
    o: &ContainerOverrides,
    probe_args: &[String],
    vars: &BTreeMap<String, String>,
    image: &Path,
) -> Result<ContainerSpec, String> {
    let mut spec = ContainerSpec::default();
    spec.rootfs.source = RootfsSource::Dir(image.to_owned());
    for (name, on) in &o.namespaces {
        let ns = &mut spec.namespaces;
        let slot = match name.as_str() {
            "pid" => &mut ns.pid,
            "mount" => &mut ns.mount,
            "uts" => &mut ns.uts,
            "ipc" => &mut ns.ipc,
            "net" => &mut ns.net,
            "cgroup" => &mut ns.cgroup,
            "time" => &mut ns.time,
            "user" => &mut ns.user,
            other => return Err(format!("container.namespaces: unknown namespace {other:?}")),
        };
        *slot = *on;
    }
    spec.hostname = match &o.hostname {
        // "": none in the spec (the runtime then names it after the container).
        Some(h) if h.is_empty() => None,
        Some(h) => Some(h.clone()),
        None if spec.namespaces.uts => Some(CONTAINER_HOSTNAME.into()),
        None => None,
    };
    spec.capabilities = match &o.capabilities {
        Some(caps) if caps.iter().any(|c| c == "ALL") => isocheck_runtime::caps::all_names(),
        Some(caps) => caps.clone(),
        None => Vec::new(),
    };
    let memory = o.memory.as_deref().unwrap_or(DEFAULT_MEMORY);
    spec.limits.memory_bytes =
        Some(rspec::parse_memory(memory).map_err(|e| format!("container.memory: {e}"))?);
    spec.limits.pids = Some(o.pids.unwrap_or(DEFAULT_PIDS));
    if let Some(cpus) = &o.cpus {
        spec.limits.cpu =
            Some(rspec::parse_cpus(cpus).map_err(|e| format!("container.cpus: {e}"))?);
    }
    if let Some(set) = &o.cpuset {
        spec.limits.cpuset =
            Some(rspec::parse_cpuset(set).map_err(|e| format!("container.cpuset: {e}"))?);
    }
    apply_resource_overrides(o, vars, &mut spec.limits)?;
    for bind in &o.binds {
        spec.mounts.push(
            rspec::parse_bind(&expand(bind, vars)).map_err(|e| format!("container.binds: {e}"))?,
        );
    }
    if let Some(overlay) = o.overlay {
        spec.rootfs.overlay = overlay;
    }
    spec.rootfs.entry = match o.root_entry.as_deref() {
        None | Some("pivot_root") => RootEntry::PivotRoot,
        Some("chroot_only") => RootEntry::ChrootOnly,
        Some(other) => {
            return Err(format!(
                "container.root_entry: {other:?} is not pivot_root or chroot_only"
            ))
        }
    };
    if let Some(secs) = o.time_offset_secs {
        spec.time_offsets.monotonic_secs = secs;
        spec.time_offsets.boottime_secs = secs;
    }
    if let Some(v) = o.proc_sys_readonly {
        spec.kernel_files.proc_sys_readonly = v;
    }
    if let Some(v) = o.mask_proc_files {
        spec.kernel_files.mask_proc_files = v;
    }
    if let Some(v) = o.host_cgroupfs_rw {
        spec.kernel_files.host_cgroupfs_rw = v;
    }
    if o.userns {
        with_user_namespace(&mut spec);
    }
    match o.network.as_deref() {
        None | Some("none") => {}
        Some("bridge") => {
            let publish = match &o.publish {
                Some(p) => vec![parse_publish(p)?],
                None => Vec::new(),
            };
            spec.network = NetworkMode::Bridge(BridgeAttachment {
                bridge: if o.second_bridge {
                    SECOND_BRIDGE
                } else {
                    FIRST_BRIDGE
                }
                .into(),
                address: String::new(),
                gateway: None,
                address6: None,
                gateway6: None,
                publish,
                detached: o.detached,
            });
        }
        Some(other) => {
            return Err(format!(
                "container.network: {other:?} is not \"none\" or \"bridge\""
            ))
        }
    }
    for p in &o.switched_off {
        if !p.in_spec() {
            return Err(format!(
                "container.switched_off: {p} is not part of a container's spec"
            ));
        }
        p.switch_off(&mut spec);
    }
    // Without a mount namespace the container sees the host's files, so
    // the probe is named by its host path.
    let probe = if spec.namespaces.mount {
        "/probe".to_string()
    } else {
        image.join("probe").display().to_string()
    };
    spec.command = std::iter::once(probe)
        .chain(expand_all(probe_args, vars))
        .collect();
    Ok(spec)
}

/// The limits beyond memory, pids, cpu and cpuset.
fn apply_resource_overrides(
    o: &ContainerOverrides,
    vars: &BTreeMap<String, String>,
    l: &mut rspec::Limits,
) -> Result<(), String> {
    if let Some(high) = &o.memory_high {
        l.memory_high_bytes =
            Some(rspec::parse_memory(high).map_err(|e| format!("container.memory_high: {e}"))?);
    }
    if let Some(swap) = &o.swap {
        l.swap_bytes = rspec::parse_memory(swap).map_err(|e| format!("container.swap: {e}"))?;
    }
    l.oom_group = o.oom_group.unwrap_or(false);
    l.cpu_weight = o.cpu_weight;
    for rate in &o.device_write_bps {
        l.io_write_bps.push(
            rspec::parse_device_rate(&expand(rate, vars))
                .map_err(|e| format!("container.device_write_bps: {e}"))?,
        );
    }
    l.nofile = o.nofile;
    l.nproc = o.nproc;
    l.oom_score_adj = o.oom_score_adj;
    Ok(())
}

/// Whether a spec built by [`build_spec`] asks for the second bridge.
pub fn on_second_bridge(att: &BridgeAttachment) -> bool {
    att.bridge == SECOND_BRIDGE
}

/// Gives the spec a user namespace mapping uid/gid 0-65535 inside to
/// [`USERNS_BASE`]..+65536 outside.
pub fn with_user_namespace(spec: &mut ContainerSpec) {
    let map = vec![rspec::IdMap {
        inside: 0,
        outside: USERNS_BASE,
        count: 65536,
    }];
    spec.namespaces.user = true;
    spec.user = Some(rspec::UserMapping {
        uid_map: map.clone(),
        gid_map: map,
    });
}

/// A `HOST:CONTAINER` TCP port forward.
pub fn parse_publish(text: &str) -> Result<PortForward, String> {
    let bad = || format!("{text:?} is not HOST:CONTAINER (two ports 1-65535)");
    let (h, c) = text.split_once(':').ok_or_else(bad)?;
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p > 0);
    Ok(PortForward {
        host_port: port(h).ok_or_else(bad)?,
        container_port: port(c).ok_or_else(bad)?,
    })
}

/// `{name}` placeholders filled from `vars`; unknown ones are left as they are.
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

pub fn expand_all(args: &[String], vars: &BTreeMap<String, String>) -> Vec<String> {
    args.iter().map(|a| expand(a, vars)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn scenario(run_container: &str, control: &str) -> Result<Scenario, String> {
        let text = format!(
            r#"
id = "demo"
guarantee = "A demo."
observes = "nothing"
kind = "process"

[run]
probe = ["pids"]
container = {{ {run_container} }}
expect = [{{ field = "probe.pid", eq = 1 }}]

[control]
{control}
expect = [{{ field = "probe.pid", ne = 1 }}]
"#
        );
        Scenario::parse(Path::new("demo.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn one_protection_switched_off_by_name_is_accepted() {
        let s = scenario("", r#"switch_off = "pid-namespace""#).expect("loads");
        assert!(s.apply_switch_off);
    }

    #[test]
    fn a_control_changing_two_protections_is_refused_naming_both() {
        let e = scenario(
            "",
            r#"switch_off = "pid-namespace"
container = { capabilities = ["CAP_SYS_PTRACE"] }"#,
        )
        .expect_err("two protections");
        assert!(e.contains("demo.toml:"), "{e}");
        assert!(e.contains("[pid-namespace, capability-drop]"), "{e}");
    }

    #[test]
    fn a_raised_limit_is_that_protection_alone() {
        let s = scenario(
            "pids = 32",
            r#"switch_off = "pids-limit"
container = { pids = 256 }"#,
        )
        .expect("loads");
        assert!(!s.apply_switch_off);
        let e = scenario(
            "pids = 32",
            r#"switch_off = "memory-limit"
container = { pids = 256 }"#,
        )
        .expect_err("wrong protection");
        assert!(e.contains("[memory-limit, pids-limit]"), "{e}");
    }

    #[test]
    fn a_control_that_changes_nothing_of_its_protection_is_refused() {
        // Masquerade lives outside the spec: the control must turn NAT off.
        let e = scenario(
            r#"network = "bridge", nat = true"#,
            r#"switch_off = "masquerade"
container = { nat = true }"#,
        )
        .expect_err("keeps nat");
        assert!(e.contains("[]"), "{e}");
        scenario(
            r#"network = "bridge", nat = true"#,
            r#"switch_off = "masquerade"
container = { nat = false }"#,
        )
        .expect("nat off");
    }

    #[test]
    fn a_control_changing_a_non_protection_field_is_refused() {
        let e = scenario(
            "",
            r#"switch_off = "pid-namespace"
container = { hostname = "other" }"#,
        )
        .expect_err("hostname");
        assert!(e.contains("beyond pid-namespace"), "{e}");
    }

    #[test]
    fn an_unknown_protection_is_refused() {
        let e = scenario("", r#"switch_off = "pid namespace""#).expect_err("unknown");
        assert!(
            e.contains("switch_off") || e.contains("unknown variant"),
            "{e}"
        );
    }
}

//! An OCI runtime (runc) runs the probe from a bundle built by
//! `oci::build_config`, the pids limit lands in the container's cgroup, and
//! a wrapper around runc that drops `linux.resources.pids` from config.json
//! is caught: the same host-side check then sees no limit. Nothing is left
//! behind: state dir, cgroup, bundle. Needs root and runc (and jq for the
//! wrapper); each missing piece is a printed skip.

#![cfg(feature = "privileged")]
#![allow(clippy::unwrap_used)]

use isocheck_harness::fixtures;
use isocheck_harness::oci::{build_config, runtime::v1_cgroup_dir, Bundle, BundleInputs};
use isocheck_harness::oci::{OciContainer, OciRuntime, RuntimeError};
use isocheck_runtime::spec::ContainerSpec;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the host saw of one run: pids.max of the container's cgroup (read
/// between create and start), the probe's stdout, and whether the cgroup
/// and state were gone after delete.
struct Seen {
    pids_max: String,
    stdout: String,
    cgroup_left: bool,
    state_left: bool,
}

fn run_once(
    runtime: &OciRuntime,
    dir: &Path,
    image: &Path,
    id: &str,
) -> Result<Seen, RuntimeError> {
    let mut spec = ContainerSpec {
        command: vec!["/probe".into(), "pids".into()],
        ..Default::default()
    };
    spec.limits.pids = Some(32);
    spec.limits.memory_bytes = Some(64 << 20);
    spec.namespaces.net = false; // no netns of the harness here
    let bundle = Bundle::create(&dir.join(format!("bundle-{id}")), image, false).unwrap();
    let config = build_config(
        &spec,
        &BundleInputs {
            rootfs: bundle.rootfs(image),
            netns: None,
            cgroups_path: format!("/isocheck/{id}"),
        },
    )
    .unwrap();
    bundle.write_config(&config).unwrap();
    let state = dir.join("state");
    let (mut c, io) = OciContainer::create(runtime, &state, &bundle.dir, id)?;
    drop(io.stdin);
    let mut out = io.stdout;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let cg = v1_cgroup_dir(c.pid(), "pids").expect("the container's pids cgroup");
    let pids_max = std::fs::read_to_string(cg.join("pids.max"))
        .unwrap()
        .trim()
        .to_string();
    c.start().unwrap();
    c.wait_stopped(Instant::now() + Duration::from_secs(20))
        .unwrap();
    c.delete();
    Ok(Seen {
        pids_max,
        stdout: reader.join().unwrap(),
        cgroup_left: cg.exists(),
        state_left: state.join(id).exists(),
    })
}

fn check_enforced(seen: &Seen, name: &str) {
    assert_eq!(
        seen.pids_max, "32",
        "{name} left pids.max at {}",
        seen.pids_max
    );
    assert!(
        seen.stdout.contains("\"pid\":1"),
        "probe said {:?}",
        seen.stdout
    );
    assert!(!seen.cgroup_left, "{name} left its cgroup");
    assert!(!seen.state_left, "{name} left its state dir");
}

/// The runtime, a temp dir of ours and the probe's image in it; `None`
/// (with the reason printed) without root or without the runtime.
fn setup(name: &str) -> Option<(OciRuntime, tempfile::TempDir, PathBuf)> {
    if !nix::unistd::geteuid().is_root() {
        println!("skip: needs root");
        return None;
    }
    let Ok(runtime) = OciRuntime::resolve(name) else {
        println!("skip: {name} not on PATH");
        return None;
    };
    let dir = tempfile::Builder::new()
        .prefix("isocheck-oci-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("image");
    fixtures::build_image(&image, &fixtures::probe_binary().unwrap()).unwrap();
    Some((runtime, dir, image))
}

/// The same bundle through crun, when installed.
#[test]
fn crun_applies_the_pids_limit() {
    let Some((crun, dir, image)) = setup("crun") else {
        return;
    };
    let id = format!("isocheck-oci-crun-{}", std::process::id());
    match run_once(&crun, dir.path(), &image, &id) {
        Ok(seen) => check_enforced(&seen, "crun"),
        // A config the runtime refuses is `unsupported`, with its own words
        // (crun 1.8 on a hybrid host); it must still leave nothing.
        Err(RuntimeError::Refused { step, stderr }) => {
            assert!(
                !dir.path().join("state").join(&id).exists(),
                "crun left state after refusing"
            );
            println!("unsupported: crun refused at {step}: {stderr}");
        }
        Err(e) => panic!("crun: {e}"),
    }
}

#[test]
fn runc_applies_the_pids_limit_and_a_wrapper_that_drops_it_is_caught() {
    let Some((runc, dir, image)) = setup("runc") else {
        return;
    };
    let id = format!("isocheck-oci-{}", std::process::id());

    let seen = run_once(&runc, dir.path(), &image, &id).unwrap();
    check_enforced(&seen, "runc");

    if OciRuntime::resolve("jq").is_err() {
        println!("skip: the wrapper half needs jq");
        return;
    }
    // The wrapper: runc's command line, but config.json loses the pids
    // limit before create.
    let wrapper = dir.path().join("runc-without-pids");
    std::fs::write(
        &wrapper,
        format!(
            r#"#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    jq 'del(.linux.resources.pids)' "$a/config.json" > "$a/config.json.new" && mv "$a/config.json.new" "$a/config.json"
  fi
  prev="$a"
done
exec {} "$@"
"#,
            runc.path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let wrapped = OciRuntime::resolve(wrapper.to_str().unwrap()).unwrap();
    let seen = run_once(&wrapped, dir.path(), &image, &format!("{id}-w")).unwrap();
    assert_eq!(
        seen.pids_max, "max",
        "the wrapper's container should have no pids limit"
    );
    assert!(
        !seen.cgroup_left && !seen.state_left,
        "wrapper run left state"
    );
}

/// A half through runc reports what our own runtime's half would: the OOM
/// kill as the init's signal (the harness is its subreaper) and the
/// kernel's count in the cgroup runc made, read before delete; then the
/// cgroup, state and bundle are gone.
#[test]
fn runc_half_reports_an_oom_kill_with_its_counter() {
    let Some((runc, dir, image)) = setup("runc") else {
        return;
    };
    let id = format!("isocheck-ocihalf-{}", std::process::id());
    let mut spec = ContainerSpec {
        command: vec![
            "/probe".into(),
            "alloc".into(),
            "--mib".into(),
            "128".into(),
        ],
        ..Default::default()
    };
    spec.limits.memory_bytes = Some(32 << 20);
    spec.limits.pids = Some(64);
    spec.namespaces.net = false;
    let seen = isocheck_harness::oci::run_half(&isocheck_harness::oci::HalfRequest {
        runtime: &runc,
        spec: &spec,
        image: &image,
        dir: dir.path(),
        id: &id,
        deadline: Instant::now() + Duration::from_secs(30),
        veth_hint: "t1",
    })
    .unwrap();
    assert_eq!(seen.exit_signal, Some(9), "{seen:?}");
    assert!(!seen.timed_out, "{seen:?}");
    assert!(
        seen.cgroup["oom_kills"].as_u64().is_some_and(|n| n >= 1),
        "{seen:?}"
    );
    assert!(seen.namespaces.contains_key("pid"), "{seen:?}");
    let manager = isocheck_runtime::cgroups::CgroupManager::detect().unwrap();
    assert!(manager.view(&id).is_err(), "runc left isocheck/{id}");
    assert!(!dir.path().join("oci-state").join(&id).exists());
    assert!(!dir.path().join(format!("bundle-{id}")).exists());
}

/// `isocheck run --runtime`: the same scenarios through runc, and through a
/// wrapper that drops `linux.maskedPaths` from config.json before runc sees
/// it: the masked-files guarantee turns red with the wrapper only, the
/// others stay green. The verdicts come from the JSON report.
#[test]
fn run_through_runc_and_a_wrapper_that_drops_masked_paths_is_caught() {
    let Some((runc, dir, _image)) = setup("runc") else {
        return;
    };
    if OciRuntime::resolve("jq").is_err() {
        println!("skip: the wrapper needs jq");
        return;
    }
    let wrapper = dir.path().join("runc-without-masks");
    std::fs::write(
        &wrapper,
        format!(
            r#"#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--bundle" ]; then
    jq 'del(.linux.maskedPaths)' "$a/config.json" > "$a/config.json.new" && mv "$a/config.json.new" "$a/config.json"
  fi
  prev="$a"
done
exec {} "$@"
"#,
            runc.path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let verdicts = |runtime: &str, name: &str| {
        let json = dir.path().join(format!("{name}.json"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_isocheck"))
            .args(["run", "--runtime", runtime, "--json"])
            .arg(&json)
            .args([
                "--only",
                "masked-proc-files,pid-namespace-init,capabilities-dropped",
            ])
            .output()
            .unwrap();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_else(|e| {
                panic!(
                    "no report ({e}); stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            }))
            .unwrap();
        assert_eq!(report["environment"]["runtime"]["name"], name);
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_string(),
                    r["verdict"].as_str().unwrap().to_string(),
                )
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let plain = verdicts("runc", "runc");
    assert!(plain.values().all(|v| v == "pass"), "runc: {plain:?}");
    let wrapped = verdicts(wrapper.to_str().unwrap(), "runc-without-masks");
    assert_eq!(wrapped["masked-proc-files"], "fail", "{wrapped:?}");
    assert_eq!(wrapped["pid-namespace-init"], "pass", "{wrapped:?}");
    assert_eq!(wrapped["capabilities-dropped"], "pass", "{wrapped:?}");
}

/// A network scenario through runc: the harness makes the container's
/// netns (a bound file, named in config.json), attaches its veth with the
/// published port's DNAT, and the control (nothing published) shows the
/// violation. The run's directory, where the netns file was, is gone.
#[test]
fn a_port_forward_through_runc_passes_on_the_harness_netns() {
    let Some((_runc, _dir, _image)) = setup("runc") else {
        return;
    };
    if OciRuntime::resolve("nft").is_err() {
        println!("skip: net-port-forward needs nft");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("net.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_isocheck"))
        .args([
            "run",
            "--runtime",
            "runc",
            "--only",
            "net-port-forward",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let report: serde_json::Value = serde_json::from_str(&text).unwrap();
    let r = &report["results"][0];
    assert_eq!(r["id"], "net-port-forward");
    assert_eq!(r["verdict"], "pass", "{r:#}");
    assert_eq!(r["control_violation_observed"], true, "{r:#}");
    // runc joined a netns that is not the stand-in's: PID 1's net inode
    // was read from the host side.
    assert!(r["observed"]["run"]["namespaces"]["net"].is_u64(), "{r:#}");
    let rundir = r["observed"]["run"]["vars"]["rundir"].as_str().unwrap();
    assert!(!Path::new(rundir).exists(), "{rundir} left behind");
}

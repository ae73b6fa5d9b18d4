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
use isocheck_harness::oci::{OciContainer, OciRuntime};
use isocheck_runtime::spec::ContainerSpec;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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

fn run_once(runtime: &OciRuntime, dir: &Path, image: &Path, id: &str) -> Seen {
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
    let mut c = OciContainer::create(runtime, &state, &bundle.dir, id).unwrap();
    let cg = v1_cgroup_dir(c.pid(), "pids").expect("the container's pids cgroup");
    let pids_max = std::fs::read_to_string(cg.join("pids.max"))
        .unwrap()
        .trim()
        .to_string();
    c.start().unwrap();
    let stopped = c.wait(Instant::now() + Duration::from_secs(20)).unwrap();
    c.delete();
    Seen {
        pids_max,
        stdout: stopped.stdout,
        cgroup_left: cg.exists(),
        state_left: state.join(id).exists(),
    }
}

#[test]
fn runc_applies_the_pids_limit_and_a_wrapper_that_drops_it_is_caught() {
    if !nix::unistd::geteuid().is_root() {
        println!("skip: needs root");
        return;
    }
    let Ok(runc) = OciRuntime::resolve("runc") else {
        println!("skip: runc not on PATH");
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("isocheck-oci-")
        .tempdir()
        .unwrap();
    let image = dir.path().join("image");
    fixtures::build_image(&image, &fixtures::probe_binary().unwrap()).unwrap();
    let id = format!("isocheck-oci-{}", std::process::id());

    let seen = run_once(&runc, dir.path(), &image, &id);
    assert_eq!(
        seen.pids_max, "32",
        "runc left pids.max at {}",
        seen.pids_max
    );
    assert!(
        seen.stdout.contains("\"pid\":1"),
        "probe said {:?}",
        seen.stdout
    );
    assert!(!seen.cgroup_left, "runc left its cgroup");
    assert!(!seen.state_left, "runc left its state dir");

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
    let seen = run_once(&wrapped, dir.path(), &image, &format!("{id}-w"));
    assert_eq!(
        seen.pids_max, "max",
        "the wrapper's container should have no pids limit"
    );
    assert!(
        !seen.cgroup_left && !seen.state_left,
        "wrapper run left state"
    );
}

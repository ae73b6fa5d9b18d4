//! Unit tests of the whole module against fake trees (no root needed): one
//! per layout, plus names, rollback and leftovers.

use std::path::Path;

use super::testing::{cg, fake_hybrid_host, fake_v1_host, fake_v2_host, read};
use super::*;
use crate::spec::{CpuQuota, CpuSet};

fn all_limits() -> Limits {
    Limits {
        memory_bytes: Some(32 << 20),
        pids: Some(16),
        cpu: Some(CpuQuota {
            quota_us: 20_000,
            period_us: 100_000,
        }),
        cpuset: Some(CpuSet {
            cpus: "1".into(),
            mems: None,
        }),
        ..Limits::default()
    }
}

#[test]
fn cgroup_v1_fake_tree_create_writes_every_limit() {
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    assert_eq!(manager.mode(), CgroupMode::V1);
    assert_eq!(manager.available_controllers(), Controller::ALL.to_vec());

    let cgroup = manager.create("run1-web", &all_limits()).expect("create");
    let memory = cg(&root, "memory/isocheck/run1-web");
    assert_eq!(read(memory.join("memory.limit_in_bytes")), "33554432");
    // memsw caps swap where some swap is on; elsewhere it would only be a
    // second memory limit, and swappiness 0 keeps later swap out.
    let swap_on =
        std::fs::read_to_string("/proc/swaps").map_or(true, |t| super::memory::swap_kib(&t) > 0);
    let (memsw, swappiness) = if swap_on {
        ("33554432", "60\n")
    } else {
        (super::testing::V1_UNLIMITED, "0")
    };
    assert_eq!(read(memory.join("memory.memsw.limit_in_bytes")), memsw);
    assert_eq!(read(memory.join("memory.swappiness")), swappiness);
    assert_eq!(read(cg(&root, "pids/isocheck/run1-web/pids.max")), "16");
    let cpu = cg(&root, "cpu,cpuacct/isocheck/run1-web");
    assert_eq!(read(cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "20000");
    // The shared parent was seeded from the root, the child from the parent.
    assert_eq!(read(cg(&root, "cpuset/isocheck/cpuset.cpus")), "0-1");
    assert_eq!(read(cg(&root, "cpuset/isocheck/cpuset.mems")), "0");
    assert_eq!(read(cg(&root, "cpuset/isocheck/run1-web/cpuset.cpus")), "1");
    assert_eq!(read(cg(&root, "cpuset/isocheck/run1-web/cpuset.mems")), "0");

    // cpu and cpuacct share a directory: five hierarchies, five dirs.
    let paths = cgroup.paths();
    assert_eq!(paths.len(), 5, "{paths:?}");
    assert!(paths.contains(&cg(&root, "freezer/isocheck/run1-web")));
    assert!(cgroup.unified_path().is_none());

    let stats = cgroup.stats().expect("stats");
    assert_eq!(stats.memory_limit_bytes, Some(32 << 20));
    assert_eq!(stats.oom_kills, Some(0));
    assert_eq!(stats.pids_limit_hits, Some(0));
    assert_eq!(stats.cpu_usage_usec, Some(0));

    cgroup.add_process(4242).expect("add");
    for p in &paths {
        assert_eq!(read(p.join("cgroup.procs")), "4242");
        // Empty it again, or the kill on drop would wait for a task that
        // never leaves (it would not signal it: the file is not cgroupfs).
        std::fs::write(p.join("cgroup.procs"), "").expect("write");
    }
}

#[test]
fn cgroup_v1_without_cpuset_limit_makes_no_cpuset_dir() {
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let limits = Limits {
        pids: Some(8),
        ..Limits::default()
    };
    let cgroup = manager.create("c", &limits).expect("create");
    assert!(!cg(&root, "cpuset/isocheck").exists());
    assert_eq!(cgroup.paths().len(), 4);
    // No memory limit asked: the file keeps the kernel's unlimited value.
    assert_eq!(cgroup.stats().expect("stats").memory_limit_bytes, None);
}

#[test]
fn cgroup_v1_kill_freezes_thaws_and_remove_leaves_nothing() {
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let cgroup = manager.create("k", &all_limits()).expect("create");
    cgroup.kill_all().expect("kill");
    assert_eq!(
        read(cg(&root, "freezer/isocheck/k/freezer.state")),
        "THAWED"
    );
    let paths = cgroup.paths();
    cgroup.remove().expect("remove");
    for p in paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    assert!(manager.leftovers().is_empty());
}

#[test]
fn cgroup_v2_fake_tree_create_enables_and_writes() {
    // A systemd host: the root already delegates every controller.
    let (root, mountinfo) = fake_v2_host(
        "cpuset cpu io memory hugetlb pids\n",
        "cpuset cpu io memory pids\n",
    );
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    assert_eq!(manager.mode(), CgroupMode::V2);
    let cgroup = manager.create("run1-db", &all_limits()).expect("create");

    let node = cg(&root, "isocheck/run1-db");
    assert_eq!(cgroup.paths(), vec![node.clone()]);
    assert_eq!(cgroup.unified_path(), Some(node.as_path()));
    assert_eq!(read(node.join("memory.max")), "33554432");
    assert_eq!(read(node.join("memory.swap.max")), "0");
    assert_eq!(read(node.join("pids.max")), "16");
    assert_eq!(read(node.join("cpu.max")), "20000 100000");
    assert_eq!(read(node.join("cpuset.cpus")), "1");
    // Root untouched; the parent got writes (the fake keeps only the last).
    assert_eq!(
        read(cg(&root, "cgroup.subtree_control")),
        "cpuset cpu io memory pids\n"
    );
    assert!(read(cg(&root, "isocheck/cgroup.subtree_control")).starts_with('+'));

    cgroup.kill_all().expect("kill");
    assert_eq!(read(node.join("cgroup.kill")), "1");
    cgroup.remove().expect("remove");
    assert!(!node.exists());
}

#[test]
fn cgroup_v2_bare_root_gets_controllers_enabled() {
    let (root, mountinfo) = fake_v2_host("memory pids\n", "");
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    assert_eq!(
        manager.available_controllers(),
        vec![Controller::Memory, Controller::Pids]
    );
    let _cgroup = manager.create("c", &Limits::default()).expect("create");
    assert_eq!(read(cg(&root, "cgroup.subtree_control")), "+pids");
}

#[test]
fn cgroup_v2_missing_controller_is_refused_before_anything_is_made() {
    let (root, mountinfo) = fake_v2_host("memory pids\n", "memory pids\n");
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let err = manager
        .create("c", &all_limits())
        .expect_err("no cpu controller");
    assert!(
        matches!(
            err,
            CgroupError::ControllerUnavailable {
                controller: Controller::Cpu,
                ..
            }
        ),
        "{err}"
    );
    assert!(!cg(&root, "isocheck").exists());
}

#[test]
fn cgroup_hybrid_fake_tree_limits_on_v1_kill_on_unified() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    assert_eq!(manager.mode(), CgroupMode::Hybrid);
    assert_eq!(manager.available_controllers(), Controller::ALL.to_vec());
    let cgroup = manager.create("run1-app", &all_limits()).expect("create");

    let unified = cg(&root, "unified/isocheck/run1-app");
    assert_eq!(cgroup.unified_path(), Some(unified.as_path()));
    // cpuset, memory, pids, cpu, cpuacct, freezer + unified.
    assert_eq!(cgroup.paths().len(), 7, "{:?}", cgroup.paths());
    assert_eq!(
        read(cg(&root, "memory/isocheck/run1-app/memory.limit_in_bytes")),
        "33554432"
    );
    assert_eq!(read(cg(&root, "pids/isocheck/run1-app/pids.max")), "16");
    assert_eq!(
        read(cg(&root, "cpu/isocheck/run1-app/cpu.cfs_quota_us")),
        "20000"
    );
    assert_eq!(read(cg(&root, "cpuset/isocheck/run1-app/cpuset.cpus")), "1");
    // The unified root offers no controller of ours: nothing enabled there.
    assert_eq!(read(cg(&root, "unified/cgroup.subtree_control")), "");
    // Usage comes from the separate cpuacct hierarchy.
    std::fs::write(
        cg(&root, "cpuacct/isocheck/run1-app/cpuacct.usage"),
        "2500000\n",
    )
    .expect("write");
    assert_eq!(cgroup.stats().expect("stats").cpu_usage_usec, Some(2500));

    cgroup.kill_all().expect("kill");
    assert_eq!(read(unified.join("cgroup.kill")), "1");
    assert_eq!(
        read(cg(&root, "freezer/isocheck/run1-app/freezer.state")),
        "THAWED\n",
        "freezer not needed"
    );
}

#[test]
fn cgroup_failed_create_removes_what_it_made() {
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let mut limits = all_limits();
    limits.cpu = Some(CpuQuota {
        quota_us: 1,
        period_us: 1,
    });
    // Make the pids write fail the way a kernel refusal would look.
    std::fs::remove_dir_all(cg(&root, "pids")).expect("rm");
    std::fs::create_dir(cg(&root, "pids")).expect("mkdir");
    let err = manager.create("c", &limits).expect_err("pids.max missing");
    let text = err.to_string();
    assert!(text.starts_with("write 16 to "), "{text}");
    assert!(text.contains("pids/isocheck/c/pids.max"), "{text}");
    assert!(manager.leftovers().is_empty(), "{:?}", manager.leftovers());
}

#[test]
fn cgroup_names_that_are_paths_are_refused() {
    for bad in ["", ".", "..", "a/b", "../x", "x y", "é", &"n".repeat(129)] {
        assert!(
            matches!(validate_name(bad), Err(CgroupError::InvalidName { .. })),
            "{bad:?} accepted"
        );
    }
    for good in ["run-1_a.b", "0123abcd-web"] {
        validate_name(good).expect("valid name");
    }
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    assert!(manager.create("..", &Limits::default()).is_err());
    assert!(!cg(&root, "memory/isocheck").exists());
}

#[test]
fn cgroup_existing_name_is_an_error_not_a_takeover() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let first = manager.create("same", &Limits::default()).expect("create");
    let err = manager
        .create("same", &Limits::default())
        .expect_err("exists");
    // Refused at its owner record, before any directory is touched.
    assert!(matches!(err, CgroupError::OwnerRecord { .. }), "{err}");
    // The failed second create must not have removed the first one's dirs
    // nor its record.
    for p in first.paths() {
        assert!(p.exists(), "{} removed by the failed create", p.display());
        assert!(manager.owner_of(&p).is_ok_and(|o| o.alive()));
    }
}

#[test]
fn cgroup_owner_record_lives_exactly_as_long_as_the_cgroup() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let record = root.path().join("run/isocheck/cgroups/ab12-web");
    let cgroup = manager
        .create("ab12-web", &Limits::default())
        .expect("create");
    let owner = manager.owner_of(&cgroup.paths()[0]).expect("owner");
    assert_eq!(
        (owner.run_id.as_str(), owner.pid),
        ("ab12", std::process::id() as i32)
    );
    assert!(owner.alive());
    cgroup.remove().expect("remove");
    assert!(!record.exists());
    // A cgroup made by someone else has no record: not ours.
    let foreign = cg(&root, "memory/isocheck/foreign");
    std::fs::create_dir_all(&foreign).expect("mkdir");
    assert!(manager.owner_of(&foreign).is_err());
}

#[test]
fn cgroup_stale_records_are_those_of_dead_owners_without_a_cgroup() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let records = root.path().join("run/isocheck/cgroups");
    let live = manager
        .create("ab12-live", &Limits::default())
        .expect("create");
    let mut dead = crate::owner::Owner::current("ab12-gone", "ab12").expect("owner");
    dead.pid = i32::MAX;
    dead.write(&records.join("ab12-gone")).expect("write");
    assert_eq!(manager.stale_records(), vec![records.join("ab12-gone")]);
    // A new cgroup of that name is not blocked by the stale record.
    let again = manager
        .create("ab12-gone", &Limits::default())
        .expect("create");
    assert!(manager.stale_records().is_empty());
    drop((live, again));
}

#[test]
fn cgroup_leftovers_are_listed_and_removed_only_under_our_parent() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let cgroup = manager.create("crashed", &all_limits()).expect("create");
    let made = cgroup.paths();
    std::mem::forget(cgroup); // as if the run had crashed

    let found = manager.leftovers();
    assert_eq!(found.len(), made.len());
    assert_eq!(
        found[0],
        cg(&root, "unified/isocheck/crashed"),
        "unified first"
    );

    let outside = cg(&root, "memory/process_api");
    std::fs::create_dir(&outside).expect("mkdir");
    for bad in [
        outside.clone(),
        cg(&root, "memory/isocheck/../process_api"),
        cg(&root, "memory/isocheck"),
    ] {
        assert!(
            matches!(
                manager.remove_leftover(&bad),
                Err(CgroupError::NotOurs { .. })
            ),
            "{} accepted",
            bad.display()
        );
    }
    let record = root.path().join("run/isocheck/cgroups/crashed");
    assert!(manager.owner_of(&found[0]).is_ok());
    for p in found {
        assert!(record.exists(), "the record goes with the last directory");
        manager.remove_leftover(&p).expect("remove leftover");
    }
    assert!(manager.leftovers().is_empty());
    assert!(!record.exists());
    assert!(outside.exists());
    assert!(Path::new(&outside).exists());
}

#[test]
fn cgroup_procs_of_a_vanished_directory_is_an_error_not_empty() {
    let (root, mountinfo) = fake_v2_host("memory pids\n", "memory pids\n");
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let cgroup = manager.create("gone", &Limits::default()).expect("create");
    std::fs::write(cg(&root, "isocheck/gone/cgroup.procs"), "42\n").expect("write");
    assert_eq!(cgroup.procs().expect("readable"), vec![42]);
    std::fs::remove_dir_all(cg(&root, "isocheck/gone")).expect("remove");
    let err = cgroup
        .procs()
        .expect_err("a vanished cgroup has no task list");
    assert!(err.to_string().contains("isocheck/gone"), "{err}");
}

/// Every limit beyond the seeds, on a layout that has them all.
fn extra_limits(device: &Path) -> Limits {
    Limits {
        memory_bytes: Some(64 << 20),
        swap_bytes: 0,
        memory_high_bytes: Some(32 << 20),
        oom_group: true,
        cpu_weight: Some(300),
        io_write_bps: vec![crate::spec::DeviceRate {
            device: device.to_path_buf(),
            bytes_per_sec: 4 << 20,
        }],
        ..Limits::default()
    }
}

/// A block device node of this machine, to be named (never opened), and
/// its "MAJ:MIN"; `None` (the test says it skipped) where /dev has none.
fn some_block_device() -> Option<(std::path::PathBuf, String)> {
    use std::os::unix::fs::FileTypeExt;
    let device = std::fs::read_dir("/dev").ok()?.flatten().find_map(|e| {
        e.file_type()
            .ok()
            .filter(|t| t.is_block_device())
            .map(|_| e.path())
    });
    let Some(device) = device else {
        eprintln!("no block device node in /dev: skipped");
        return None;
    };
    let (major, minor) = crate::spec::block_device_number(&device).expect("a block device");
    Some((device, format!("{major}:{minor}")))
}

#[test]
fn cgroup_v2_fake_tree_writes_high_oom_group_weight_and_io() {
    let Some((device, dev)) = some_block_device() else {
        return;
    };
    let (root, mountinfo) = fake_v2_host("cpu io memory pids\n", "cpu io memory pids\n");
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let cgroup = manager
        .create("extra", &extra_limits(&device))
        .expect("create");
    let node = cg(&root, "isocheck/extra");
    assert_eq!(read(node.join("memory.high")), "33554432");
    assert_eq!(read(node.join("memory.oom.group")), "1");
    assert_eq!(read(node.join("memory.swap.max")), "0");
    assert_eq!(read(node.join("cpu.weight")), "300");
    assert_eq!(read(node.join("io.max")), format!("{dev} wbps=4194304"));
    assert_eq!(cgroup.stats().expect("stats").memory_high_events, Some(0));
}

#[test]
fn cgroup_v1_fake_tree_maps_weight_to_shares_and_io_to_blkio() {
    let Some((device, dev)) = some_block_device() else {
        return;
    };
    let (root, mountinfo) = fake_v1_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    let mut limits = extra_limits(&device);
    limits.memory_high_bytes = None;
    limits.oom_group = false;
    let cgroup = manager.create("extra", &limits).expect("create");
    assert_eq!(
        read(cg(&root, "cpu,cpuacct/isocheck/extra/cpu.shares")),
        "3072"
    );
    assert_eq!(
        read(cg(
            &root,
            "blkio/isocheck/extra/blkio.throttle.write_bps_device"
        )),
        format!("{dev} 4194304")
    );
    assert!(cgroup.paths().contains(&cg(&root, "blkio/isocheck/extra")));
    assert_eq!(cgroup.stats().expect("stats").io_write_bytes, Some(0));
    cgroup.freeze().expect("freeze");
    assert_eq!(
        read(cg(&root, "freezer/isocheck/extra/freezer.state")),
        "FROZEN"
    );
    cgroup.thaw().expect("thaw");
    assert_eq!(
        read(cg(&root, "freezer/isocheck/extra/freezer.state")),
        "THAWED"
    );
}

#[test]
fn cgroup_hybrid_refuses_memory_high_and_leaves_nothing() {
    let (root, mountinfo) = fake_hybrid_host();
    let manager = CgroupManager::detect_from(&mountinfo, root.path()).expect("detect");
    for (limits, file) in [
        (
            Limits {
                memory_high_bytes: Some(8 << 20),
                ..Limits::default()
            },
            "memory.high",
        ),
        (
            Limits {
                oom_group: true,
                ..Limits::default()
            },
            "memory.oom.group",
        ),
    ] {
        let e = manager.create("v1high", &limits).expect_err("v1 memory");
        assert!(
            e.to_string()
                .starts_with(&format!("cgroup v1 has no {file}")),
            "{e}"
        );
        assert!(manager.leftovers().is_empty(), "{:?}", manager.leftovers());
    }
}

/// The teardown's rmdir sweep may stop part way; the directories a kill
/// goes through (v1 freezer, v2 node) come last so they are still there.
#[test]
fn the_rmdir_sweep_takes_the_kill_directories_last() {
    let dir = |s: &str| PathBuf::from(format!("/sys/fs/cgroup/{s}/isocheck/x"));
    let nodes = Nodes {
        freezer: Some(ControllerDir {
            path: dir("freezer"),
            version: Version::V1,
        }),
        unified: Some(dir("unified")),
        dirs: ["memory", "freezer", "unified", "pids", "devices"]
            .into_iter()
            .map(dir)
            .collect(),
        ..Nodes::default()
    };
    let order: Vec<PathBuf> = nodes.kill_dirs_last();
    let expected: Vec<PathBuf> = ["memory", "pids", "devices", "freezer", "unified"]
        .into_iter()
        .map(dir)
        .collect();
    assert_eq!(order, expected);
}

use super::*;
use crate::sys::{Call, RecordingSyscalls};

const ROOT: &str = "/tmp/isocheck-r-c-x/root";

fn plan() -> RootPlan {
    RootPlan {
        new_root: CString::new(ROOT).expect("no NUL"),
        image: ImageMount::Overlay {
            options: c"lowerdir=/img,upperdir=/u,workdir=/w".into(),
        },
        binds: vec![
            PlannedBind {
                source: c"/srv/data".into(),
                destination: c"/data".into(),
                readonly: true,
                source_is_dir: true,
            },
            PlannedBind {
                source: c"/etc/resolv.conf".into(),
                destination: c"/etc/resolv.conf".into(),
                readonly: false,
                source_is_dir: false,
            },
        ],
        kernel_files: KernelFiles::default(),
        fresh_sysfs: true,
        entry: RootEntry::PivotRoot,
        hardening: Hardening::default(),
        masked_paths: vec![c"/proc/kmsg".into(), c"/proc/sysrq-trigger".into()],
        readonly_paths: vec![],
    }
}

/// mountinfo as the kernel would show it after the mounts, every
/// interesting one read-only unless listed in `rw`.
fn mountinfo(rw: &[&str]) -> String {
    let mut s = String::from("1 0 8:1 / / rw,relatime - ext4 /dev/sda rw\n");
    for (i, mp) in [
        "/proc",
        "/proc/sys",
        "/sys",
        "/data",
        "/data/sub",
        "/data/sub/deeper",
    ]
    .iter()
    .enumerate()
    {
        let id = 10 + i;
        let parent = match *mp {
            "/proc/sys" => 10,
            "/data/sub" => 13,
            "/data/sub/deeper" => 14,
            _ => 1,
        };
        let opts = if rw.contains(mp) || *mp == "/proc" {
            "rw"
        } else {
            "ro"
        };
        s.push_str(&format!(
            "{id} {parent} 0:{id} / {ROOT}{mp} {opts},nosuid - x x rw\n"
        ));
    }
    s
}

fn run(sys: &mut RecordingSyscalls, plan: &RootPlan) -> Result<(), StepFailure> {
    let mut scratch = vec![0u8; 1 << 16];
    build_root(sys, plan, &mut scratch)
}

fn position(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
    calls.iter().position(pred).expect("call present")
}

fn is_mount_at(c: &Call, at: &str) -> bool {
    matches!(c, Call::Mount { target, .. } if target == at)
}

#[test]
fn root_is_built_in_bubblewrap_order() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    let calls = &sys.calls;
    assert_eq!(
        calls[0],
        Call::Mount {
            source: None,
            target: "/".into(),
            fstype: None,
            flags: MsFlags::MS_REC | MsFlags::MS_SLAVE,
            data: None
        }
    );
    assert_eq!(
        calls[1],
        Call::Mount {
            source: Some("overlay".into()),
            target: ROOT.into(),
            fstype: Some("overlay".into()),
            flags: MsFlags::empty(),
            data: Some("lowerdir=/img,upperdir=/u,workdir=/w".into())
        }
    );
    let dev = position(calls, |c| is_mount_at(c, &format!("{ROOT}/dev")));
    let proc_ = position(calls, |c| is_mount_at(c, &format!("{ROOT}/proc")));
    let sys_ = position(calls, |c| is_mount_at(c, &format!("{ROOT}/sys")));
    let tmp = position(calls, |c| is_mount_at(c, &format!("{ROOT}/tmp")));
    let data = position(calls, |c| is_mount_at(c, &format!("{ROOT}/data")));
    let data_ro = position(
        calls,
        |c| matches!(c, Call::MountSetattrReadonly { target } if *target == format!("{ROOT}/data")),
    );
    let pivot = position(calls, |c| matches!(c, Call::PivotRoot { .. }));
    let detach = position(calls, |c| matches!(c, Call::Umount2 { .. }));
    let rmdir = position(calls, |c| matches!(c, Call::Rmdir { .. }));
    assert!(
        1 < dev && dev < proc_ && proc_ < sys_ && sys_ < tmp && tmp < data,
        "{calls:#?}"
    );
    assert!(
        data < data_ro && data_ro < pivot,
        "ro remount after the bind, before pivot_root"
    );
    assert!(
        pivot < detach && detach < rmdir,
        "pivot_root before detaching the old root"
    );
    assert_eq!(calls.last(), Some(&Call::Chdir { path: "/".into() }));
    assert_eq!(
        calls[pivot],
        Call::PivotRoot {
            new_root: ROOT.into(),
            put_old: format!("{ROOT}{PUT_OLD}")
        }
    );
    assert_eq!(
        calls[detach],
        Call::Umount2 {
            target: PUT_OLD.into(),
            flags: MntFlags::MNT_DETACH
        }
    );
}

#[test]
fn binds_are_recursive_and_sources_kept() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    let data = sys
        .calls
        .iter()
        .find(|c| is_mount_at(c, &format!("{ROOT}/data")))
        .expect("bind");
    assert_eq!(
        *data,
        Call::Mount {
            source: Some("/srv/data".into()),
            target: format!("{ROOT}/data"),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None
        }
    );
    // A file source gets an empty file to bind onto, not a directory.
    let file = format!("{ROOT}/etc/resolv.conf");
    assert!(sys.calls.contains(&Call::CreateFile { path: file.clone() }));
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::Mkdir { path, .. } if *path == file)));
    // The rw bind is not made read-only.
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == file)));
}

#[test]
fn proc_sys_is_bound_readonly_and_host_files_masked() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    let ps = format!("{ROOT}/proc/sys");
    let bind = position(&sys.calls, |c| is_mount_at(c, &ps));
    let ro = position(
        &sys.calls,
        |c| matches!(c, Call::MountSetattrReadonly { target } if *target == ps),
    );
    assert!(bind < ro);
    for f in ["sysrq-trigger", "kmsg"] {
        let t = format!("{ROOT}/proc/{f}");
        assert!(
            sys.calls.iter().any(
                |c| matches!(c, Call::Mount { source: Some(s), target, flags, .. }
            if s == "/dev/null" && *target == t && *flags == MsFlags::MS_BIND)
            ),
            "{f} masked"
        );
    }
    let sysfs = sys
        .calls
        .iter()
        .find(|c| is_mount_at(c, &format!("{ROOT}/sys")))
        .expect("sysfs");
    assert!(
        matches!(sysfs, Call::Mount { fstype: Some(t), flags, .. } if t == "sysfs" && flags.contains(MsFlags::MS_RDONLY))
    );
}

#[test]
fn switched_off_hardening_is_skipped_or_weakened() {
    let mut p = plan();
    p.hardening = Hardening {
        rslave_root: false,
        detach_old_root: false,
        recursive_binds: false,
        recursive_readonly: false,
        ..Hardening::default()
    };
    let mut sys = RecordingSyscalls {
        // /data/sub stays writable: only the top is remounted.
        mountinfo: mountinfo(&["/data/sub", "/data/sub/deeper"]),
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    let calls = &sys.calls;
    let slave = position(
        calls,
        |c| matches!(c, Call::Mount { flags, .. } if *flags == MsFlags::MS_REC | MsFlags::MS_SLAVE),
    );
    let overlay = position(calls, |c| is_mount_at(c, ROOT));
    let pivot = position(calls, |c| matches!(c, Call::PivotRoot { .. }));
    assert!(overlay < slave && slave < pivot, "rslave late: {calls:#?}");
    assert!(!calls.iter().any(|c| matches!(c, Call::Umount2 { .. })));
    assert!(!calls.iter().any(|c| matches!(c, Call::Rmdir { .. })));
    let data = format!("{ROOT}/data");
    assert!(calls.iter().any(
        |c| matches!(c, Call::Mount { source: Some(s), target, flags, .. }
        if s == "/srv/data" && *target == data && *flags == MsFlags::MS_BIND)
    ));
    assert!(!calls
        .iter()
        .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == data)));
    assert!(calls
        .iter()
        .any(|c| matches!(c, Call::Mount { target, flags, .. }
        if *target == data && flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))));
}

#[test]
fn controls_switch_protections_off() {
    let mut p = plan();
    p.kernel_files = KernelFiles {
        proc_sys_readonly: false,
        sys_readonly: false,
        host_cgroupfs_rw: true,
        mask_proc_files: false,
        readonly_paths: false,
    };
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    assert!(!sys
        .calls
        .iter()
        .any(|c| is_mount_at(c, &format!("{ROOT}/proc/sys"))));
    assert!(!sys
        .calls
        .iter()
        .any(|c| is_mount_at(c, &format!("{ROOT}/proc/kmsg"))));
    let cg = sys
        .calls
        .iter()
        .find(|c| is_mount_at(c, &format!("{ROOT}/sys/fs/cgroup")))
        .expect("cgroupfs");
    assert!(
        matches!(cg, Call::Mount { source: Some(s), flags, .. } if s == "/sys/fs/cgroup" && *flags == MsFlags::MS_BIND | MsFlags::MS_REC)
    );
}

#[test]
fn kernel_paths_are_made_readonly_then_masked_by_kind() {
    let mut p = plan();
    p.readonly_paths = vec![c"/proc/bus".into()];
    p.masked_paths = vec![
        c"/proc/kmsg".into(),
        c"/proc/acpi".into(),
        c"/proc/kcore".into(),
    ];
    let acpi = format!("{ROOT}/proc/acpi");
    let kcore = format!("{ROOT}/proc/kcore");
    let sysrq = format!("{ROOT}/proc/sysrq-trigger");
    let mut info = mountinfo(&[]);
    info.push_str(&format!(
        "40 10 0:40 / {ROOT}/proc/bus ro,nosuid - proc proc rw\n"
    ));
    let mut sys = RecordingSyscalls {
        mountinfo: info,
        // /proc/acpi is a directory: a file cannot be bound onto it.
        fail_target: Some((acpi.clone(), Errno::ENOTDIR)),
        fail_once: true,
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    let calls = &sys.calls;
    let bus = format!("{ROOT}/proc/bus");
    let bind = position(calls, |c| {
        matches!(c, Call::Mount { source: Some(s), target, flags, .. }
            if *s == bus && *target == bus && *flags == MsFlags::MS_BIND | MsFlags::MS_REC)
    });
    let ro = position(
        calls,
        |c| matches!(c, Call::MountSetattrReadonly { target } if *target == bus),
    );
    let kmsg = format!("{ROOT}/proc/kmsg");
    let null = position(
        calls,
        |c| matches!(c, Call::Mount { source: Some(s), target, .. } if s == "/dev/null" && *target == kmsg),
    );
    let tmpfs = position(calls, |c| {
        matches!(c, Call::Mount { fstype: Some(t), target, flags, .. }
            if t == "tmpfs" && *target == acpi && flags.contains(MsFlags::MS_RDONLY))
    });
    assert!(bind < ro && ro < null && null < tmpfs, "{calls:#?}");
    assert!(calls.iter().any(|c| is_mount_at(c, &kcore)));

    // A read-only path the kernel lacks is skipped, not read back.
    let mut q = plan();
    q.readonly_paths = vec![c"/proc/sysrq-trigger".into()];
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        fail_target: Some((sysrq.clone(), Errno::ENOENT)),
        ..Default::default()
    };
    run(&mut sys, &q).expect("a missing read-only path is skipped");
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == sysrq)));

    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        fail_target: Some((kcore.clone(), Errno::ENOENT)),
        ..Default::default()
    };
    p.readonly_paths.clear();
    run(&mut sys, &p).expect("a missing path is skipped");
    let tmpfs_on_kcore = sys.calls.iter().any(
        |c| matches!(c, Call::Mount { fstype: Some(t), target, .. } if t == "tmpfs" && *target == kcore),
    );
    assert!(!tmpfs_on_kcore, "ENOENT is not a directory to mask");

    p.kernel_files.mask_proc_files = false;
    p.kernel_files.readonly_paths = false;
    p.readonly_paths = vec![c"/proc/bus".into()];
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    assert!(!sys
        .calls
        .iter()
        .any(|c| is_mount_at(c, &kmsg) || is_mount_at(c, &acpi) || is_mount_at(c, &bus)));
}

#[test]
fn without_a_net_namespace_the_host_sys_is_bound_readonly() {
    let mut p = plan();
    p.fresh_sysfs = false;
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    let t = format!("{ROOT}/sys");
    let bind = position(
        &sys.calls,
        |c| matches!(c, Call::Mount { source: Some(s), target, .. } if s == "/sys" && *target == t),
    );
    let ro = position(
        &sys.calls,
        |c| matches!(c, Call::MountSetattrReadonly { target } if *target == t),
    );
    assert!(bind < ro);
}

#[test]
fn old_kernels_remount_every_submount_readonly() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        no_mount_setattr: true,
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    let remounts: Vec<&str> = sys
        .calls
        .iter()
        .filter_map(|c| match c {
            Call::Mount { target, flags, .. } if flags.contains(MsFlags::MS_REMOUNT) => {
                assert!(flags.contains(MsFlags::MS_BIND | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID));
                Some(target.strip_prefix(ROOT).unwrap_or(target))
            }
            _ => None,
        })
        .collect();
    // A fresh sysfs is mounted read-only directly, not remounted.
    assert_eq!(
        remounts,
        ["/proc/sys", "/data", "/data/sub", "/data/sub/deeper"]
    );
}

#[test]
fn a_writable_submount_fails_the_read_back() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&["/data/sub/deeper"]),
        ..Default::default()
    };
    let err = run(&mut sys, &plan()).expect_err("verification fails");
    assert_eq!(err.step, Step::VerifyReadonly);
    assert_eq!(err.path(), format!("{ROOT}/data/sub/deeper").as_bytes());
    assert!(
        !sys.calls
            .iter()
            .any(|c| matches!(c, Call::PivotRoot { .. })),
        "stops at the failure"
    );
}

/// The test plan with three read-only kernel paths, and its mountinfo
/// (every mount `ro` unless listed in `rw`; /proc/fs has a submount).
fn plan_with_kernel_paths(rw: &[&str]) -> (RootPlan, RecordingSyscalls) {
    let mut p = plan();
    p.readonly_paths = vec![c"/proc/bus".into(), c"/proc/fs".into(), c"/proc/irq".into()];
    let mut info = mountinfo(rw);
    for (id, parent, mp) in [
        (40, 10, "/proc/bus"),
        (41, 10, "/proc/fs"),
        (42, 41, "/proc/fs/nfsd"),
        (43, 10, "/proc/irq"),
    ] {
        let opts = if rw.contains(&mp) { "rw" } else { "ro" };
        info.push_str(&format!(
            "{id} {parent} 0:{id} / {ROOT}{mp} {opts},nosuid - proc proc rw\n"
        ));
    }
    let sys = RecordingSyscalls {
        mountinfo: info,
        ..Default::default()
    };
    (p, sys)
}

fn made_readonly(calls: &[Call], rel: &str) -> bool {
    let t = format!("{ROOT}{rel}");
    calls
        .iter()
        .any(|c| matches!(c, Call::MountSetattrReadonly { target } if *target == t))
}

#[rstest::rstest]
#[case::first_path("/proc/bus")]
#[case::below_a_path("/proc/fs/nfsd")]
#[case::proc_sys("/proc/sys")]
#[case::sys("/sys")]
fn one_read_back_after_the_last_kernel_path_names_what_is_writable(#[case] rw: &str) {
    let (p, mut sys) = plan_with_kernel_paths(&[rw]);
    let err = run(&mut sys, &p).expect_err("verification fails");
    assert_eq!(err.step, Step::VerifyReadonly);
    assert_eq!(err.errno, 0, "the check failed, not a call");
    assert_eq!(err.path(), format!("{ROOT}{rw}").as_bytes());
    // Read back once, after the last path was made read-only: a check per
    // path would have stopped before /proc/irq.
    assert!(made_readonly(&sys.calls, "/proc/irq"), "{:#?}", sys.calls);
    let masked = format!("{ROOT}/proc/kmsg");
    assert!(
        !sys.calls
            .iter()
            .any(|c| is_mount_at(c, &masked) || matches!(c, Call::PivotRoot { .. })),
        "stops before the masks"
    );

    let (p, mut sys) = plan_with_kernel_paths(&[]);
    run(&mut sys, &p).expect("all read-only: builds");
}

#[test]
fn a_failed_mountinfo_read_proves_nothing() {
    let (p, mut sys) = plan_with_kernel_paths(&[]);
    // Too small for the mountinfo text: the double's read fails (ENOBUFS).
    let mut scratch = [0u8; 64];
    let err = build_root(&mut sys, &p, &mut scratch).expect_err("nothing read back");
    assert_eq!(
        (err.step, Errno::from_raw(err.errno)),
        (Step::ReadMountinfo, Errno::ENOBUFS)
    );
    assert!(made_readonly(&sys.calls, "/proc/irq"));
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::PivotRoot { .. })));
}

#[rstest::rstest]
#[case::read_back_when_full(0)]
#[case::read_back_at_the_end(149)]
fn a_full_read_back_queue_is_read_back_and_refilled(#[case] rw: usize) {
    // 150 paths of 80 bytes each: more than the queue holds at once.
    let rel = |i: usize| format!("/proc/p{i:03}{}", "x".repeat(46));
    let mut p = plan();
    p.readonly_paths = (0..150)
        .map(|i| CString::new(rel(i)).expect("no NUL"))
        .collect();
    let mut info = mountinfo(&[]);
    for i in 0..150 {
        let opts = if i == rw { "rw" } else { "ro" };
        info.push_str(&format!(
            "{} 10 0:1 / {ROOT}{} {opts} - proc proc rw\n",
            100 + i,
            rel(i)
        ));
    }
    let mut sys = RecordingSyscalls {
        mountinfo: info.clone(),
        ..Default::default()
    };
    let err = run(&mut sys, &p).expect_err("verification fails");
    assert_eq!(err.step, Step::VerifyReadonly);
    assert_eq!(err.path(), format!("{ROOT}{}", rel(rw)).as_bytes());
    // The first path is read back when the queue fills, before the last
    // is made read-only; the last, in the read after it.
    assert_eq!(made_readonly(&sys.calls, &rel(149)), rw == 149);

    let mut sys = RecordingSyscalls {
        mountinfo: info.replace(" rw - proc", " ro - proc"),
        ..Default::default()
    };
    run(&mut sys, &p).expect("all read-only: builds");
}

#[test]
fn dev_is_opened_once_and_filled_by_name() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    let dev = format!("{ROOT}/dev");
    // The directory the tmpfs goes on, then the tmpfs.
    assert_eq!(sys.fds.iter().filter(|p| **p == dev).count(), 2);
    for node in DEV_NODES {
        let node = format!("{dev}/{}", node.to_str().expect("ascii"));
        assert!(sys.calls.contains(&Call::CreateFile { path: node.clone() }));
        let bind = sys.calls.iter().any(|c| {
            matches!(c, Call::Mount { source: Some(s), target, flags, .. }
                if *s == node.strip_prefix(ROOT).unwrap_or("") && *target == node
                    && *flags == MsFlags::MS_BIND)
        });
        assert!(bind, "{node} bound from the host");
    }
    for (d, fstype) in [("pts", "devpts"), ("shm", "tmpfs")] {
        let at = format!("{dev}/{d}");
        assert!(sys.calls.contains(&Call::Mkdir {
            path: at.clone(),
            mode: 0o755
        }));
        assert!(sys.calls.iter().any(
            |c| matches!(c, Call::Mount { fstype: Some(t), target, .. } if t == fstype && *target == at)
        ));
    }
    assert!(sys.calls.contains(&Call::Symlink {
        target: "pts/ptmx".into(),
        link: format!("{dev}/ptmx")
    }));
}

#[test]
fn chroot_only_skips_pivot_root() {
    let mut p = plan();
    p.entry = RootEntry::ChrootOnly;
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &p).expect("builds");
    let n = sys.calls.len();
    assert_eq!(sys.calls[n - 2], Call::Chroot { path: ROOT.into() });
    assert_eq!(sys.calls[n - 1], Call::Chdir { path: "/".into() });
    assert!(!sys
        .calls
        .iter()
        .any(|c| matches!(c, Call::PivotRoot { .. } | Call::Umount2 { .. })));
}

#[test]
fn a_failing_mount_names_its_step_and_path() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        fail_target: Some((ROOT.into(), Errno::EINVAL)),
        ..Default::default()
    };
    let err = run(&mut sys, &plan()).expect_err("overlay fails");
    assert_eq!(
        (err.step, err.path()),
        (Step::MountOverlay, ROOT.as_bytes())
    );
    assert_eq!(Errno::from_raw(err.errno), Errno::EINVAL);
}

#[test]
fn existing_directories_are_fine() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        existing: vec![
            format!("{ROOT}/dev"),
            format!("{ROOT}/proc"),
            format!("{ROOT}/data"),
        ],
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("EEXIST is not an error");
}

#[test]
fn subtree_takes_the_mount_on_top() {
    let info = b"1 0 0:1 / / rw - x x rw\n5 1 0:5 / /m rw - x x rw\n6 1 0:6 / /m ro - x x rw\n7 6 0:7 / /m/a ro - x x rw\n8 5 0:8 / /m/b rw - x x rw\n";
    let mut ids = [0u64; SUBTREE_MAX];
    let n = subtree_ids(info, b"/m", &mut ids).expect("found");
    assert_eq!(&ids[..n], &[6, 7]);
    assert_eq!(subtree_ids(info, b"/nope", &mut ids), Err(Errno::ENOENT));
    // Mount points are compared as decoded.
    let info = b"1 0 0:1 / / rw - x x rw\n9 1 0:9 / /a\\040b ro - x x rw\n10 1 0:10 / /a\\040bc ro - x x rw\n";
    let n = subtree_ids(info, b"/a b", &mut ids).expect("found");
    assert_eq!(&ids[..n], &[9]);
    assert_eq!(subtree_ids(info, b"/a\\040b", &mut ids), Err(Errno::ENOENT));
}

#[test]
fn mount_points_under_a_dir_only() {
    let info = b"1 0 8:1 / / rw - x x rw\n2 1 0:2 / /tmp/isocheck-a rw - x x rw\n\
3 2 0:3 / /tmp/isocheck-a/root/my\\040dir rw - x x rw\n4 1 0:4 / /tmp/isocheck-ab rw - x x rw\n\
5 1 0:5 / /tmp/isocheck-a rw - x x rw\n";
    let got: Vec<CString> = mount_points_under(info, Path::new("/tmp/isocheck-a/"));
    let got: Vec<&[u8]> = got.iter().map(|c| c.to_bytes()).collect();
    assert_eq!(
        got,
        [
            &b"/tmp/isocheck-a"[..],
            b"/tmp/isocheck-a/root/my dir",
            b"/tmp/isocheck-a"
        ]
    );
    assert!(mount_points_under(info, Path::new("/tmp/isocheck-c")).is_empty());
    assert_eq!(mount_points_under(info, Path::new("/")).len(), 5);
}

#[test]
fn mountinfo_escapes_are_undone() {
    let mut buf = [0u8; PATH_MAX];
    let p = unescape(br"/a\040b\134c", &mut buf).expect("fits");
    assert_eq!(p.to_bytes(), br"/a b\c");
}

/// Every path the build changed is the root or below it (mount sources
/// from the host aside), and every mount target below the root was
/// reached through a /proc/self/fd path, never a joined string.
fn assert_stayed_inside(sys: &RecordingSyscalls) {
    let inside = |p: &str| p == ROOT || p.starts_with(&format!("{ROOT}/"));
    for c in &sys.calls {
        match c {
            Call::Mount { target, .. } | Call::MountSetattrReadonly { target } => {
                assert!(target == "/" || inside(target), "{c:?}")
            }
            Call::Mkdir { path, .. } | Call::CreateFile { path } => {
                assert!(inside(path), "{c:?}")
            }
            Call::Symlink { link, .. } => assert!(inside(link), "{c:?}"),
            Call::PivotRoot { put_old, .. } => assert!(inside(put_old), "{c:?}"),
            _ => {}
        }
    }
    for raw in &sys.raw_mount_targets {
        assert!(
            !raw.starts_with(&format!("{ROOT}/")),
            "a joined path was mounted on: {raw}"
        );
    }
}

/// The test plan with its first bind, read-write, at `dest`.
fn plan_with_rw_bind_at(dest: &CStr) -> RootPlan {
    let mut p = plan();
    p.binds[0].destination = dest.into();
    p.binds[0].readonly = false;
    p
}

fn hostile(symlinks: &[(&str, &str)], existing: &[&str]) -> RecordingSyscalls {
    RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        symlinks: symlinks
            .iter()
            .map(|(l, t)| (format!("{ROOT}{l}"), (*t).to_owned()))
            .collect(),
        existing: existing.iter().map(|p| format!("{ROOT}{p}")).collect(),
        ..Default::default()
    }
}

#[rstest::rstest]
#[case::absolute_at_proc("/proc", "/etc", "/etc")]
#[case::dotdot_at_proc("/proc", "../../../../../etc", "/etc")]
#[case::absolute_at_dev("/dev", "/host-dev", "/host-dev")]
#[case::dotdot_at_sys("/sys", "../../../../../../host-sys", "/host-sys")]
#[case::absolute_at_tmp("/tmp", "/var/tmp", "/var/tmp")]
#[case::root_at_data("/data", "/", "")]
#[case::absolute_at_data("/data", "/etc", "/etc")]
fn a_symlinked_target_is_resolved_inside_the_root(
    #[case] link: &str,
    #[case] to: &str,
    #[case] lands: &str,
) {
    let mut sys = hostile(
        &[(link, to)],
        &["/etc", "/var", "/var/tmp", "/host-dev", "/host-sys"],
    );
    // mountinfo names the mounts where they landed.
    sys.mountinfo = sys
        .mountinfo
        .replace(&format!("{ROOT}{link}"), &format!("{ROOT}{lands}"));
    run(&mut sys, &plan()).expect("builds inside the root");
    assert_stayed_inside(&sys);
    let landed = format!("{ROOT}{lands}");
    assert!(
        sys.calls.iter().any(|c| is_mount_at(c, &landed)),
        "nothing mounted at {landed}: {:#?}",
        sys.calls
    );
    assert!(
        !sys.calls
            .iter()
            .any(|c| is_mount_at(c, &format!("{ROOT}{link}"))),
        "mounted on the link itself"
    );
}

#[test]
fn a_parent_symlinked_to_root_keeps_a_bind_inside() {
    // /a -> / and a bind at /a/b: the target is /b of the container.
    let p = plan_with_rw_bind_at(c"/a/b");
    let mut sys = hostile(&[("/a", "/")], &[]);
    run(&mut sys, &p).expect("builds");
    assert_stayed_inside(&sys);
    let b = format!("{ROOT}/b");
    assert!(sys.calls.contains(&Call::Mkdir {
        path: b.clone(),
        mode: 0o755
    }));
    assert!(sys.calls.iter().any(|c| is_mount_at(c, &b)));
}

#[test]
fn a_dangling_dotdot_parent_is_refused() {
    // /x -> ../../../../new with /new missing, and a bind at /x/deep:
    // nothing is created through the link, in the root or outside.
    let p = plan_with_rw_bind_at(c"/x/deep");
    let mut sys = hostile(&[("/x", "../../../../new")], &[]);
    let err = run(&mut sys, &p).expect_err("a dangling link is refused");
    assert_stayed_inside(&sys);
    assert_eq!(err.step, Step::CreateMountTarget);
    assert_eq!(err.path(), format!("{ROOT}/x").as_bytes());
    assert_eq!(Errno::from_raw(err.errno), Errno::ENOENT);
    assert!(
        !sys.calls
            .iter()
            .any(|c| matches!(c, Call::PivotRoot { .. })),
        "stops at the refusal"
    );
}

#[rstest::rstest]
#[case::proc("/proc", Step::MountProc)]
#[case::dev("/dev", Step::MountDevTmpfs)]
#[case::sys("/sys", Step::MountSys)]
#[case::tmp("/tmp", Step::MountTmp)]
fn a_dangling_system_dir_is_refused_naming_step_and_path(#[case] dir: &str, #[case] step: Step) {
    let mut sys = hostile(&[(dir, "../../../../../tmp/isocheck-canary/x")], &[]);
    let err = run(&mut sys, &plan()).expect_err("refused");
    assert_stayed_inside(&sys);
    assert_eq!(
        (err.step, err.path()),
        (step, format!("{ROOT}{dir}").as_bytes())
    );
    let msg = crate::step::ChildError::from(err).to_string();
    assert!(msg.contains(&format!("{ROOT}{dir}")), "{msg}");
}

#[test]
fn every_target_is_reached_through_its_fd() {
    let mut sys = RecordingSyscalls {
        mountinfo: mountinfo(&[]),
        ..Default::default()
    };
    run(&mut sys, &plan()).expect("builds");
    assert_stayed_inside(&sys);
    let via_fd = sys
        .raw_mount_targets
        .iter()
        .filter(|t| ProcFdPath::parse(t.as_bytes()).is_some())
        .count();
    // /dev, 6 nodes, pts, shm, /proc, /proc/sys, 2 masks, /sys, /tmp, 2 binds.
    assert_eq!(via_fd, 17, "{:#?}", sys.raw_mount_targets);
}

#[test]
fn proc_fd_paths_round_trip() {
    for fd in [0, 7, 42, 1000, i32::MAX] {
        let p = ProcFdPath::new(fd);
        assert_eq!(
            p.as_c_str().to_str(),
            Ok(format!("/proc/self/fd/{fd}").as_str())
        );
        assert_eq!(ProcFdPath::parse(p.as_c_str().to_bytes()), Some(fd));
    }
    assert_eq!(ProcFdPath::parse(b"/proc/self/fd/"), None);
    assert_eq!(ProcFdPath::parse(b"/proc/self/fd/1/x"), None);
}

/// The real openat2 and mkdirat (no root needed) on an image in a temp
/// dir whose symlinks point at a canary outside it.
mod real {
    use super::super::*;
    use crate::sys::RealSyscalls;
    use std::collections::BTreeSet;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    struct Image {
        dir: tempfile::TempDir,
    }

    impl Image {
        fn new() -> Image {
            let dir = tempfile::Builder::new()
                .prefix("isocheck-unit-")
                .tempdir()
                .expect("temp dir");
            fs::create_dir_all(dir.path().join("root/etc")).expect("root");
            fs::create_dir(dir.path().join("canary")).expect("canary");
            fs::write(dir.path().join("canary/keep"), "keep").expect("keep");
            Image { dir }
        }
        fn root(&self) -> PathBuf {
            self.dir.path().join("root")
        }
        fn canary(&self) -> BTreeSet<String> {
            fs::read_dir(self.dir.path().join("canary"))
                .expect("canary")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        }
        fn resolve(&self, rel: &str, leaf: Leaf) -> Result<PathBuf, StepFailure> {
            let path = CString::new(self.root().as_os_str().as_bytes()).expect("no NUL");
            let mut sys = RealSyscalls;
            let fd = sys.open_dir(&path).expect("open root");
            let root = Root { fd, path: &path };
            let fd = resolve(
                &mut sys,
                &root,
                rel.as_bytes(),
                leaf,
                Step::CreateMountTarget,
            )?;
            let mut buf = [0u8; PATH_MAX];
            let at = sys.fd_path(&fd, &mut buf).expect("readlink");
            Ok(PathBuf::from(at.to_str().expect("utf8")))
        }
    }

    #[test]
    fn absolute_and_dotdot_links_never_leave_the_root() {
        let img = Image::new();
        let canary = img.dir.path().join("canary");
        let depth = img.root().components().count();
        let up = "../".repeat(depth + 2);
        let rel_canary = format!("{up}{}", canary.display());
        symlink(&canary, img.root().join("abs")).expect("link");
        symlink(&rel_canary, img.root().join("dotdot")).expect("link");
        symlink("/", img.root().join("a")).expect("link");
        symlink(&canary, img.root().join("etc/file")).expect("link");
        fs::create_dir_all(img.root().join(canary.strip_prefix("/").expect("abs")))
            .expect("same path inside");

        let inside = img.root().join(canary.strip_prefix("/").expect("abs"));
        assert_eq!(
            img.resolve("/abs/new/dir", Leaf::Dir).expect("ok"),
            inside.join("new/dir")
        );
        assert_eq!(
            img.resolve("/dotdot/x", Leaf::Dir).expect("ok"),
            inside.join("x")
        );
        assert_eq!(
            img.resolve("/a/b", Leaf::Dir).expect("ok"),
            img.root().join("b")
        );
        assert_eq!(
            img.resolve("/a/etc/f", Leaf::File).expect("ok"),
            img.root().join("etc/f")
        );
        assert_eq!(img.resolve("/etc/file", Leaf::Dir).expect("ok"), inside);
        assert_eq!(img.canary(), BTreeSet::from(["keep".to_owned()]));
    }

    #[test]
    fn a_dangling_link_is_refused_not_created_through() {
        let img = Image::new();
        let canary = img.dir.path().join("canary");
        symlink(canary.join("missing"), img.root().join("proc")).expect("link");
        let err = img.resolve("/proc", Leaf::Dir).expect_err("dangling");
        assert_eq!(Errno::from_raw(err.errno), Errno::ENOENT);
        assert_eq!(err.path(), img.root().join("proc").as_os_str().as_bytes());
        let err = img
            .resolve("/proc/sub", Leaf::File)
            .expect_err("dangling parent");
        assert_eq!(err.path(), img.root().join("proc").as_os_str().as_bytes());
        assert_eq!(img.canary(), BTreeSet::from(["keep".to_owned()]));
    }

    #[test]
    fn a_file_where_a_directory_belongs_is_refused() {
        let img = Image::new();
        fs::write(img.root().join("proc"), "not a dir").expect("file");
        let err = img.resolve("/proc", Leaf::Dir).expect_err("not a dir");
        assert_eq!(Errno::from_raw(err.errno), Errno::ENOTDIR);
        let err = img.resolve("/proc/x", Leaf::Dir).expect_err("not a dir");
        assert_eq!(Errno::from_raw(err.errno), Errno::ENOTDIR);
    }
}

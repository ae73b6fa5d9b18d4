use super::*;
use proptest::prelude::*;
use rstest::rstest;
use std::collections::BTreeSet;

fn valid() -> ContainerSpec {
    ContainerSpec {
        rootfs: Rootfs {
            source: RootfsSource::Dir(std::env::temp_dir()),
            ..Rootfs::default()
        },
        command: vec!["/bin/sh".into()],
        ..ContainerSpec::default()
    }
}

fn cpus() -> BTreeSet<u32> {
    [0, 1].into_iter().collect()
}

#[test]
fn a_plain_spec_is_valid() {
    assert_eq!(valid().validate_with(&cpus()), Ok(()));
}

#[rstest]
#[case::missing_rootfs(|s: &mut ContainerSpec| s.rootfs.source = RootfsSource::Dir("/nope".into()), "rootfs.source: /nope does not exist")]
#[case::tar_is_a_dir(|s: &mut ContainerSpec| s.rootfs.source = RootfsSource::Tar(std::env::temp_dir()), "rootfs.source: /tmp is not a file")]
#[case::locked_mounts_in_a_chroot(|s: &mut ContainerSpec| { s.namespaces.user = true; s.rootfs.entry = RootEntry::ChrootOnly; }, "hardening.locked_mounts: needs rootfs.entry pivot-root with a user namespace (the kernel refuses a new user namespace to a chrooted process); switch off locked-mounts too")]
#[case::hostname_without_uts(|s: &mut ContainerSpec| { s.hostname = Some("h".into()); s.namespaces.uts = false; }, "hostname: h needs namespaces.uts")]
#[case::hostname_too_long(|s: &mut ContainerSpec| s.hostname = Some("x".repeat(65)), "hostname: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\" must be 1 to 64 bytes without NUL")]
#[case::relative_destination(|s: &mut ContainerSpec| s.mounts = vec![bind("/tmp", "/a"), bind("/tmp", "/b"), bind("/tmp", "rel")], "mounts[2].destination: rel must be absolute")]
#[case::dotdot_destination(|s: &mut ContainerSpec| s.mounts = vec![bind("/tmp", "/a/../../etc")], "mounts[0].destination: /a/../../etc must not contain ..")]
#[case::missing_source(|s: &mut ContainerSpec| s.mounts = vec![bind("/nope/src", "/a")], "mounts[0].source: /nope/src does not exist")]
#[case::unknown_cap(|s: &mut ContainerSpec| s.capabilities = vec!["CAP_FOO".into()], "capabilities[0]: CAP_FOO is not a capability")]
#[case::cap_without_prefix(|s: &mut ContainerSpec| s.capabilities = vec!["CAP_CHOWN".into(), "chown".into()], "capabilities[1]: chown is not a capability")]
#[case::bridge_without_netns(|s: &mut ContainerSpec| { s.network = bridge("10.89.0.2/24"); s.namespaces.net = false; }, "network: bridge isoc-br0 needs namespaces.net")]
#[case::bad_address(|s: &mut ContainerSpec| s.network = bridge("10.89.0.2"), "network.address: 10.89.0.2 is not an address with prefix (e.g. 10.89.0.2/24)")]
#[case::cpu_not_on_host(|s: &mut ContainerSpec| s.limits.cpuset = Some(CpuSet { cpus: "0,7".into(), mems: None }), "limits.cpuset.cpus: 7 is not a cpu of this host")]
#[case::cpuset_syntax(|s: &mut ContainerSpec| s.limits.cpuset = Some(CpuSet { cpus: "1-0".into(), mems: None }), "limits.cpuset.cpus: \"1-0\" has the backwards range \"1-0\"")]
#[case::zero_memory(|s: &mut ContainerSpec| s.limits.memory_bytes = Some(0), "limits.memory_bytes: 0 is not a usable limit")]
#[case::zero_pids(|s: &mut ContainerSpec| s.limits.pids = Some(0), "limits.pids: 0 is not a usable limit")]
#[case::tiny_quota(|s: &mut ContainerSpec| s.limits.cpu = Some(CpuQuota { quota_us: 10, period_us: 100_000 }), "limits.cpu.quota_us: 10 is below the kernel's minimum of 1000")]
#[case::bad_period(|s: &mut ContainerSpec| s.limits.cpu = Some(CpuQuota { quota_us: 1000, period_us: 5 }), "limits.cpu.period_us: 5 is outside 1000..=1000000")]
#[case::swap_without_memory(|s: &mut ContainerSpec| s.limits.swap_bytes = 4096, "limits.swap_bytes: 4096 needs limits.memory_bytes (swap is limited beside memory)")]
#[case::zero_high(|s: &mut ContainerSpec| s.limits.memory_high_bytes = Some(0), "limits.memory_high_bytes: 0 is not a usable limit")]
#[case::high_above_max(|s: &mut ContainerSpec| { s.limits.memory_bytes = Some(1 << 20); s.limits.memory_high_bytes = Some(2 << 20); }, "limits.memory_high_bytes: 2097152 is above limits.memory_bytes 1048576, so it would never apply")]
#[case::zero_weight(|s: &mut ContainerSpec| s.limits.cpu_weight = Some(0), "limits.cpu_weight: 0 is outside 1..=10000")]
#[case::huge_weight(|s: &mut ContainerSpec| s.limits.cpu_weight = Some(10_001), "limits.cpu_weight: 10001 is outside 1..=10000")]
#[case::io_not_a_device(|s: &mut ContainerSpec| s.limits.io_write_bps = vec![DeviceRate { device: "/tmp".into(), bytes_per_sec: 1 }], "limits.io_write_bps[0].device: /tmp is not a block device")]
#[case::io_zero_rate(|s: &mut ContainerSpec| s.limits.io_write_bps = vec![DeviceRate { device: "/tmp".into(), bytes_per_sec: 0 }], "limits.io_write_bps[0].bytes_per_sec: 0 is not a usable rate")]
#[case::zero_nofile(|s: &mut ContainerSpec| s.limits.nofile = Some(0), "limits.nofile: 0 is not a usable limit")]
#[case::zero_nproc(|s: &mut ContainerSpec| s.limits.nproc = Some(0), "limits.nproc: 0 is not a usable limit")]
#[case::oom_adj_range(|s: &mut ContainerSpec| s.limits.oom_score_adj = Some(1001), "limits.oom_score_adj: 1001 is outside -1000..=1000")]
#[case::empty_command(|s: &mut ContainerSpec| s.command.clear(), "command: is empty")]
#[case::relative_command(|s: &mut ContainerSpec| s.command = vec!["sh".into()], "command[0]: sh must be an absolute path inside the rootfs")]
#[case::bad_env(|s: &mut ContainerSpec| s.env = vec!["A=1".into(), "JUSTNAME".into()], "env[1]: \"JUSTNAME\" is not NAME=VALUE")]
#[case::relative_cwd(|s: &mut ContainerSpec| s.cwd = "work".into(), "cwd: work must be absolute")]
#[case::mapping_without_userns(|s: &mut ContainerSpec| s.user = Some(mapping(1)), "user: a uid/gid mapping needs namespaces.user")]
#[case::empty_map_count(|s: &mut ContainerSpec| { s.namespaces.user = true; s.user = Some(mapping(0)); }, "user.uid_map[0].count: 0 maps nothing")]
#[case::offsets_without_timens(|s: &mut ContainerSpec| s.time_offsets.boottime_secs = 5, "time_offsets: monotonic 0 / boottime 5 need namespaces.time")]
#[case::unknown_syscall(|s: &mut ContainerSpec| s.seccomp = Some(crate::seccomp::SeccompPolicy { deny: vec!["bpf".into(), "teleport".into()] }), "seccomp.deny[1]: \"teleport\" is not a syscall this runtime can filter")]
#[case::masked_outside_proc(|s: &mut ContainerSpec| s.masked_paths.push("/etc/passwd".into()), "masked_paths[13]: /etc/passwd must be a path below /proc or /sys without ..")]
#[case::readonly_dotdot(|s: &mut ContainerSpec| s.readonly_paths = vec!["/proc/../etc".into()], "readonly_paths[0]: /proc/../etc must be a path below /proc or /sys without ..")]
#[case::oci_without_index(|s: &mut ContainerSpec| { s.rootfs.source = RootfsSource::OciLayout(std::env::temp_dir()); }, "rootfs.source: /tmp has no index.json (not an OCI image layout)")]
fn invalid_specs_name_field_and_value(
    #[case] change: fn(&mut ContainerSpec),
    #[case] message: &str,
) {
    let mut s = valid();
    change(&mut s);
    let err = s.validate_with(&cpus()).expect_err("must be refused");
    assert_eq!(err.to_string(), message);
}

fn bind(src: &str, dst: &str) -> BindMount {
    BindMount {
        source: src.into(),
        destination: dst.into(),
        readonly: false,
    }
}

fn bridge(address: &str) -> NetworkMode {
    NetworkMode::Bridge(BridgeAttachment {
        bridge: "isoc-br0".into(),
        address: address.into(),
        gateway: None,
        address6: None,
        gateway6: None,
        publish: vec![],
        detached: false,
    })
}

fn mapping(count: u32) -> UserMapping {
    let m = IdMap {
        inside: 0,
        outside: 100_000,
        count,
    };
    UserMapping {
        uid_map: vec![m],
        gid_map: vec![m],
    }
}

#[rstest]
#[case("1048576", 1 << 20)]
#[case("512K", 512 << 10)]
#[case("512k", 512 << 10)]
#[case("64M", 64 << 20)]
#[case("1G", 1 << 30)]
#[case("2T", 2 << 40)]
fn memory_sizes(#[case] text: &str, #[case] bytes: u64) {
    assert_eq!(parse_memory(text), Ok(bytes));
}

#[rstest]
#[case("", "memory: \"\" is not a size (use e.g. 1048576, 512K, 64M or 1G)")]
#[case(
    "64X",
    "memory: \"64X\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
)]
#[case(
    "-1",
    "memory: \"-1\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
)]
#[case(
    "1.5G",
    "memory: \"1.5G\" is not a size (use e.g. 1048576, 512K, 64M or 1G)"
)]
#[case("0", "memory: \"0\" is zero")]
#[case("99999999999T", "memory: \"99999999999T\" overflows 64 bits")]
fn bad_memory_sizes(#[case] text: &str, #[case] message: &str) {
    assert_eq!(
        parse_memory(text).expect_err("refused").to_string(),
        message
    );
}

#[rstest]
#[case("0.5", 50_000)]
#[case("2", 200_000)]
#[case(".25", 25_000)]
#[case("1.00001", 100_001)]
#[case("0.01", 1_000)]
fn cpu_quotas(#[case] text: &str, #[case] quota_us: u64) {
    assert_eq!(
        parse_cpus(text),
        Ok(CpuQuota {
            quota_us,
            period_us: 100_000
        })
    );
}

#[rstest]
#[case("", "cpus: \"\" is not a number of cpus (use e.g. 0.5 or 2)")]
#[case("abc", "cpus: \"abc\" is not a number of cpus (use e.g. 0.5 or 2)")]
#[case("1.", "cpus: \"1.\" is not a number of cpus (use e.g. 0.5 or 2)")]
#[case("-1", "cpus: \"-1\" is not a number of cpus (use e.g. 0.5 or 2)")]
#[case(
    "0.000001",
    "cpus: \"0.000001\" is not a number of cpus (use e.g. 0.5 or 2)"
)]
#[case("0.001", "cpus: \"0.001\" is below 0.01 cpu")]
#[case("0", "cpus: \"0\" is below 0.01 cpu")]
fn bad_cpu_quotas(#[case] text: &str, #[case] message: &str) {
    assert_eq!(parse_cpus(text).expect_err("refused").to_string(), message);
}

#[rstest]
#[case("0", &[0])]
#[case("0-1,3", &[0, 1, 3])]
#[case("5,2-3", &[2, 3, 5])]
fn cpusets(#[case] text: &str, #[case] cpus: &[u32]) {
    let set = parse_cpuset(text).expect("valid");
    assert_eq!(set.cpus, text);
    assert_eq!(cpu_list(&set.cpus), Ok(cpus.iter().copied().collect()));
}

#[rstest]
#[case("", "cpuset: \"\" is empty")]
#[case("a", "cpuset: \"a\" has \"a\", not a number or range")]
#[case("3-1", "cpuset: \"3-1\" has the backwards range \"3-1\"")]
#[case("0,,1", "cpuset: \"0,,1\" has \"\", not a number or range")]
#[case(
    "0-99999",
    "cpuset: \"0-99999\" has the range \"0-99999\", wider than 4096 cpus"
)]
fn bad_cpusets(#[case] text: &str, #[case] message: &str) {
    assert_eq!(
        parse_cpuset(text).expect_err("refused").to_string(),
        message
    );
}

#[rstest]
#[case("/a:/b", "/a", "/b", false)]
#[case("/a:/b:ro", "/a", "/b", true)]
#[case("rel:/b:rw", "rel", "/b", false)]
fn binds(#[case] text: &str, #[case] src: &str, #[case] dst: &str, #[case] ro: bool) {
    let b = parse_bind(text).expect("valid");
    assert_eq!(
        (b.source.to_str(), b.destination.to_str(), b.readonly),
        (Some(src), Some(dst), ro)
    );
}

#[rstest]
#[case("/a", "bind: \"/a\" is not SRC:DST[:ro]")]
#[case("/a:/b:rx", "bind: \"/a:/b:rx\" has option \"rx\"; only ro or rw")]
#[case(":/b", "bind: \":/b\" has an empty SRC or DST")]
#[case("/a:b", "bind: \"/a:b\" has a DST that is not absolute")]
#[case("/a:/b:ro:x", "bind: \"/a:/b:ro:x\" is not SRC:DST[:ro]")]
fn bad_binds(#[case] text: &str, #[case] message: &str) {
    assert_eq!(parse_bind(text).expect_err("refused").to_string(), message);
}

#[test]
fn device_rates() {
    assert_eq!(
        parse_device_rate("/dev/loop3:4M"),
        Ok(DeviceRate {
            device: "/dev/loop3".into(),
            bytes_per_sec: 4 << 20
        })
    );
    for (text, message) in [
        ("/dev/loop3", "device-write-bps: \"/dev/loop3\" is not DEVICE:RATE"),
        (":4M", "device-write-bps: \":4M\" has an empty DEVICE"),
        ("/dev/loop3:fast", "device-write-bps: \"/dev/loop3:fast\" has a RATE that is not a byte count (use e.g. 1048576, 512K or 4M)"),
    ] {
        assert_eq!(parse_device_rate(text).expect_err("refused").to_string(), message);
    }
}

proptest! {
    #[test]
    fn parsers_never_panic(s in ".{0,24}") {
        let _ = parse_memory(&s);
        let _ = parse_cpus(&s);
        let _ = parse_cpuset(&s);
        let _ = parse_bind(&s);
        let _ = parse_device_rate(&s);
    }

    #[test]
    fn memory_round_trips(n in 1u64..u64::MAX, unit in 0usize..4) {
        let (suffix, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30)][unit];
        let n = n >> (shift + 1);
        prop_assume!(n > 0);
        prop_assert_eq!(parse_memory(&format!("{n}{suffix}")), Ok(n << shift));
    }

    #[test]
    fn cpus_round_trip(quota in 1_000u64..10_000_000) {
        let text = format!("{}.{:05}", quota / 100_000, quota % 100_000);
        prop_assert_eq!(parse_cpus(&text).map(|q| q.quota_us), Ok(quota));
    }

    #[test]
    fn cpuset_round_trips(cpus in proptest::collection::btree_set(0u32..256, 1..16)) {
        let text = cpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let set = parse_cpuset(&text).expect("a list of numbers parses");
        prop_assert_eq!(cpu_list(&set.cpus), Ok(cpus));
    }

    #[test]
    fn bind_round_trips(src in "/[a-z]{1,8}", dst in "/[a-z]{1,8}", ro in any::<bool>()) {
        let text = format!("{src}:{dst}{}", if ro { ":ro" } else { "" });
        let b = parse_bind(&text).expect("well formed");
        prop_assert_eq!(b, BindMount { source: src.into(), destination: dst.into(), readonly: ro });
    }
}

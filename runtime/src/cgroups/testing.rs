//! Fake cgroup trees for unit tests: plain directories in a temp dir,
//! holding the files the kernel would show, plus a mount table pointing at
//! them. mkdir on cgroupfs makes the interface files; here `fs::create_dir`
//! calls `populate_like_kernel`, which copies them from a template stored at
//! the fake mount's root.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::{ControllerDir, Version};

/// Name of the template file at a fake mount root: JSON {file: content}.
const TEMPLATE: &str = ".fake-kernel-files";

pub(crate) fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("isocheck-")
        .tempdir()
        .expect("make a temp dir")
}

pub(crate) fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("write a fake cgroup file");
    }
}

/// A temp dir holding `files`: one fake cgroup directory.
pub(crate) fn fake_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempdir();
    write_files(dir.path(), files);
    dir
}

pub(crate) fn dir_of(tmp: &TempDir, version: Version) -> ControllerDir {
    ControllerDir {
        path: tmp.path().to_path_buf(),
        version,
    }
}

/// Called after every mkdir in a test: fill the new directory with the
/// files of the nearest fake mount's template.
pub(crate) fn populate_like_kernel(dir: &Path) {
    for ancestor in dir.ancestors().skip(1) {
        let template = ancestor.join(TEMPLATE);
        if let Ok(text) = std::fs::read_to_string(&template) {
            let files: BTreeMap<String, String> =
                serde_json::from_str(&text).expect("parse fake template");
            for (name, content) in files {
                std::fs::write(dir.join(name), content).expect("populate fake cgroup");
            }
            return;
        }
    }
}

/// One fake mount: mount point (absolute, as in mountinfo), fstype and
/// super options, the files at its root, and the files a new cgroup gets.
struct FakeMount {
    point: &'static str,
    fstype: &'static str,
    opts: &'static str,
    root_files: Vec<(&'static str, &'static str)>,
    child_files: Vec<(&'static str, &'static str)>,
}

pub(crate) const V1_UNLIMITED: &str = "9223372036854771712\n";

fn v1_memory(point: &'static str) -> FakeMount {
    FakeMount {
        point,
        fstype: "cgroup",
        opts: "rw,memory",
        root_files: vec![("cgroup.procs", "1\n")],
        child_files: vec![
            ("cgroup.procs", ""),
            ("memory.limit_in_bytes", V1_UNLIMITED),
            ("memory.memsw.limit_in_bytes", V1_UNLIMITED),
            ("memory.swappiness", "60\n"),
            (
                "memory.oom_control",
                "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
            ),
            ("memory.max_usage_in_bytes", "0\n"),
            ("memory.usage_in_bytes", "0\n"),
            ("memory.stat", "cache 0\nrss 0\nswap 0\n"),
        ],
    }
}

fn v1_blkio(point: &'static str) -> FakeMount {
    FakeMount {
        point,
        fstype: "cgroup",
        opts: "rw,blkio",
        root_files: vec![("cgroup.procs", "1\n")],
        child_files: vec![
            ("cgroup.procs", ""),
            ("blkio.throttle.write_bps_device", ""),
            ("blkio.throttle.io_service_bytes", "Total 0\n"),
        ],
    }
}

fn v1_pids(point: &'static str) -> FakeMount {
    FakeMount {
        point,
        fstype: "cgroup",
        opts: "rw,pids",
        root_files: vec![("cgroup.procs", "1\n")],
        child_files: vec![
            ("cgroup.procs", ""),
            ("pids.max", "max\n"),
            ("pids.current", "0\n"),
            ("pids.events", "max 0\n"),
        ],
    }
}

const V1_CPU_FILES: [(&str, &str); 5] = [
    ("cgroup.procs", ""),
    ("cpu.shares", "1024\n"),
    ("cpu.cfs_period_us", "100000\n"),
    ("cpu.cfs_quota_us", "-1\n"),
    (
        "cpu.stat",
        "nr_periods 0\nnr_throttled 0\nthrottled_time 0\nnr_bursts 0\nburst_time 0\n",
    ),
];

fn v1_cpuset(point: &'static str) -> FakeMount {
    FakeMount {
        point,
        fstype: "cgroup",
        opts: "rw,cpuset",
        root_files: vec![
            ("cgroup.procs", "1\n"),
            ("cpuset.cpus", "0-1\n"),
            ("cpuset.mems", "0\n"),
        ],
        // A new v1 cpuset cgroup starts empty.
        child_files: vec![
            ("cgroup.procs", ""),
            ("cpuset.cpus", "\n"),
            ("cpuset.mems", "\n"),
        ],
    }
}

fn v1_freezer(point: &'static str) -> FakeMount {
    FakeMount {
        point,
        fstype: "cgroup",
        opts: "rw,freezer",
        root_files: vec![("cgroup.procs", "1\n")],
        child_files: vec![("cgroup.procs", ""), ("freezer.state", "THAWED\n")],
    }
}

fn build(mounts: Vec<FakeMount>) -> (TempDir, String) {
    let root = tempdir();
    let mut mountinfo = String::from("27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n");
    for (i, m) in mounts.iter().enumerate() {
        let dir = root.path().join(m.point.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("mkdir fake mount");
        write_files(&dir, &m.root_files);
        let template: BTreeMap<&str, &str> = m.child_files.iter().copied().collect();
        std::fs::write(
            dir.join(TEMPLATE),
            serde_json::to_string(&template).expect("template json"),
        )
        .expect("write template");
        mountinfo.push_str(&format!(
            "{} 31 0:{} / {} rw,relatime - {} {} {}\n",
            32 + i,
            29 + i,
            m.point,
            m.fstype,
            m.fstype,
            m.opts
        ));
    }
    (root, mountinfo)
}

/// v1-only host with cpu and cpuacct co-mounted.
pub(crate) fn fake_v1_host() -> (TempDir, String) {
    let mut cpu_files = V1_CPU_FILES.to_vec();
    cpu_files.push(("cpuacct.usage", "0\n"));
    build(vec![
        v1_memory("/sys/fs/cgroup/memory"),
        v1_pids("/sys/fs/cgroup/pids"),
        FakeMount {
            point: "/sys/fs/cgroup/cpu,cpuacct",
            fstype: "cgroup",
            opts: "rw,cpu,cpuacct",
            root_files: vec![("cgroup.procs", "1\n")],
            child_files: cpu_files,
        },
        v1_cpuset("/sys/fs/cgroup/cpuset"),
        v1_freezer("/sys/fs/cgroup/freezer"),
        v1_blkio("/sys/fs/cgroup/blkio"),
    ])
}

/// Like this machine: separate cpu and cpuacct, cgroup2 at unified with no
/// controllers.
pub(crate) fn fake_hybrid_host() -> (TempDir, String) {
    build(vec![
        FakeMount {
            point: "/sys/fs/cgroup/cpu",
            fstype: "cgroup",
            opts: "rw,cpu",
            root_files: vec![("cgroup.procs", "1\n")],
            child_files: V1_CPU_FILES.to_vec(),
        },
        FakeMount {
            point: "/sys/fs/cgroup/cpuacct",
            fstype: "cgroup",
            opts: "rw,cpuacct",
            root_files: vec![("cgroup.procs", "1\n")],
            child_files: vec![("cgroup.procs", ""), ("cpuacct.usage", "0\n")],
        },
        v1_cpuset("/sys/fs/cgroup/cpuset"),
        v1_memory("/sys/fs/cgroup/memory"),
        v1_freezer("/sys/fs/cgroup/freezer"),
        v1_blkio("/sys/fs/cgroup/blkio"),
        v1_pids("/sys/fs/cgroup/pids"),
        FakeMount {
            point: "/sys/fs/cgroup/unified",
            fstype: "cgroup2",
            opts: "rw",
            root_files: vec![
                ("cgroup.procs", "1\n"),
                ("cgroup.controllers", "hugetlb\n"),
                ("cgroup.subtree_control", ""),
            ],
            child_files: vec![
                ("cgroup.procs", ""),
                ("cgroup.kill", ""),
                ("cgroup.freeze", "0\n"),
                ("cgroup.events", "populated 0\nfrozen 0\n"),
                ("cgroup.controllers", ""),
                ("cgroup.subtree_control", ""),
                (
                    "cpu.stat",
                    "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnice_usec 0\n",
                ),
            ],
        },
    ])
}

/// v2-only host. `root_enabled` is the root's cgroup.subtree_control
/// (systemd enables every controller; a bare guest none).
pub(crate) fn fake_v2_host(offered: &'static str, root_enabled: &'static str) -> (TempDir, String) {
    build(vec![FakeMount {
        point: "/sys/fs/cgroup",
        fstype: "cgroup2",
        opts: "rw,nsdelegate,memory_recursiveprot",
        root_files: vec![
            ("cgroup.procs", "1\n"),
            ("cgroup.controllers", offered),
            ("cgroup.subtree_control", root_enabled),
        ],
        child_files: vec![
            ("cgroup.procs", ""),
            ("cgroup.kill", ""),
            ("cgroup.freeze", "0\n"),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.controllers", offered),
            ("cgroup.subtree_control", ""),
            ("memory.max", "max\n"),
            ("memory.swap.max", "max\n"),
            ("memory.high", "max\n"),
            ("memory.oom.group", "0\n"),
            ("memory.current", "0\n"),
            ("memory.peak", "0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n"),
            ("pids.max", "max\n"),
            ("pids.current", "0\n"),
            ("pids.events", "max 0\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("io.max", ""),
            ("io.stat", ""),
            (
                "cpu.stat",
                "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnice_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
            ),
            ("cpuset.cpus", ""),
            ("cpuset.mems", ""),
        ],
    }])
}

pub(crate) fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

pub(crate) fn cg(root: &TempDir, rel: &str) -> PathBuf {
    root.path().join("sys/fs/cgroup").join(rel)
}

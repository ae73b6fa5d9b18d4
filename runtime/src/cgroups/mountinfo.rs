//! Which cgroup hierarchies are mounted where, read from the text of
//! /proc/self/mountinfo. A pure function over that text and a filesystem
//! root, so unit tests feed recorded mount tables and point them at a temp
//! dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{CgroupError, CgroupMode};

/// v1 controllers this module uses (blkio only for an io limit). Other v1
/// hierarchies (devices, name=systemd...) are ignored: their presence alone does not make a host
/// v1 or hybrid for us.
pub(crate) const V1_CONTROLLERS: [&str; 8] = [
    "memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "devices", "blkio",
];

/// The cgroup mounts found in a mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupMounts {
    /// v1 controller name → mount point (under the fs root). Co-mounted
    /// controllers ("cpu,cpuacct") map to the same directory.
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 mount point, if any.
    pub unified: Option<PathBuf>,
    /// Every cgroup and cgroup2 mount point, in table order, named v1
    /// hierarchies (name=systemd) and repeats included.
    pub all: Vec<PathBuf>,
}

impl CgroupMounts {
    pub(crate) fn mode(&self) -> Result<CgroupMode, CgroupError> {
        match (self.v1.is_empty(), &self.unified) {
            (false, Some(_)) => Ok(CgroupMode::Hybrid),
            (false, None) => Ok(CgroupMode::V1),
            (true, Some(_)) => Ok(CgroupMode::V2),
            (true, None) => Err(CgroupError::NoCgroupFs),
        }
    }
}

/// Parse mountinfo text. The first mount of each hierarchy wins (later ones
/// are bind mounts or mounts inside containers). Mount points are taken
/// relative to `fs_root`, so `/sys/fs/cgroup/memory` becomes
/// `<fs_root>/sys/fs/cgroup/memory`.
pub(crate) fn parse(mountinfo: &str, fs_root: &Path) -> CgroupMounts {
    let mut mounts = CgroupMounts::default();
    for line in mountinfo.lines() {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS"
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        let (Some(mount_point), Some(fstype)) = (left.get(4), right.first()) else {
            continue;
        };
        let path = fs_root.join(unescape(mount_point).trim_start_matches('/'));
        if matches!(*fstype, "cgroup" | "cgroup2") {
            mounts.all.push(path.clone());
        }
        match *fstype {
            "cgroup2" => {
                mounts.unified.get_or_insert(path);
            }
            "cgroup" => {
                let super_opts = right.get(2).copied().unwrap_or_default();
                for opt in super_opts.split(',') {
                    if V1_CONTROLLERS.contains(&opt) {
                        mounts
                            .v1
                            .entry(opt.to_string())
                            .or_insert_with(|| path.clone());
                    }
                }
            }
            _ => {}
        }
    }
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let code =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
pub(crate) mod samples {
    /// This machine's /proc/self/mountinfo (kernel 6.18, hybrid), verbatim.
    pub(crate) const HYBRID_THIS_HOST: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
24 27 0:6 / /dev rw,relatime - devtmpfs devtmpfs rw,size=12334460k,nr_inodes=3083615,mode=755
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
26 24 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
28 27 0:25 / /mnt/sandboxing/model_tools_env/v1/python ro,nosuid,nodev,relatime - tmpfs model_tools_unavailable ro,size=4k,mode=755
29 26 0:26 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000
30 25 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd v2-only host (Debian 12 style): one cgroup2 mount.
    pub(crate) const V2_ONLY: &str = "\
21 26 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
27 21 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    /// A v1-only host (CentOS 7 style) with cpu and cpuacct co-mounted and
    /// a named systemd hierarchy, no cgroup2.
    pub(crate) const V1_ONLY: &str = "\
18 61 0:17 / /sys rw,nosuid,nodev,noexec,relatime shared:6 - sysfs sysfs rw
24 18 0:20 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:21 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:8 - cgroup cgroup rw,xattr,release_agent=/usr/lib/systemd/systemd-cgroups-agent,name=systemd
28 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct
29 24 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,memory
30 24 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,pids
31 24 0:27 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpuset
32 24 0:28 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,freezer
61 1 253:0 / / rw,relatime shared:1 - xfs /dev/mapper/centos-root rw,attr2,inode64,noquota
";
}

#[cfg(test)]
mod tests {
    use super::samples::*;
    use super::*;

    #[test]
    fn cgroup_mode_of_this_hybrid_host() {
        let m = parse(HYBRID_THIS_HOST, Path::new("/"));
        assert_eq!(m.mode().expect("mode"), CgroupMode::Hybrid);
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert_eq!(m.v1["cpu"], Path::new("/sys/fs/cgroup/cpu"));
        assert_eq!(m.v1["cpuacct"], Path::new("/sys/fs/cgroup/cpuacct"));
        assert_eq!(m.v1["freezer"], Path::new("/sys/fs/cgroup/freezer"));
        assert_eq!(m.v1["devices"], Path::new("/sys/fs/cgroup/devices"));
        assert_eq!(m.v1["blkio"], Path::new("/sys/fs/cgroup/blkio"));
        // name=systemd is not ours.
        assert_eq!(m.v1.len(), 8);
        // ...but a runtime given a path under our parent makes it there
        // too, so it is among all the cgroup mounts.
        assert_eq!(m.all.len(), 10);
        assert!(m.all.contains(&PathBuf::from("/sys/fs/cgroup/systemd")));
        assert_eq!(m.all.last(), m.unified.as_ref());
    }

    #[test]
    fn cgroup_mode_of_v2_only_host() {
        let m = parse(V2_ONLY, Path::new("/tmp/isocheck-root"));
        assert_eq!(m.mode().expect("mode"), CgroupMode::V2);
        assert_eq!(
            m.unified.as_deref(),
            Some(Path::new("/tmp/isocheck-root/sys/fs/cgroup"))
        );
        assert!(m.v1.is_empty());
    }

    #[test]
    fn cgroup_mode_of_v1_only_host_with_comounted_cpu() {
        let m = parse(V1_ONLY, Path::new("/"));
        assert_eq!(m.mode().expect("mode"), CgroupMode::V1);
        assert_eq!(m.v1["cpu"], Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        assert_eq!(m.v1["cpu"], m.v1["cpuacct"]);
        assert!(m.unified.is_none());
    }

    #[test]
    fn cgroup_mode_without_cgroup_mounts_is_an_error() {
        let text = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n";
        assert!(matches!(
            parse(text, Path::new("/")).mode(),
            Err(CgroupError::NoCgroupFs)
        ));
    }

    #[test]
    fn cgroup_mountinfo_octal_escapes_are_decoded() {
        assert_eq!(unescape(r"/mnt/my\040cgroup"), "/mnt/my cgroup");
        assert_eq!(unescape(r"/plain"), "/plain");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }
}

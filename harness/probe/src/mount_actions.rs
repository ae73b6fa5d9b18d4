//! What the probe learns about its own mount table: whether the host's root
//! is still reachable anywhere (detach-old-root), whether a submount is
//! there and what a read or write in it does (recursive binds and
//! read-only), and whether /sys takes an open for writing (sys-readonly).
//!
//! Every check looks before it concludes: a mount table that cannot be read
//! is an error of the probe (no observation, so the scenario fails), never
//! "nothing found".

use std::fs;
use std::io::Read;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{self, FileStat, Mode};
use serde_json::{json, Value};

use crate::args::Args;
use crate::fs_actions::write_each;
use crate::output::{self, Observation};
use crate::ProbeError;

/// Most bytes of a file the probe reports back (a token is ~24).
const READ_MAX: u64 = 256;
/// Most paths `find-host-root` stats: a mount table is far smaller.
const STAT_MAX: usize = 8192;

/// One line of /proc/self/mountinfo: the fields the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// `major:minor` of the filesystem.
    pub devno: String,
    /// The directory of that filesystem mounted here ("/" for its root).
    pub root: String,
    /// Where, in this process's root (unescaped).
    pub point: String,
    /// The per-mount options ("ro", "nosuid", ...).
    pub options: Vec<String>,
    /// The filesystem type (the first field after " - ").
    pub fstype: String,
}

/// Undoes the `\NNN` octal escapes mountinfo uses for spaces and the like.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|digits| {
            let text = std::str::from_utf8(digits).ok()?;
            u8::from_str_radix(text, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entries of a mountinfo text, in order; malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let all: Vec<&str> = line.split(' ').collect();
            let mut fields = all.iter().skip(2);
            let devno = fields.next()?.to_string();
            let root = unescape_mountinfo(fields.next()?);
            let point = unescape_mountinfo(fields.next()?);
            let options = fields.next()?.split(',').map(str::to_owned).collect();
            let dash = all.iter().position(|f| *f == "-")?;
            let fstype = all.get(dash + 1)?.to_string();
            Some(MountEntry {
                devno,
                root,
                point,
                options,
                fstype,
            })
        })
        .collect()
}

/// This process's mount table; a failed read is the probe's failure.
pub fn own_mountinfo() -> Result<Vec<MountEntry>, ProbeError> {
    let text = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ProbeError::internal("read /proc/self/mountinfo", e))?;
    let entries = parse_mountinfo(&text);
    if entries.is_empty() {
        return Err(ProbeError::internal(
            "read /proc/self/mountinfo",
            "no mount listed",
        ));
    }
    Ok(entries)
}

/// The mounts this process sees, optionally only those at or below `--under`:
/// `[{point, fstype, options}]`.
pub fn mounts(mut args: Args) -> Result<Observation, ProbeError> {
    let under: Option<String> = args.optional("under")?;
    args.finish()?;
    let mounts: Vec<Value> = own_mountinfo()?
        .into_iter()
        .filter(|m| {
            under
                .as_deref()
                .is_none_or(|u| Path::new(&m.point).starts_with(u))
        })
        .map(|m| json!({"point": m.point, "fstype": m.fstype, "options": m.options}))
        .collect();
    Ok(Observation::new().with("mounts", mounts))
}

/// lstat without triggering an automount (a host's binfmt_misc is one).
fn lstat_quiet(path: &str) -> Result<FileStat, Errno> {
    stat::fstatat(
        AT_FDCWD,
        path,
        AtFlags::AT_SYMLINK_NOFOLLOW | AtFlags::AT_NO_AUTOMOUNT,
    )
}

/// What `find-host-root` concluded from the paths it looked at.
#[derive(Debug, Default, PartialEq, Eq)]
struct RootSearch {
    /// Paths that are the host's root directory (device and inode).
    found_at: Vec<String>,
    /// Mount points whose filesystem is the host root's, mounted at its root.
    mountinfo_matches: Vec<String>,
    /// Paths stat'ed successfully.
    checked: usize,
    /// Paths that could not be stat'ed, with the errno.
    stat_failures: Vec<String>,
}

impl RootSearch {
    /// Looks at each path once: is it the host's root directory?
    fn look(
        &mut self,
        paths: &[String],
        target: (u64, u64),
        stat: impl Fn(&str) -> Result<(u64, u64), Errno>,
    ) {
        for path in paths.iter().take(STAT_MAX) {
            match stat(path) {
                Ok(id) => {
                    self.checked += 1;
                    if id == target && !self.found_at.contains(path) {
                        self.found_at.push(path.clone());
                    }
                }
                Err(e) => self
                    .stat_failures
                    .push(format!("{path}: {}", output::errno_name(e))),
            }
        }
    }

    /// Mount table evidence: the host root's filesystem mounted from its root.
    fn match_mountinfo(&mut self, entries: &[MountEntry], devno: &str) {
        self.mountinfo_matches = entries
            .iter()
            .filter(|e| e.devno == devno && e.root == "/")
            .map(|e| e.point.clone())
            .collect();
    }

    fn found(&self) -> bool {
        !self.found_at.is_empty() || !self.mountinfo_matches.is_empty()
    }
}

/// `/` itself and every entry of it, one level down.
fn root_and_children() -> Result<Vec<String>, ProbeError> {
    let mut paths = vec!["/".to_owned()];
    for entry in fs::read_dir("/").map_err(|e| ProbeError::internal("list /", e))? {
        let entry = entry.map_err(|e| ProbeError::internal("list /", e))?;
        paths.push(Path::new("/").join(entry.file_name()).display().to_string());
    }
    Ok(paths)
}

/// Looks for the host's root directory, given by its device and inode as
/// the harness sees them: stats every mount point of this process's mount
/// table and every entry of `/`, and checks the table for the host root's
/// filesystem mounted from its root. Reads only.
pub fn find_host_root(mut args: Args) -> Result<Observation, ProbeError> {
    let dev: u64 = args.required("dev")?;
    let ino: u64 = args.required("ino")?;
    args.finish()?;
    let entries = own_mountinfo()?;
    let devno = format!("{}:{}", stat::major(dev), stat::minor(dev));
    let mut paths: Vec<String> = entries.iter().map(|e| e.point.clone()).collect();
    paths.extend(root_and_children()?);
    let mut search = RootSearch::default();
    search.match_mountinfo(&entries, &devno);
    search.look(&paths, (dev, ino), |p| {
        lstat_quiet(p).map(|st| (st.st_dev, st.st_ino))
    });
    Ok(Observation::new()
        .with("host_root_found", search.found())
        .with("found_at", search.found_at.clone())
        .with("mountinfo_matches", search.mountinfo_matches.clone())
        .with("mounts_listed", entries.len())
        .with("checked", search.checked)
        .with("stat_failures", search.stat_failures))
}

/// Reads at most [`READ_MAX`] bytes of `path`, as text.
fn read_small(path: &str) -> std::io::Result<String> {
    let mut content = String::new();
    fs::File::open(path)?
        .take(READ_MAX)
        .read_to_string(&mut content)?;
    Ok(content.trim().to_owned())
}

/// Whether `path` is a mount point here: listed in the mount table, and on
/// another device than its parent directory (`null` when either stat fails).
fn mount_point_facts(entries: &[MountEntry], path: &str) -> (bool, Value) {
    let listed = entries.iter().any(|e| e.point == path);
    let parent = Path::new(path)
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "/".into());
    let own_dev = match (lstat_quiet(path), lstat_quiet(&parent)) {
        (Ok(a), Ok(b)) => json!(a.st_dev != b.st_dev),
        _ => Value::Null,
    };
    (listed, own_dev)
}

/// Looks at a submount first (is it there?), then reads and writes in it:
/// a refusal in a submount proves something only once the submount is seen.
pub fn submount(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    let read: Option<String> = args.optional("read")?;
    let writes: Vec<String> = args.all("write")?;
    args.finish()?;
    let entries = own_mountinfo()?;
    let (mounted, own_dev) = mount_point_facts(&entries, path.trim_end_matches('/'));
    let mut obs = Observation::new()
        .with("mounted", mounted)
        .with("own_dev", own_dev);
    if let Some(file) = read {
        let result = read_small(&file);
        obs = obs
            .io_errno("read_errno", &result)
            .with("read_content", result.ok());
    }
    Ok(obs.with("writes", write_each(&writes)))
}

/// Attributes of the loopback device `sysfs-write` may open.
const LO_ATTRS: &[&str] = &["mtu", "tx_queue_len"];

/// Opens an attribute of the container's own `lo` in /sys for writing and
/// closes it without writing a byte. Refuses (no observation) unless
/// /sys/class/net shows `lo` alone, i.e. a sysfs of a network namespace the
/// container made: a host-global attribute is never opened.
pub fn sysfs_write(mut args: Args) -> Result<Observation, ProbeError> {
    let attr: String = args.required("attr")?;
    args.finish()?;
    if !LO_ATTRS.contains(&attr.as_str()) {
        return Err(crate::args::UsageError::Invalid {
            key: "attr",
            value: attr,
            why: format!("must be one of {LO_ATTRS:?}"),
        }
        .into());
    }
    let mut devices: Vec<String> = fs::read_dir("/sys/class/net")
        .map_err(|e| ProbeError::internal("list /sys/class/net", e))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| ProbeError::internal("list /sys/class/net", e))?;
    devices.sort();
    if devices != ["lo"] {
        return Err(ProbeError::internal(
            "sysfs-write",
            format!("/sys/class/net shows {devices:?}, not the container's lo alone: refusing to open anything"),
        ));
    }
    let path = format!("/sys/class/net/lo/{attr}");
    // No O_TRUNC, no write: the open is the whole test.
    let opened = fcntl::open(
        path.as_str(),
        OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    );
    Ok(Observation::new()
        .with("net_devices", devices)
        .with("path", path)
        .errno("open_errno", &opened.map(drop)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 0:40 / / rw - overlay overlay rw\n\
        30 22 254:1 / /.isocheck-put-old rw - ext4 /dev/vda1 rw\n\
        31 22 254:1 /tmp/isocheck-1/robind /data rw - ext4 /dev/vda1 rw\n\
        32 31 0:51 / /data/sub\\040dir ro,nosuid shared:1 - tmpfs tmpfs rw\n\
        bad line\n";

    #[test]
    fn mountinfo_fields_are_parsed_and_unescaped() {
        let entries = parse_mountinfo(INFO);
        assert_eq!(entries.len(), 4);
        assert_eq!(
            entries[3],
            MountEntry {
                devno: "0:51".into(),
                root: "/".into(),
                point: "/data/sub dir".into(),
                options: vec!["ro".into(), "nosuid".into()],
                fstype: "tmpfs".into(),
            }
        );
        assert_eq!(entries[2].root, "/tmp/isocheck-1/robind");
    }

    #[test]
    fn the_host_root_is_found_by_mount_table_or_by_inode() {
        let entries = parse_mountinfo(INFO);
        let mut search = RootSearch::default();
        search.match_mountinfo(&entries, "254:1");
        // A bind of a host subdirectory is the same filesystem, not its root.
        assert_eq!(search.mountinfo_matches, ["/.isocheck-put-old"]);
        let paths = vec!["/".to_string(), "/x".into(), "/gone".into(), "/x".into()];
        search.look(&paths, (7, 2), |p| match p {
            "/x" => Ok((7, 2)),
            "/gone" => Err(Errno::ENOENT),
            _ => Ok((1, 1)),
        });
        assert!(search.found());
        assert_eq!(search.found_at, ["/x"]);
        assert_eq!(search.checked, 3);
        assert_eq!(search.stat_failures, ["/gone: ENOENT"]);
    }

    #[test]
    fn nothing_found_is_not_found() {
        let mut search = RootSearch::default();
        search.match_mountinfo(&parse_mountinfo(INFO), "8:1");
        search.look(&["/".to_string()], (8, 2), |_| Ok((0, 40)));
        assert!(!search.found());
        assert_eq!(search.checked, 1);
    }

    #[test]
    fn a_listed_mount_point_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().display().to_string();
        let entries = vec![MountEntry {
            devno: "0:1".into(),
            root: "/".into(),
            point: path.clone(),
            options: vec!["rw".into()],
            fstype: "tmpfs".into(),
        }];
        let (listed, own_dev) = mount_point_facts(&entries, &path);
        assert!(listed);
        // A plain temp dir is on its parent's device.
        assert_eq!(own_dev, json!(false));
        let (listed, own_dev) = mount_point_facts(&[], "/no/such/isocheck/path");
        assert!(!listed);
        assert_eq!(own_dev, Value::Null);
    }
}

//! What the probe can do to files and mounts: write, read, list, change the
//! overlay, mount privately, try to make a read-only mount writable.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{self, MsFlags};
use serde_json::json;

use crate::args::Args;
use crate::output::{self, Observation};
use crate::ProbeError;

/// What every write of the probe puts in a file.
const CONTENT: &[u8] = b"isocheck\n";

/// Creates (or truncates) `path` and writes the probe's line into it.
fn write_file(path: &Path) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(CONTENT)
}

/// Writes each path in turn: `[{"path", "errno"}]`, errno null on success.
pub fn write_each(paths: &[String]) -> Vec<serde_json::Value> {
    paths
        .iter()
        .map(|path| {
            let result = write_file(Path::new(path));
            json!({"path": path, "errno": output::io_errno_value(&result)})
        })
        .collect()
}

pub fn write(mut args: Args) -> Result<Observation, ProbeError> {
    let paths: Vec<String> = args.at_least_one("path")?;
    args.finish()?;
    Ok(Observation::new().with("writes", write_each(&paths)))
}

pub fn read(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    args.finish()?;
    let result = fs::File::open(&path).and_then(|mut file| {
        let mut content = Vec::new();
        file.read_to_end(&mut content).map(|_| content.len())
    });
    Ok(Observation::new()
        .io_errno("errno", &result)
        .with("bytes", result.ok()))
}

pub fn overlay_write(mut args: Args) -> Result<Observation, ProbeError> {
    let create: String = args.required("create")?;
    let modify: String = args.required("modify")?;
    let delete: String = args.required("delete")?;
    args.finish()?;
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&create)
        .and_then(|mut file| file.write_all(CONTENT));
    let modified = OpenOptions::new()
        .append(true)
        .open(&modify)
        .and_then(|mut file| file.write_all(CONTENT));
    let deleted = fs::remove_file(&delete);
    Ok(Observation::new()
        .io_errno("create_errno", &created)
        .io_errno("modify_errno", &modified)
        .io_errno("delete_errno", &deleted))
}

/// Mounts a fresh tmpfs on `dir`, creating the directory first.
pub fn mount_tmpfs(dir: &str) -> Result<(), Errno> {
    fs::create_dir_all(dir).map_err(|e| output::io_errno(&e))?;
    mount::mount(
        Some("isocheck-probe"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=64k"),
    )
}

/// The mount points whose filesystem type is one of `types`.
pub fn mounts_of_type(mountinfo: &str, types: &[&str]) -> Vec<String> {
    crate::mount_actions::parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|e| types.contains(&e.fstype.as_str()))
        .map(|e| e.point)
        .collect()
}

/// The per-mount options of the mount at `point`, the last one listed when
/// several are stacked there.
fn mount_options_at(mountinfo: &str, point: &str) -> Option<String> {
    crate::mount_actions::parse_mountinfo(mountinfo)
        .into_iter()
        .filter(|e| e.point == point)
        .map(|e| e.options.join(","))
        .next_back()
}

/// The names in each `--path` directory (sorted, `.` and `..` left out), or
/// the errno that stopped the listing.
pub fn ls(mut args: Args) -> Result<Observation, ProbeError> {
    let paths: Vec<String> = args.at_least_one("path")?;
    args.finish()?;
    let listings: Vec<_> = paths
        .iter()
        .map(|path| {
            let names = fs::read_dir(path).and_then(|entries| {
                let mut names = entries
                    .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
                    .collect::<io::Result<Vec<_>>>()?;
                names.sort();
                Ok(names)
            });
            json!({"path": path, "errno": output::io_errno_value(&names), "names": names.ok()})
        })
        .collect();
    Ok(Observation::new().with("listings", listings))
}

pub fn mount_private(mut args: Args) -> Result<Observation, ProbeError> {
    let inside: String = args.required("inside")?;
    let marker: String = args.required("host-marker")?;
    args.finish()?;
    let mounted = mount_tmpfs(&inside);
    output::print_ready().map_err(|e| ProbeError::internal("print ready", e))?;
    output::wait_for_go();
    let own = inside.trim_end_matches('/');
    let sees_host_mount = crate::mount_actions::own_mountinfo()?
        .iter()
        .any(|e| e.point != own && e.point.contains(&marker));
    Ok(Observation::new()
        .errno("inside_mount_errno", &mounted)
        .with("sees_host_mount", sees_host_mount))
}

pub fn remount_rw(mut args: Args) -> Result<Observation, ProbeError> {
    let path: String = args.required("path")?;
    let unmount: Option<String> = args.optional("unmount")?;
    args.finish()?;
    // The bind is there and read-only before the attempt, seen in our own
    // mount table (a table that cannot be read fails the action).
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ProbeError::internal("read /proc/self/mountinfo", e))?;
    let options = mount_options_at(&mountinfo, path.trim_end_matches('/'));
    let mounted_ro = options
        .as_deref()
        .map(|o| o.split(',').any(|opt| opt == "ro"));
    // A bind remount without MS_RDONLY asks the kernel to make the mount
    // writable again; a locked read-only mount must refuse.
    let remounted = mount::mount(
        None::<&str>,
        path.as_str(),
        None::<&str>,
        MsFlags::MS_REMOUNT | MsFlags::MS_BIND,
        None::<&str>,
    );
    let test_file = Path::new(&path).join("isocheck-remount-test");
    let written = write_file(&test_file);
    if written.is_ok() {
        // The observation is the errno; leave nothing behind.
        let _ = fs::remove_file(&test_file);
    }
    let observed = Observation::new()
        .with("mounted", options.is_some())
        .with("mounted_ro", mounted_ro)
        .errno("remount_errno", &remounted)
        .io_errno("write_errno", &written);
    match unmount {
        Some(target) => unmount_mask(observed, &mountinfo, target.trim_end_matches('/')),
        None => Ok(observed),
    }
}

/// umount2 of a mount point (a mask over a kernel file) that must be a
/// mount point before the attempt (else EINVAL would prove nothing), and
/// whether it still is one afterwards, from a fresh read of our mount table.
fn unmount_mask(
    observed: Observation,
    mountinfo: &str,
    target: &str,
) -> Result<Observation, ProbeError> {
    let was_mounted = mount_options_at(mountinfo, target).is_some();
    let unmounted = mount::umount2(target, mount::MntFlags::empty());
    let after = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| ProbeError::internal("read /proc/self/mountinfo", e))?;
    Ok(observed
        .with("unmount_target_mounted", was_mounted)
        .errno("unmount_errno", &unmounted)
        .with(
            "unmount_still_mounted",
            mount_options_at(&after, target).is_some(),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_are_found_by_type_and_point() {
        let text = "36 35 98:0 / /data ro,nosuid - ext4 /dev/root rw\n\
                    37 35 0:5 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
                    38 35 0:6 / /sys/fs/cgroup/unified rw shared:3 - cgroup2 cgroup2 rw\n\
                    39 36 0:7 / /data rw - tmpfs tmpfs rw\n";
        assert_eq!(
            mounts_of_type(text, &["cgroup", "cgroup2"]),
            ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
        );
        assert!(mounts_of_type(text, &["overlay"]).is_empty());
        assert_eq!(mount_options_at(text, "/data").as_deref(), Some("rw"));
        assert_eq!(mount_options_at(text, "/nowhere"), None);
    }

    #[test]
    fn write_then_read_back() {
        let dir = tempfile::Builder::new()
            .prefix("isocheck-probe-test")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("f");
        write_file(&path).expect("write");
        assert_eq!(fs::read(&path).expect("read"), CONTENT);
        let missing = write_file(&dir.path().join("no/such/dir"));
        assert_eq!(
            output::io_errno_value(&missing),
            serde_json::Value::from("ENOENT")
        );
    }
}

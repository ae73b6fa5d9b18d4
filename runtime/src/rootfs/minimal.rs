//! A minimal rootfs built on the spot from host binaries.

use super::*;

/// Creates the skeleton of a rootfs in `dir` (bin, dev, proc, sys, tmp, mnt,
/// etc with passwd, group and hostname) and copies each host binary to its
/// path inside (mode 0755). The binaries must be static.
pub fn minimal_rootfs(dir: &Path, binaries: &[(&Path, &str)]) -> Result<(), RootfsError> {
    for sub in ["bin", "dev", "proc", "sys", "tmp", "etc", "mnt", "root"] {
        let p = dir.join(sub);
        fs::create_dir_all(&p).map_err(io_err("mkdir", &p))?;
    }
    let tmp = dir.join("tmp");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o1777)).map_err(io_err("chmod", &tmp))?;
    for (name, text) in [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "isocheck\n"),
    ] {
        let p = dir.join(name);
        fs::write(&p, text).map_err(io_err("write", &p))?;
    }
    for (host, inside) in binaries {
        let rel = Path::new(inside);
        if !rel.is_absolute()
            || rel.components().any(|c| c == Component::ParentDir)
            || rel == Path::new("/")
        {
            return Err(RootfsError::BadPath {
                path: rel.to_path_buf(),
                reason: "a binary's path inside must be absolute, without ..",
            });
        }
        let target = dir.join(rel.strip_prefix("/").unwrap_or(rel));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
        }
        fs::copy(host, &target).map_err(io_err("copy binary to", &target))?;
        fs::set_permissions(&target, fs::Permissions::from_mode(0o755))
            .map_err(io_err("chmod", &target))?;
    }
    Ok(())
}

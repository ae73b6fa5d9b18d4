//! What the harness prepares in the stand-in host for a run: the run's own
//! directory, the image the containers boot from (built on the spot from the
//! probe alone), and the decoys a control acts on (a process to kill, a SysV
//! segment to find, a marker file to read, a directory to write).
//! Controls act on these decoys, never on the machine's own processes or files.

use sha2::{Digest, Sha256};
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Name (and so `comm`) of the decoy process.
pub const DECOY_COMM: &str = "isocheck-decoy";
/// uid that owns the image's `/etc/isocheck-owned`, so chown of it is never a no-op.
pub const FOREIGN_UID: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    #[error("{step}: {path}: {source}")]
    Io {
        step: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("the probe binary was not found (looked in {looked}); build it with `cargo build -p isocheck-probe` or set ISOCHECK_PROBE")]
    ProbeMissing { looked: String },
    #[error("{step}: {source}")]
    Sys {
        step: &'static str,
        source: nix::Error,
    },
    #[error("build the image: {0}")]
    Image(String),
    #[error("network testbed: {0}")]
    Network(String),
}

pub(crate) fn io_err<'a>(
    step: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FixtureError + 'a {
    move |source| FixtureError::Io {
        step,
        path: path.to_owned(),
        source,
    }
}

/// Finds the static probe: `ISOCHECK_PROBE`, else beside the running binary
/// (target/<triple>/<profile>/), else one level up (test binaries live in deps/).
pub fn probe_binary() -> Result<PathBuf, FixtureError> {
    if let Some(p) = std::env::var_os("ISOCHECK_PROBE") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(io_err(
        "locate the running binary",
        Path::new("/proc/self/exe"),
    ))?;
    let mut looked = Vec::new();
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join("isocheck-probe");
        if candidate.is_file() {
            return Ok(candidate);
        }
        looked.push(candidate.display().to_string());
    }
    Err(FixtureError::ProbeMissing {
        looked: looked.join(", "),
    })
}

/// The run's directory, `/tmp/isocheck-<run_id>`, with an `owner` file
/// holding our pid: `isocheck cleanup` leaves a directory alone while its
/// owner lives, and removes it once the owner is dead.
#[derive(Debug)]
pub struct RunDir {
    pub run_id: String,
    pub path: PathBuf,
}

pub const RUN_DIR_PREFIX: &str = "isocheck-";

impl RunDir {
    pub fn create() -> Result<RunDir, FixtureError> {
        let pid = std::process::id();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short: interface names (isoc-br<run_id>) have 15 bytes at most.
        let run_id = format!("{:x}{:02x}", pid % 0x10_0000, nanos % 256);
        let path = std::env::temp_dir().join(format!("{RUN_DIR_PREFIX}{run_id}"));
        fs::create_dir_all(&path).map_err(io_err("create the run directory", &path))?;
        let owner = path.join("owner");
        fs::write(&owner, pid.to_string()).map_err(io_err("write the run's owner file", &owner))?;
        Ok(RunDir { run_id, path })
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// Removes a directory tree, unmounting anything still mounted below it (in
/// our own mount namespace) first.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    if let Ok(info) = fs::read_to_string("/proc/self/mountinfo") {
        let mut below: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| Path::new(m).starts_with(path))
            .collect();
        below.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in below {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Builds the image: a minimal root holding the probe at /probe and a file
/// owned by a foreign uid (for the chown check). Nothing is downloaded.
pub fn build_image(dir: &Path, probe: &Path) -> Result<(), FixtureError> {
    isocheck_runtime::rootfs::minimal_rootfs(dir, &[(probe, "/probe")])
        .map_err(|e| FixtureError::Image(e.to_string()))?;
    let owned = dir.join("etc/isocheck-owned");
    fs::write(&owned, "owned by someone else\n").map_err(io_err("write", &owned))?;
    nix::unistd::chown(&owned, Some(FOREIGN_UID.into()), Some(FOREIGN_UID.into())).map_err(
        |source| FixtureError::Sys {
            step: "chown the image's foreign-owned file",
            source,
        },
    )?;
    Ok(())
}

/// A content hash of a directory tree: paths, modes, owners, link targets
/// and file contents, in sorted order.
pub fn tree_hash(root: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut stack = vec![root.to_path_buf()];
    let mut entries = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let path = entry?.path();
            let meta = fs::symlink_metadata(&path)?;
            if meta.is_dir() {
                stack.push(path.clone());
            }
            entries.push((path, meta));
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    for (path, meta) in entries {
        let rel = path.strip_prefix(root).unwrap_or(&path);
        hasher.update(rel.as_os_str().as_encoded_bytes());
        hasher.update(format!(":{:o}:{}:{}:", meta.mode(), meta.uid(), meta.gid()));
        if meta.is_file() {
            hasher.update(fs::read(&path)?);
        } else if meta.file_type().is_symlink() {
            hasher.update(fs::read_link(&path)?.as_os_str().as_encoded_bytes());
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Copies a directory tree (files, dirs, symlinks; modes and owners kept).
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = fs::symlink_metadata(&src)?;
        if meta.is_dir() {
            copy_tree(&src, &dst)?;
        } else if meta.file_type().is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else {
            fs::copy(&src, &dst)?;
        }
        fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777)).ok();
        let _ = std::os::unix::fs::lchown(&dst, Some(meta.uid()), Some(meta.gid()));
    }
    Ok(())
}

/// Makes a helper process die with the runner (SIGKILL when its parent
/// dies), so a killed run leaves no process behind.
pub fn die_with_parent(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl,
    // which is async-signal-safe; it touches no shared state.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(io::Error::from)
        })
    }
}

/// A process in the stand-in host for controls to kill or trace: a copy of
/// the probe named `isocheck-decoy`, blocked reading a pipe nobody writes.
#[derive(Debug)]
pub struct DecoyProcess {
    child: Child,
    exe: PathBuf,
}

impl DecoyProcess {
    pub fn start(run: &RunDir, probe: &Path) -> Result<DecoyProcess, FixtureError> {
        let exe = run.join(DECOY_COMM);
        if !exe.exists() {
            fs::copy(probe, &exe).map_err(io_err("copy the probe as the decoy", &exe))?;
        }
        let child = Self::spawn(&exe).map_err(io_err("start the decoy process", &exe))?;
        Ok(DecoyProcess { child, exe })
    }

    fn spawn(exe: &Path) -> io::Result<Child> {
        die_with_parent(
            Command::new(exe)
                .arg("wait")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .spawn()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Alive and not a zombie. Reaps it if it died.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Starts a fresh decoy if a control killed this one.
    pub fn ensure_alive(&mut self) -> Result<(), FixtureError> {
        if !self.alive() {
            self.child =
                Self::spawn(&self.exe).map_err(io_err("restart the decoy process", &self.exe))?;
        }
        Ok(())
    }
}

impl Drop for DecoyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SysV shared-memory segment in the stand-in's IPC namespace.
#[derive(Debug)]
pub struct DecoyShm {
    pub key: i32,
    id: i32,
}

impl DecoyShm {
    pub fn create(key: i32) -> Result<DecoyShm, FixtureError> {
        // SAFETY: shmget takes plain integers and creates (or finds) a segment
        // in our own IPC namespace; no memory is passed or mapped.
        let id = unsafe { libc::shmget(key, 4096, libc::IPC_CREAT | 0o600) };
        if id < 0 {
            return Err(FixtureError::Sys {
                step: "create the decoy SysV shm segment",
                source: nix::Error::last(),
            });
        }
        Ok(DecoyShm { key, id })
    }
}

impl Drop for DecoyShm {
    fn drop(&mut self) {
        // SAFETY: IPC_RMID on the segment id we created; the buffer argument
        // is unused for IPC_RMID and may be null.
        unsafe {
            libc::shmctl(self.id, libc::IPC_RMID, std::ptr::null_mut());
        }
    }
}

/// A source directory for a read-only bind, with a tmpfs submount inside:
/// a plain `MS_BIND|MS_RDONLY` would leave the submount writable.
#[derive(Debug)]
pub struct RoBindSource {
    pub path: PathBuf,
}

impl RoBindSource {
    pub fn create(path: PathBuf) -> Result<RoBindSource, FixtureError> {
        let sub = path.join("sub");
        fs::create_dir_all(&sub).map_err(io_err("create the ro-bind source", &sub))?;
        fs::write(path.join("data.txt"), "original\n").map_err(io_err("write", &path))?;
        nix::mount::mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .map_err(|source| FixtureError::Sys {
            step: "mount a tmpfs submount in the ro-bind source",
            source,
        })?;
        fs::write(sub.join("inner.txt"), "original\n").map_err(io_err("write", &sub))?;
        Ok(RoBindSource { path })
    }

    /// Hash of the source (submount included), to see that nothing landed.
    pub fn hash(&self) -> String {
        tree_hash(&self.path).unwrap_or_else(|e| format!("unreadable: {e}"))
    }
}

impl Drop for RoBindSource {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// A directory (world-writable, so a mapped uid can create files) holding
/// a root-owned 0600 secret.
#[derive(Debug)]
pub struct SecretDir {
    pub path: PathBuf,
}

impl SecretDir {
    pub fn create(path: PathBuf) -> Result<SecretDir, FixtureError> {
        fs::create_dir_all(&path).map_err(io_err("create the secret dir", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o777))
            .map_err(io_err("chmod", &path))?;
        let secret = path.join("secret.txt");
        fs::write(&secret, "isocheck secret\n").map_err(io_err("write", &secret))?;
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))
            .map_err(io_err("chmod", &secret))?;
        Ok(SecretDir { path })
    }

    /// Owner uid (on the host) of a file the container created, if any.
    pub fn created_uid(&self, name: &str) -> Option<u32> {
        fs::metadata(self.path.join(name)).ok().map(|m| m.uid())
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// A random-enough token (no crate needed for a marker's content).
pub fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_hash_sees_content_names_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("etc")).unwrap();
        fs::write(dir.path().join("etc/a"), "1").unwrap();
        let h1 = tree_hash(dir.path()).unwrap();
        assert_eq!(h1, tree_hash(dir.path()).unwrap());
        fs::write(dir.path().join("etc/a"), "2").unwrap();
        let h2 = tree_hash(dir.path()).unwrap();
        assert_ne!(h1, h2);
        fs::set_permissions(dir.path().join("etc/a"), fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(h2, tree_hash(dir.path()).unwrap());
    }

    #[test]
    fn copy_tree_keeps_the_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/x"), "x").unwrap();
        std::os::unix::fs::symlink("bin/x", src.join("link")).unwrap();
        copy_tree(&src, &dir.path().join("dst")).unwrap();
        assert_eq!(
            tree_hash(&src).unwrap(),
            tree_hash(&dir.path().join("dst")).unwrap()
        );
    }
}

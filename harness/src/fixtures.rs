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
/// A supplementary group the runner gives itself (setgroups, this process
/// only) and the only group that may read [`GROUP_SECRET`] in the image:
/// a container that kept the runner's groups can read it.
pub const SECRET_GID: u32 = 2718;
/// The image's file readable by [`SECRET_GID`] alone (owner
/// [`FOREIGN_UID`], mode 0040).
pub const GROUP_SECRET: &str = "etc/isocheck-group-secret";

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

/// The run's directory, `/tmp/isocheck-<run_id>`, with an owner record
/// (`isocheck_runtime::owner`): `isocheck cleanup` leaves it alone while we
/// live, and removes it once we are dead.
#[derive(Debug)]
pub struct RunDir {
    pub run_id: String,
    pub path: PathBuf,
}

pub const RUN_DIR_PREFIX: &str = "isocheck-";

impl RunDir {
    /// In the system's temp dir (fixtures may be large: loop device files).
    pub fn create() -> Result<RunDir, FixtureError> {
        RunDir::create_in(&std::env::temp_dir())
    }

    /// In `base`, one of `isocheck_runtime::rootfs::temp_bases()` (where
    /// `isocheck cleanup` looks).
    pub fn create_in(base: &Path) -> Result<RunDir, FixtureError> {
        let pid = std::process::id();
        let mut tries = 0u32;
        loop {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            // Short: interface names (isoc-br<run_id>) have 15 bytes at most.
            let run_id = format!("{:x}{:02x}", pid % 0x10_0000, (nanos + tries) % 256);
            let path = base.join(format!("{RUN_DIR_PREFIX}{run_id}"));
            // Made new, never reused: a directory of that name may be
            // someone else's, and a RunDir removes its tree when dropped.
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tries < 16 => {
                    tries += 1;
                    continue;
                }
                Err(e) => return Err(io_err("create the run directory", &path)(e)),
            }
            let run = RunDir { run_id, path };
            isocheck_runtime::owner::mark_dir(&run.path, &run.run_id)
                .map_err(io_err("write the run's owner record", &run.path))?;
            return Ok(run);
        }
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
    // Best effort: what cannot be detached makes remove_dir_all fail below.
    let _ = isocheck_runtime::mounts::detach_all_under(path);
    isocheck_runtime::owner::remove_marked_dir(path)
}

/// Where the image holds a set-user-ID-root copy of the probe.
pub const SUID_PROBE: &str = "probe-suid";

/// Builds the image: a minimal root holding the probe at /probe, a
/// set-user-ID-root copy of it at /probe-suid (for the no_new_privs check)
/// and a file owned by a foreign uid (for the chown check). Nothing is
/// downloaded.
pub fn build_image(dir: &Path, probe: &Path) -> Result<(), FixtureError> {
    isocheck_runtime::rootfs::minimal_rootfs(dir, &[(probe, "/probe")])
        .map_err(|e| FixtureError::Image(e.to_string()))?;
    let suid = dir.join(SUID_PROBE);
    fs::copy(probe, &suid).map_err(io_err("copy the probe as the set-user-ID one", &suid))?;
    nix::unistd::chown(&suid, Some(0.into()), Some(0.into())).map_err(|source| {
        FixtureError::Sys {
            step: "chown the set-user-ID probe to root",
            source,
        }
    })?;
    fs::set_permissions(&suid, fs::Permissions::from_mode(0o4755))
        .map_err(io_err("make the probe copy set-user-ID", &suid))?;
    let owned = dir.join("etc/isocheck-owned");
    fs::write(&owned, "owned by someone else\n").map_err(io_err("write", &owned))?;
    nix::unistd::chown(&owned, Some(FOREIGN_UID.into()), Some(FOREIGN_UID.into())).map_err(
        |source| FixtureError::Sys {
            step: "chown the image's foreign-owned file",
            source,
        },
    )?;
    let secret = dir.join(GROUP_SECRET);
    fs::write(&secret, "only the secret group reads this\n").map_err(io_err("write", &secret))?;
    nix::unistd::chown(&secret, Some(FOREIGN_UID.into()), Some(SECRET_GID.into())).map_err(
        |source| FixtureError::Sys {
            step: "chown the image's group-only file",
            source,
        },
    )?;
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o040)).map_err(io_err(
        "make the group-only file readable by its group alone",
        &secret,
    ))?;
    Ok(())
}

/// Adds [`SECRET_GID`] to this process's supplementary groups (kept: the
/// ones it has), so a container that does not clear them carries it.
pub fn join_secret_group() -> Result<(), FixtureError> {
    let sys = |source| FixtureError::Sys {
        step: "add the secret group to the runner's supplementary groups",
        source,
    };
    let mut groups = nix::unistd::getgroups().map_err(sys)?;
    let secret = nix::unistd::Gid::from_raw(SECRET_GID);
    if !groups.contains(&secret) {
        groups.push(secret);
        nix::unistd::setgroups(&groups).map_err(sys)?;
    }
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

    /// Alive and not a zombie. Reaps it if it died. A wait that fails is
    /// an error, never "dead".
    pub fn alive(&mut self) -> Result<bool, FixtureError> {
        match self.child.try_wait() {
            Ok(None) => Ok(true),
            Ok(Some(_)) => Ok(false),
            Err(source) => Err(FixtureError::Io {
                step: "see whether the decoy lives",
                path: self.exe.clone(),
                source,
            }),
        }
    }

    /// Starts a fresh decoy if a control killed this one.
    pub fn ensure_alive(&mut self) -> Result<(), FixtureError> {
        if !self.alive()? {
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

/// Name of the file the host hides under the bind source's submount.
pub const HIDDEN_TOKEN_FILE: &str = "hidden-token.txt";

/// A source directory for a bind, with a tmpfs submount at `sub/`: a plain
/// `MS_BIND|MS_RDONLY` would leave the submount writable, and a bind
/// without MS_REC would show what the tmpfs hides on the host: `sub/`'s own
/// [`HIDDEN_TOKEN_FILE`], holding a token.
#[derive(Debug)]
pub struct RoBindSource {
    pub path: PathBuf,
}

impl RoBindSource {
    pub fn create(path: PathBuf, hidden_token: &str) -> Result<RoBindSource, FixtureError> {
        let sub = path.join("sub");
        fs::create_dir_all(&sub).map_err(io_err("create the ro-bind source", &sub))?;
        fs::write(path.join("data.txt"), "original\n").map_err(io_err("write", &path))?;
        let hidden = sub.join(HIDDEN_TOKEN_FILE);
        fs::write(&hidden, hidden_token).map_err(io_err("write", &hidden))?;
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
    /// An unreadable tree is an error, never a hash.
    pub fn hash(&self) -> Result<String, FixtureError> {
        tree_hash(&self.path).map_err(io_err("hash the ro-bind source", &self.path))
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

    /// Owner uid (on the host) of a file the container created; `None`
    /// when it created none, an error when the file cannot be looked at.
    pub fn created_uid(&self, name: &str) -> Result<Option<u32>, FixtureError> {
        let path = self.path.join(name);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.uid())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(FixtureError::Io {
                step: "stat the file the container created",
                path,
                source,
            }),
        }
    }
}

impl Drop for SecretDir {
    fn drop(&mut self) {
        let _ = remove_tree(&self.path);
    }
}

/// A host directory holding a marker file, which the harness opens without
/// O_CLOEXEC just before one container's spawn (the leaked-fd escape,
/// CVE-2024-21626): only a runtime that closes the fds above 2 it was
/// given keeps the container from reading the marker through it.
#[derive(Debug)]
pub struct LeakDir {
    pub path: PathBuf,
    pub token: String,
}

/// The marker's name inside [`LeakDir`].
pub const LEAK_MARKER: &str = "leak-marker";

impl LeakDir {
    pub fn create(path: PathBuf) -> Result<LeakDir, FixtureError> {
        fs::create_dir_all(&path).map_err(io_err("create the leak dir", &path))?;
        let token = token();
        let marker = path.join(LEAK_MARKER);
        fs::write(&marker, &token).map_err(io_err("write the leak marker", &marker))?;
        Ok(LeakDir { path, token })
    }

    /// The directory opened WITHOUT close-on-exec: every process this one
    /// starts while the fd lives inherits it. The runner holds it across
    /// one spawn only (it runs scenarios one at a time, on one thread, and
    /// starts nothing else meanwhile) and closes it as soon as spawn returns.
    pub fn open_inheritable(&self) -> Result<std::os::fd::OwnedFd, FixtureError> {
        nix::fcntl::open(
            &self.path,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|source| FixtureError::Sys {
            step: "open the leak dir without O_CLOEXEC",
            source,
        })
    }
}

impl Drop for LeakDir {
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
    fn the_leak_dir_fd_is_inheritable_and_reaches_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let leak = LeakDir::create(dir.path().join("leak")).unwrap();
        let fd = leak.open_inheritable().unwrap();
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, 0, "must survive exec");
        let marker = nix::fcntl::openat(
            &fd,
            LEAK_MARKER,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        let text = std::io::read_to_string(std::fs::File::from(marker)).unwrap();
        assert_eq!(text, leak.token);
    }

    #[test]
    fn an_unreadable_tree_is_an_error_not_a_hash() {
        let dir = tempfile::tempdir().unwrap();
        let src = RoBindSource {
            path: dir.path().join("missing"),
        };
        assert!(src.hash().is_err());
        std::mem::forget(src);
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

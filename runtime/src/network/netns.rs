//! A network namespace held by a file descriptor. Work inside another
//! namespace runs on a short-lived scoped thread switched into it, so the
//! caller's thread never changes namespace (a netns is a per-thread
//! property).

use super::{NetworkError, TeardownErrors};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A network namespace, kept alive for as long as this handle lives.
#[derive(Debug)]
pub struct Netns(OwnedFd);

impl Netns {
    /// The namespace of the calling thread.
    pub fn current() -> Result<Netns, NetworkError> {
        Netns::from_path("/proc/thread-self/ns/net")
    }

    /// The namespace of process `pid`.
    pub fn from_pid(pid: i32) -> Result<Netns, NetworkError> {
        Netns::from_path(format!("/proc/{pid}/ns/net"))
    }

    /// A namespace file such as `/proc/PID/ns/net` or a bind mount of one.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Netns, NetworkError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| NetworkError::OpenNetns {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Netns(OwnedFd::from(file)))
    }

    /// A new, empty namespace (only a down `lo`), alive as long as the handle.
    /// A scoped thread unshares and opens its own namespace file; when the
    /// thread ends, the fd is the only reference left.
    pub fn new_anonymous() -> Result<Netns, NetworkError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    unshare(CloneFlags::CLONE_NEWNET)
                        .map_err(|source| NetworkError::Unshare { source })?;
                    Netns::current()
                })
                .join()
                .map_err(|_| NetworkError::ThreadPanicked)?
        })
    }

    /// A second handle on the same namespace.
    pub fn try_clone(&self) -> Result<Netns, NetworkError> {
        let fd = self
            .0
            .try_clone()
            .map_err(|source| NetworkError::DupNetns { source })?;
        Ok(Netns(fd))
    }

    /// Runs `f` on a scoped thread switched into this namespace and returns
    /// its result. Sockets created by `f` stay bound to this namespace.
    pub fn run_in<T, F>(&self, f: F) -> Result<T, NetworkError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        // Already there (the caller's own namespace, the usual host): no
        // thread needed; starting one costs more than most requests.
        if self.is_the_calling_threads()? {
            return Ok(f());
        }
        let fd = self.0.as_fd();
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(fd, CloneFlags::CLONE_NEWNET)
                        .map_err(|source| NetworkError::Setns { source })?;
                    Ok(f())
                })
                .join()
                .map_err(|_| NetworkError::ThreadPanicked)?
        })
    }

    /// Makes `cmd` start inside this namespace: the child joins it between
    /// fork and exec. The parent is not moved.
    pub fn enter_on_spawn<'c>(
        &self,
        cmd: &'c mut Command,
    ) -> Result<&'c mut Command, NetworkError> {
        let fd = self
            .0
            .try_clone()
            .map_err(|source| NetworkError::DupNetns { source })?;
        // SAFETY: the closure runs in the forked child before exec; it makes
        // one syscall (setns) on an fd it owns and allocates nothing, which is
        // async-signal-safe. The fd stays open until the Command is dropped.
        unsafe {
            cmd.pre_exec(move || {
                setns(&fd, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
            });
        }
        Ok(cmd)
    }

    /// Whether the calling thread is in this namespace.
    fn is_the_calling_threads(&self) -> Result<bool, NetworkError> {
        let path = "/proc/thread-self/ns/net";
        let here = nix::sys::stat::stat(path).map_err(|source| NetworkError::OpenNetns {
            path: PathBuf::from(path),
            source: source.into(),
        })?;
        Ok(self.id()? == (here.st_dev, here.st_ino))
    }

    /// (device, inode) of the namespace file: equal for the same namespace.
    pub fn id(&self) -> Result<(u64, u64), NetworkError> {
        let stat =
            nix::sys::stat::fstat(self.0.as_fd()).map_err(|source| NetworkError::OpenNetns {
                path: PathBuf::from("<netns fd>"),
                source: source.into(),
            })?;
        Ok((stat.st_dev, stat.st_ino))
    }
}

/// A new network namespace bound to a file (as `ip netns add` does), so a
/// process that is not ours can be told its path: an OCI runtime joins it
/// through config.json's `linux.namespaces[].path`. The namespace lives as
/// long as the bind mount or a process inside it; [`NetnsFile::remove`]
/// (or drop) unmounts and deletes the file.
#[derive(Debug)]
pub struct NetnsFile {
    ns: Netns,
    path: PathBuf,
    removed: bool,
}

impl NetnsFile {
    /// Makes an empty namespace (only a down `lo`) and binds it at `path`,
    /// a file that must not exist yet (its directory must).
    pub fn create(path: &Path) -> Result<NetnsFile, NetworkError> {
        let ns = Netns::new_anonymous()?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| NetworkError::NetnsFile {
                step: "create the mount point",
                path: path.to_path_buf(),
                source,
            })?;
        let fd_path = format!("/proc/self/fd/{}", ns.as_fd().as_raw_fd());
        if let Err(e) = mount(
            Some(fd_path.as_str()),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = std::fs::remove_file(path);
            return Err(NetworkError::NetnsFile {
                step: "bind the namespace",
                path: path.to_path_buf(),
                source: e.into(),
            });
        }
        Ok(NetnsFile {
            ns,
            path: path.to_path_buf(),
            removed: false,
        })
    }

    /// The file the namespace is bound at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A handle on the namespace (to attach a veth to it).
    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Unmounts and deletes the file; keeps going past an error and
    /// returns them all. The namespace goes once nothing else holds it.
    pub fn remove(mut self) -> Result<(), TeardownErrors> {
        self.removed = true;
        self.teardown()
    }

    fn teardown(&mut self) -> Result<(), TeardownErrors> {
        let mut errors = Vec::new();
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            // Not mounted (any more): only the file is left.
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => errors.push(NetworkError::NetnsFile {
                step: "unmount",
                path: self.path.clone(),
                source: e.into(),
            }),
        }
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                errors.push(NetworkError::NetnsFile {
                    step: "remove the file",
                    path: self.path.clone(),
                    source: e,
                })
            }
            _ => {}
        }
        TeardownErrors::from_vec(errors)
    }
}

impl Drop for NetnsFile {
    fn drop(&mut self) {
        if !self.removed {
            if let Err(e) = self.teardown() {
                tracing::warn!(path = %self.path.display(), error = %e, "dropping NetnsFile");
            }
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

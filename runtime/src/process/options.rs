//! How a container is started, beside its spec: names, stdio, hooks.

use std::fmt;
use std::fs::File;
use std::os::fd::OwnedFd;

use super::libc_flags;
use crate::error::Error;
use crate::network::Netns;
use crate::spec::SpecError;
use crate::sys;

/// Where a standard stream of the first process goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StdioMode {
    #[default]
    Inherit,
    Null,
    /// A pipe; the parent's end via `take_stdin` / `take_stdout` / `take_stderr`.
    Piped,
}

/// A hook run in the parent with the child's host pid, while the child
/// waits in the handshake (before its root is built, before exec).
pub type ParentSetup = Box<dyn FnMut(i32) -> Result<(), String>>;

/// How to start the container (everything that is not the spec).
pub struct SpawnOptions {
    /// Names temp dirs `isocheck-<run_id>-<name>-*`.
    pub run_id: String,
    /// Container name, unique within the run.
    pub name: String,
    pub stdin: StdioMode,
    pub stdout: StdioMode,
    pub stderr: StdioMode,
    /// Run in order once the child is `Ready` (its root built, unless it has
    /// a user namespace, whose root waits for the id maps) and before it
    /// joins its cgroup's v1 directories and is confined; the first error
    /// aborts the spawn (the child is killed and reaped).
    pub parent_setup: Vec<ParentSetup>,
    /// The network namespace the bridge of a bridged container lives in
    /// ("the host"); `None` is the caller's own.
    pub host_netns: Option<Netns>,
}

impl SpawnOptions {
    /// Inherited stdio, no hooks.
    pub fn new(run_id: impl Into<String>, name: impl Into<String>) -> SpawnOptions {
        SpawnOptions {
            run_id: run_id.into(),
            name: name.into(),
            stdin: StdioMode::Inherit,
            stdout: StdioMode::Inherit,
            stderr: StdioMode::Inherit,
            parent_setup: Vec::new(),
            host_netns: None,
        }
    }
}

impl fmt::Debug for SpawnOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpawnOptions")
            .field("run_id", &self.run_id)
            .field("name", &self.name)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("stderr", &self.stderr)
            .field("parent_setup", &self.parent_setup.len())
            .field("host_netns", &self.host_netns.is_some())
            .finish()
    }
}

/// Stdio ends: what the child dup2s, what the parent keeps.
pub(crate) struct Stdio {
    pub child: Option<OwnedFd>,
    pub parent: Option<File>,
}

pub(crate) fn stdio(mode: StdioMode, child_reads: bool) -> Result<Stdio, Error> {
    match mode {
        StdioMode::Inherit => Ok(Stdio {
            child: None,
            parent: None,
        }),
        StdioMode::Null => {
            let flags = if child_reads {
                libc_flags::RDONLY
            } else {
                libc_flags::WRONLY
            };
            let fd = sys::open(c"/dev/null", flags)
                .map_err(|e| Error::os_path("open", "/dev/null", e))?;
            Ok(Stdio {
                child: Some(fd),
                parent: None,
            })
        }
        StdioMode::Piped => {
            let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| Error::os("pipe2", e))?;
            let (child, parent) = if child_reads { (r, w) } else { (w, r) };
            Ok(Stdio {
                child: Some(child),
                parent: Some(File::from(parent)),
            })
        }
    }
}

/// Names used in paths must stay one path component.
pub(crate) fn check_name(field: &str, value: &str) -> Result<(), Error> {
    if value.is_empty()
        || value.len() > 64
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::Spec(SpecError::Invalid {
            field: field.into(),
            message: format!("{value:?} must be 1 to 64 of [A-Za-z0-9._-]"),
        }));
    }
    Ok(())
}

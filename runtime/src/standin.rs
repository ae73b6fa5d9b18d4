//! The stand-in host (DESIGN.md): before anything else, a run enters network,
//! mount, UTS and IPC namespaces of its own. The bridge, the NAT table, the
//! "outside world" and every container hang off this stand-in, so a run can
//! never change the real host's interfaces, routes, firewall, hostname or
//! mount table, and no packet can leave the machine.
//!
//! The harness and the benches both run inside one; a user of the runtime
//! can too, to try containers without touching the real host.
//!
//! It must be entered while the process is still single-threaded: unshare of
//! a mount namespace fails with EINVAL once threads share the filesystem
//! context.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Hostname of every stand-in host; controls that leak a hostname change it.
pub const STANDIN_HOSTNAME: &str = "isocheck-standin";

#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    #[error("enter the stand-in host: unshare(net, mount, uts, ipc): {0} (needs root)")]
    Unshare(nix::Error),
    #[error("stand-in host: make / private: {0}")]
    Private(nix::Error),
    #[error("stand-in host: make / shared in its own peer groups: {0}")]
    Shared(nix::Error),
    #[error("stand-in host: sethostname {STANDIN_HOSTNAME}: {0}")]
    Hostname(nix::Error),
    #[error("stand-in host: bring lo up: {0}")]
    Loopback(String),
}

/// Moves the calling process into a fresh stand-in host. Everything the
/// process creates afterwards (mounts, links, nft tables, SysV objects) lives
/// and dies with these namespaces.
pub fn enter() -> Result<(), StandinError> {
    unshare(
        CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(StandinError::Unshare)?;
    // Private, recursively: no mount of ours propagates back to the real host.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(StandinError::Private)?;
    // Then shared again, in peer groups of its own (the real host's are cut
    // off above): a systemd host's `/` is shared, and a container that
    // forgets to make its root rslave must show it here, not be hidden by a
    // private stand-in.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(StandinError::Shared)?;
    nix::unistd::sethostname(STANDIN_HOSTNAME).map_err(StandinError::Hostname)?;
    use crate::network::{loopback_up_netns, Netns};
    Netns::current()
        .and_then(|ns| loopback_up_netns(&ns))
        .map_err(|e| StandinError::Loopback(e.to_string()))?;
    Ok(())
}

/// The stand-in's hostname now (a control may have changed it).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Puts the stand-in's hostname back after a control changed it.
pub fn reset_hostname() {
    let _ = nix::unistd::sethostname(STANDIN_HOSTNAME);
}

//! The stand-in host: the bench process moves into network, mount, UTS and
//! IPC namespaces of its own before it starts anything, so every netns,
//! veth, mount and hostname a bench creates hangs off the stand-in and never
//! off the machine's real namespaces.
//!
//! Must run before any thread exists (unshare(CLONE_NEWNS) refuses a
//! process whose fs state is shared with other threads), i.e. first thing in
//! `main`, before criterion starts.

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    #[error("unshare(net, mount, uts, ipc) for the stand-in host (are we root?): {0}")]
    Unshare(nix::Error),
    #[error("making / recursively private in the stand-in's mount namespace: {0}")]
    MakeRootPrivate(nix::Error),
    #[error("opening a socket to bring lo up: {0}")]
    Socket(std::io::Error),
    #[error("reading the flags of lo: {0}")]
    GetLoFlags(std::io::Error),
    #[error("setting lo up: {0}")]
    SetLoUp(std::io::Error),
}

/// Enter the stand-in host: own net, mount, UTS and IPC namespaces, `/`
/// recursively private (nothing we mount propagates back), `lo` up.
pub fn enter() -> Result<(), StandInError> {
    unshare(
        CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC,
    )
    .map_err(StandInError::Unshare)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(StandInError::MakeRootPrivate)?;
    bring_lo_up()
}

/// SIOCGIFFLAGS / SIOCSIFFLAGS on `lo`: two ioctls, no netlink needed.
fn bring_lo_up() -> Result<(), StandInError> {
    // SAFETY: socket() takes no pointers; the result is checked below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(StandInError::Socket(std::io::Error::last_os_error()));
    }
    // SAFETY: `raw` is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo", and outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(StandInError::GetLoFlags(std::io::Error::last_os_error()));
    }
    // SAFETY: SIOCGIFFLAGS just filled the flags member of the union.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; the kernel only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(StandInError::SetLoUp(std::io::Error::last_os_error()));
    }
    Ok(())
}

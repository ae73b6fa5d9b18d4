//! The parent↔child handshake over a SOCK_SEQPACKET pair (each message
//! one packet, its boundaries kept): typed messages with a fixed-size
//! encoding, so the child sends one without allocating.
//!
//! 1. child → parent: `Ready` (stdio in place, PR_SET_PDEATHSIG set, its
//!    root built when it has no user namespace); meanwhile the parent
//!    completes the cgroup and makes the veth;
//! 2. parent → child: `GO` (oom_score_adj, veth, hooks, id maps done),
//!    carrying the cgroup's v1 `tasks` files (SCM_RIGHTS), which the
//!    child joins through at once;
//! 3. child → parent: nothing when execve succeeded (the socket is
//!    close-on-exec, so the parent reads EOF exactly then), or `Failed`.
//!
//! An exec helper sends `Pid` (the exec'd process's host pid) before 3.

use nix::errno::Errno;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::step::{ChildError, StepFailure, FAILURE_WIRE_LEN};
use crate::sys::{self, Syscalls};

/// How long the parent waits for each message before giving up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The parent's one message: the child may go on.
pub(crate) const GO: u8 = b'G';

const READY: u8 = b'R';
const FAILED: u8 = b'E';
const PID: u8 = b'P';

/// The longest message on the wire.
const MAX_LEN: usize = 1 + FAILURE_WIRE_LEN;

/// A message from the child (or an exec helper) to the parent. Not boxed,
/// as clippy would have it: the child must not allocate.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FromChild {
    Ready,
    Pid(i32),
    Failed(StepFailure),
}

impl FromChild {
    /// The message in `buf`; returns its length.
    fn encode(&self, buf: &mut [u8; MAX_LEN]) -> usize {
        match self {
            FromChild::Ready => {
                buf[0] = READY;
                1
            }
            FromChild::Pid(pid) => {
                buf[0] = PID;
                buf[1..5].copy_from_slice(&pid.to_le_bytes());
                5
            }
            FromChild::Failed(f) => {
                buf[0] = FAILED;
                buf[1..].copy_from_slice(&f.encode());
                MAX_LEN
            }
        }
    }

    fn decode(msg: &[u8]) -> Option<FromChild> {
        match (msg.first()?, &msg[1..]) {
            (&READY, []) => Some(FromChild::Ready),
            (&PID, pid) => Some(FromChild::Pid(i32::from_le_bytes(pid.try_into().ok()?))),
            (&FAILED, failure) => StepFailure::decode(failure).map(FromChild::Failed),
            _ => None,
        }
    }

    /// This message where another was due: the child's failure, or a
    /// protocol error naming what came instead.
    pub(crate) fn into_error(self, waiting_for: &str) -> Error {
        match self {
            FromChild::Failed(f) => Error::Child(ChildError::from(f)),
            other => Error::Handshake(format!(
                "unexpected message {other:?} while waiting for {waiting_for}"
            )),
        }
    }
}

/// The child's side: one message, through the seam.
pub(crate) fn send<S: Syscalls>(sys: &mut S, sock: RawFd, msg: &FromChild) -> Result<(), Errno> {
    let mut buf = [0u8; MAX_LEN];
    let n = msg.encode(&mut buf);
    sys.write_all(sock, &buf[..n])
}

/// The parent's side: the next message, `None` at EOF; an error on timeout
/// or on bytes that are no message.
pub(crate) fn receive(
    sock: BorrowedFd<'_>,
    deadline: Instant,
    waiting_for: &str,
) -> Result<Option<FromChild>, Error> {
    let left = deadline.saturating_duration_since(Instant::now());
    let ready = sys::poll_readable(sock, left.as_millis().min(i32::MAX as u128) as i32)
        .map_err(|e| Error::os("poll handshake socket", e))?;
    if !ready {
        return Err(Error::Handshake(format!(
            "no answer from the child within {HANDSHAKE_TIMEOUT:?} while waiting for {waiting_for}"
        )));
    }
    // One byte more than any message, so an oversized one is not cut to fit.
    let mut buf = [0u8; MAX_LEN + 1];
    let n = match sys::read(sock, &mut buf) {
        // A child that closed its end with `GO` still unread in it (it
        // failed before reading it) resets ours: the kernel reports that
        // once, ahead of the messages the child sent before it went, and
        // the next read returns them.
        Err(Errno::ECONNRESET) => sys::read(sock, &mut buf),
        other => other,
    }
    .map_err(|e| Error::os("read handshake socket", e))?;
    if n == 0 {
        return Ok(None);
    }
    FromChild::decode(&buf[..n]).map(Some).ok_or_else(|| {
        Error::Handshake(format!(
            "unreadable message {:?} while waiting for {waiting_for}",
            &buf[..n.min(16)]
        ))
    })
}

/// The socket pair, close-on-exec on both ends.
pub(crate) fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), Error> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::os("socketpair", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::step::Step;

    #[test]
    fn every_message_round_trips() {
        for msg in [
            FromChild::Ready,
            FromChild::Pid(4242),
            FromChild::Failed(StepFailure::new(Step::Execve, Errno::ENOENT, b"/x")),
        ] {
            let mut buf = [0u8; MAX_LEN];
            let n = msg.encode(&mut buf);
            assert_eq!(FromChild::decode(&buf[..n]), Some(msg));
        }
    }

    #[test]
    fn garbage_and_truncated_messages_are_refused() {
        for bad in [&b""[..], b"X", b"RR", b"P\x01\x02", b"E\x01"] {
            assert_eq!(FromChild::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_wrong_message_names_what_was_awaited() {
        let e = FromChild::Ready.into_error("the exec'd pid");
        assert_eq!(
            e.to_string(),
            "handshake with the child: unexpected message Ready while waiting for the exec'd pid"
        );
    }

    #[test]
    fn messages_cross_a_real_socket_pair() {
        let (parent, child) = seqpacket_pair().expect("socketpair");
        use std::os::fd::{AsFd, AsRawFd};
        send(
            &mut sys::RealSyscalls,
            child.as_raw_fd(),
            &FromChild::Pid(7),
        )
        .expect("send");
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = receive(parent.as_fd(), deadline, "pid").expect("receive");
        assert_eq!(got, Some(FromChild::Pid(7)));
        assert_eq!(receive(parent.as_fd(), deadline, "eof").expect("eof"), None);
    }

    #[test]
    fn a_failure_sent_before_go_was_read_still_arrives() {
        // The early GO: the parent's GO is still unread when the child
        // fails and closes its end, which resets the parent's.
        let (parent, child) = seqpacket_pair().expect("socketpair");
        use std::os::fd::{AsFd, AsRawFd};
        sys::send_with_fds(parent.as_fd(), &[GO], &[]).expect("send go");
        let failed = FromChild::Failed(StepFailure::new(Step::MountProc, Errno::EPERM, b"/proc"));
        send(&mut sys::RealSyscalls, child.as_raw_fd(), &failed).expect("send");
        drop(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = receive(parent.as_fd(), deadline, "ready").expect("receive");
        assert_eq!(got, Some(failed));
        assert_eq!(receive(parent.as_fd(), deadline, "eof").expect("eof"), None);
    }
}

//! A child held by its pidfd: signalled and waited for through the pidfd
//! (never a recycled pid), reaped once, killed and reaped on drop. A
//! container's first process and a process exec'd into it are both one.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::error::Error;
use crate::sys;

/// How a process ended: an exit code or the signal that killed it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    fn from_wait(status: WaitStatus) -> Option<ExitStatus> {
        match status {
            WaitStatus::Exited(_, code) => Some(ExitStatus {
                code: Some(code),
                signal: None,
            }),
            WaitStatus::Signaled(_, sig, _) => Some(ExitStatus {
                code: None,
                signal: Some(sig as i32),
            }),
            _ => None,
        }
    }
}

/// A child process of ours and its pidfd.
#[derive(Debug)]
pub(crate) struct PidfdChild {
    pid: i32,
    pidfd: OwnedFd,
    /// Set once reaped; later waits repeat it.
    status: Option<ExitStatus>,
}

impl PidfdChild {
    /// `pidfd` must refer to `pid`, a child of this process not yet reaped.
    pub(crate) fn new(pid: i32, pidfd: OwnedFd) -> PidfdChild {
        PidfdChild {
            pid,
            pidfd,
            status: None,
        }
    }

    pub(crate) fn pid(&self) -> i32 {
        self.pid
    }

    pub(crate) fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Waits for the exit and reaps (once; later calls repeat the status).
    pub(crate) fn wait(&mut self) -> Result<ExitStatus, Error> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let s = loop {
            match waitid(Id::PIDFd(self.pidfd.as_fd()), WaitPidFlag::WEXITED) {
                Ok(ws) => {
                    if let Some(s) = ExitStatus::from_wait(ws) {
                        break s;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(Error::os("waitid", e)),
            }
        };
        self.status = Some(s);
        Ok(s)
    }

    /// Like [`wait`](Self::wait), giving up after `d` with `Ok(None)`.
    pub(crate) fn wait_timeout(&mut self, d: Duration) -> Result<Option<ExitStatus>, Error> {
        if let Some(s) = self.status {
            return Ok(Some(s));
        }
        let ms = d.as_millis().min(i32::MAX as u128) as i32;
        if !sys::poll_readable(self.pidfd.as_fd(), ms).map_err(|e| Error::os("poll pidfd", e))? {
            return Ok(None);
        }
        self.wait().map(Some)
    }

    /// `signal` through the pidfd unless already reaped; a process that has
    /// exited (ESRCH) is not an error.
    pub(crate) fn signal(&self, signal: Signal) -> Result<(), Error> {
        if self.status.is_some() {
            return Ok(());
        }
        match sys::pidfd_send_signal(self.pidfd.as_fd(), signal as i32) {
            Ok(()) | Err(Errno::ESRCH) => Ok(()),
            Err(e) => Err(Error::os_path("pidfd_send_signal", signal.as_str(), e)),
        }
    }

    pub(crate) fn kill(&self) -> Result<(), Error> {
        self.signal(Signal::SIGKILL)
    }

    /// Whether it has been reaped already.
    pub(crate) fn reaped(&self) -> bool {
        self.status.is_some()
    }
}

impl Drop for PidfdChild {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.kill();
            let _ = self.wait();
        }
    }
}

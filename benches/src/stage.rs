//! Timing one start-up stage that has to run in the container's own child
//! (building the root, dropping capabilities): a fork-like clone3 child
//! runs the stage between two CLOCK_MONOTONIC reads and sends the elapsed
//! nanoseconds back over a pipe. The clone, the exit and the wait are not
//! counted, so the figure is the stage alone.

use crate::spawn::{wait_success, SpawnError};
use isocheck_runtime::sys::{self, Forked};
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Sent instead of a duration when the stage failed in the child.
const STAGE_FAILED: u64 = u64::MAX;

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("pipe2 for the stage's result: {0}")]
    Pipe(std::io::Error),
    #[error("clone3 with flags {flags:#x}: {source}")]
    Clone3 { flags: u64, source: std::io::Error },
    #[error("reading the stage's result from the child: {0}")]
    Read(std::io::Error),
    #[error("the stage failed in the child (flags {flags:#x})")]
    Failed { flags: u64 },
    #[error(transparent)]
    Child(#[from] SpawnError),
}

fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// Run `stage` in a child cloned with `flags` and return how long it took
/// there. `stage` returns false on failure; it runs in a fork of a
/// multi-threaded process, so it must not take locks another thread may
/// hold (the runtime's child-side functions are written for exactly that).
pub fn time_in_child<F: FnMut() -> bool>(flags: u64, mut stage: F) -> Result<Duration, StageError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(StageError::Pipe(std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 just returned these two fresh descriptors; each is
    // owned exactly once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: the child runs `stage` (see the contract above), two clock
    // reads, one write and _exit; a panic is caught so it never unwinds into
    // the parent's copied frames.
    let ret = match unsafe { sys::clone3(flags, false) } {
        Ok(Forked::Child) => 0,
        Ok(Forked::Parent { pid, .. }) => i64::from(pid),
        Err(_) => -1,
    };
    if ret == 0 {
        let start = monotonic_ns();
        let ok =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(&mut stage)).unwrap_or(false);
        let elapsed = if ok {
            monotonic_ns() - start
        } else {
            STAGE_FAILED
        };
        let bytes = elapsed.to_ne_bytes();
        // SAFETY: in the child: write from a valid 8-byte buffer to our
        // pipe, then leave without running any destructor.
        unsafe {
            libc::write(
                std::os::fd::AsRawFd::as_raw_fd(&write_end),
                bytes.as_ptr().cast(),
                bytes.len(),
            );
            libc::_exit(0);
        }
    }
    if ret < 0 {
        return Err(StageError::Clone3 {
            flags,
            source: std::io::Error::last_os_error(),
        });
    }
    drop(write_end);
    let mut bytes = [0u8; 8];
    let read = std::fs::File::from(read_end).read_exact(&mut bytes);
    wait_success(ret as i32, flags)?;
    read.map_err(StageError::Read)?;
    match u64::from_ne_bytes(bytes) {
        STAGE_FAILED => Err(StageError::Failed { flags }),
        ns => Ok(Duration::from_nanos(ns)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_is_timed_in_the_child_without_the_fork() {
        let elapsed = time_in_child(0, || {
            std::thread::sleep(Duration::from_millis(20));
            true
        })
        .expect("stage runs");
        assert!(elapsed >= Duration::from_millis(20), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn a_failing_or_panicking_stage_is_an_error() {
        assert!(matches!(
            time_in_child(0, || false),
            Err(StageError::Failed { .. })
        ));
        assert!(matches!(
            time_in_child(0, || panic!("in the child")),
            Err(StageError::Failed { .. })
        ));
    }

    #[test]
    fn the_stage_does_not_run_in_the_parent() {
        let mut ran_here = false;
        time_in_child(0, || {
            ran_here = true;
            true
        })
        .expect("stage runs");
        assert!(!ran_here);
    }
}

//! Signals for the two commands that run containers.
//!
//! Both block their signals before anything else exists (threads, the
//! stand-in host, containers), so the kernel never delivers them to a thread
//! that does not expect them: every thread made afterwards inherits the
//! mask, and a container's first process (and each `exec`) resets its mask
//! and dispositions before exec (`isocheck_runtime::sys::reset_signals`), as
//! std's `Command` does for helper processes.
//!
//! - `isocheck container run` reads them from a signalfd and forwards each to
//!   the container's PID 1 through its pidfd ([`forwarding_fd`]).
//! - `isocheck run` has one thread waiting for SIGINT, SIGTERM and SIGHUP
//!   ([`Interrupt`]): the first asks the runner to stop the scenario in
//!   flight, tear down and write the partial report; a second SIGINT exits at
//!   once (130) without teardown, leaving `isocheck cleanup` to find the rest.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// What `isocheck container run` forwards to the container, as `runc run` does.
pub const FORWARDED: [Signal; 6] = [
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The signals that ask `isocheck run` to stop (and a container to end).
pub const STOPPING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The exit status of a process that ended because of `signal`.
pub fn exit_code(signal: Signal) -> u8 {
    128u8.saturating_add(signal as u8)
}

#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("{step}: {errno}")]
    Sys {
        step: &'static str,
        errno: nix::Error,
    },
    #[error("start the signal thread: {0}")]
    Thread(std::io::Error),
}

fn set_of(signals: &[Signal]) -> SigSet {
    let mut set = SigSet::empty();
    for sig in signals {
        set.add(*sig);
    }
    set
}

/// Blocks `signals` in the calling thread; threads and children made
/// afterwards inherit the mask. Call it before the first thread exists.
pub fn block(signals: &[Signal]) -> Result<(), SignalError> {
    set_of(signals)
        .thread_block()
        .map_err(|errno| SignalError::Sys {
            step: "block signals",
            errno,
        })
}

/// Blocks [`FORWARDED`] and returns a non-blocking signalfd that reads them.
pub fn forwarding_fd() -> Result<SignalFd, SignalError> {
    block(&FORWARDED)?;
    SignalFd::with_flags(
        &set_of(&FORWARDED),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|errno| SignalError::Sys {
        step: "signalfd",
        errno,
    })
}

/// Every signal waiting on a non-blocking signalfd, in arrival order.
pub fn pending(fd: &SignalFd) -> Vec<Signal> {
    let mut signals = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            signals.push(sig);
        }
    }
    signals
}

/// Set once `isocheck run` has been asked to stop, with the signal that
/// asked. Cheap to clone; the runner checks it between scenarios and in its
/// waits.
#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    signal: Arc<AtomicI32>,
}

impl Interrupt {
    /// One that nothing ever sets (the test harness, a library user).
    pub fn none() -> Interrupt {
        Interrupt::default()
    }

    /// Starts the thread that waits for [`STOPPING`]; they must already be
    /// blocked ([`block`]) in every thread, this one included.
    pub fn watch() -> Result<Interrupt, SignalError> {
        Self::watch_with(|seen, sig| seen.on_signal(sig))
    }

    /// As [`watch`](Self::watch) for a lane of `isocheck run`, which gets
    /// the run's signal forwarded once: the first signal is kept, nothing
    /// is printed (the run says it), and none exits at once (the run does,
    /// and its parent-death signal then ends the lane).
    pub fn watch_quietly() -> Result<Interrupt, SignalError> {
        Self::watch_with(|seen, sig| {
            let _ = seen
                .signal
                .compare_exchange(0, sig as i32, Ordering::SeqCst, Ordering::SeqCst);
        })
    }

    fn watch_with(on_signal: fn(&Interrupt, Signal)) -> Result<Interrupt, SignalError> {
        let interrupt = Interrupt::default();
        let seen = interrupt.clone();
        let set = set_of(&STOPPING);
        std::thread::Builder::new()
            .name("isocheck-signals".into())
            .spawn(move || loop {
                let Ok(sig) = set.wait() else { continue };
                on_signal(&seen, sig);
            })
            .map_err(SignalError::Thread)?;
        Ok(interrupt)
    }

    fn on_signal(&self, sig: Signal) {
        match self.signal() {
            None => {
                self.signal.store(sig as i32, Ordering::SeqCst);
                eprintln!(
                    "\nisocheck: {sig}: stopping the scenario in flight, tearing down and writing the partial report (SIGINT again exits at once)"
                );
            }
            Some(_) if sig == Signal::SIGINT => {
                eprintln!(
                    "\nisocheck: SIGINT again: exiting without teardown; `isocheck cleanup` removes what is left"
                );
                std::process::exit(exit_code(sig).into());
            }
            Some(first) => {
                eprintln!("\nisocheck: {sig}: already stopping after {first}");
            }
        }
    }

    /// The signal that asked to stop, if one did.
    pub fn signal(&self) -> Option<Signal> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Signal::try_from(n).ok(),
        }
    }

    pub fn is_set(&self) -> bool {
        self.signal().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(exit_code(Signal::SIGINT), 130);
        assert_eq!(exit_code(Signal::SIGHUP), 129);
        assert_eq!(exit_code(Signal::SIGTERM), 143);
    }

    #[test]
    fn the_first_signal_is_kept() {
        let i = Interrupt::none();
        assert!(!i.is_set());
        i.on_signal(Signal::SIGTERM);
        i.on_signal(Signal::SIGHUP);
        assert_eq!(i.signal(), Some(Signal::SIGTERM));
        assert!(i.clone().is_set());
    }
}

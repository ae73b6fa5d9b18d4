//! Talking to a probe through its pipes: the "go" on stdin, its stdout read
//! line by line with deadlines (phase markers, then one JSON observation),
//! and waiting for a container that gives up when the run is interrupted.

use super::error::ObserveError;
use crate::expect::lookup;
use crate::signals::Interrupt;
use isocheck_runtime::Container;
use serde_json::Value;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Tells a probe waiting on stdin to go on.
pub(super) fn say_go(stdin: &mut Option<File>) {
    if let Some(s) = stdin.as_mut() {
        let _ = s.write_all(b"go\n");
        let _ = s.flush();
    }
}

/// The last line of `text` that is a JSON object and not a phase marker.
pub fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| v.is_object() && lookup(v, "phase").is_none())
}

/// The end of `text`, at most `max` bytes, cut at a character boundary.
pub(super) fn tail(text: &str, max: usize) -> String {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    text[start..].trim().to_string()
}

/// How often a wait looks at the interrupt.
const INTERRUPT_POLL: Duration = Duration::from_millis(100);

/// Waits for PID 1 until `deadline`, giving up early (`Ok(None)`, as at the
/// deadline) once the run is interrupted.
pub(super) fn wait_until(
    container: &mut Container,
    deadline: Instant,
    interrupt: &Interrupt,
) -> Result<Option<isocheck_runtime::ExitStatus>, isocheck_runtime::Error> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let status = container.wait_timeout(left.min(INTERRUPT_POLL))?;
        if status.is_some() || left <= INTERRUPT_POLL || interrupt.is_set() {
            return Ok(status);
        }
    }
}

/// Reads a child's stdout line by line with deadlines, on this thread (poll,
/// no reader threads: the runtime clones from this process).
pub(super) struct LineReader {
    file: File,
    buf: Vec<u8>,
    seen: String,
    eof: bool,
    interrupt: Interrupt,
}

impl LineReader {
    pub(super) fn new(file: File, interrupt: &Interrupt) -> LineReader {
        LineReader {
            file,
            buf: Vec::new(),
            seen: String::new(),
            eof: false,
            interrupt: interrupt.clone(),
        }
    }

    /// The next full line, or `None` at EOF or the deadline.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).into_owned();
                self.seen.push_str(&line);
                return Some(line);
            }
            if self.eof {
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.interrupt.is_set() {
                return None;
            }
            let ms = left.min(INTERRUPT_POLL).as_millis() as u16;
            let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => continue,
                Ok(_) => {
                    let mut chunk = [0u8; 4096];
                    match self.file.read(&mut chunk) {
                        Ok(0) | Err(_) => self.eof = true,
                        Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => self.eof = true,
            }
        }
    }

    /// Until the probe prints its ready marker.
    pub(super) fn wait_ready(&mut self, deadline: Instant) -> Result<(), ObserveError> {
        while let Some(line) = self.next_line(deadline) {
            if serde_json::from_str::<Value>(line.trim())
                .ok()
                .is_some_and(|v| v["phase"] == "ready")
            {
                return Ok(());
            }
        }
        Err(ObserveError::NeverReady(tail(&self.seen, 400)))
    }

    /// A server says ready, or prints its observation at once when it fails.
    pub(super) fn wait_ready_or_output(&mut self, deadline: Instant) -> Result<(), ObserveError> {
        while let Some(line) = self.next_line(deadline) {
            if serde_json::from_str::<Value>(line.trim()).is_ok_and(|v| v.is_object()) {
                return Ok(());
            }
        }
        Err(ObserveError::NeverReady(tail(&self.seen, 400)))
    }

    /// The first observation the probe prints (phase markers skipped).
    pub(super) fn next_json(&mut self, deadline: Instant) -> Result<Value, ObserveError> {
        while let Some(line) = self.next_line(deadline) {
            if let Some(v) = last_json(&line) {
                return Ok(v);
            }
        }
        Err(ObserveError::NoObservation(tail(&self.seen, 400)))
    }

    /// Everything seen so far plus the rest until EOF (the child has exited).
    pub(super) fn rest(&mut self) -> String {
        let _ = self.file.read_to_end(&mut self.buf);
        self.seen.push_str(&String::from_utf8_lossy(&self.buf));
        self.buf.clear();
        self.seen.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_json_skips_phase_markers_and_noise() {
        let text = "{\"phase\":\"ready\"}\nnoise\n{\"action\":\"pids\",\"pid\":1}\n{\"phase\":\"ready\"}\n";
        assert_eq!(last_json(text).unwrap()["pid"], 1);
        assert_eq!(last_json("{\"phase\":\"ready\"}\n"), None);
    }

    #[test]
    fn tail_keeps_the_end() {
        assert_eq!(tail("abcdef", 3), "def");
        assert_eq!(tail("ab", 10), "ab");
    }
}

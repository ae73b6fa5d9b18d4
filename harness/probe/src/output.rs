//! What the probe says: one JSON observation on one line, errno values by
//! name, and the ready/go handshake of two-phase actions.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use nix::errno::Errno;
use serde_json::{Map, Value};

/// The name of an errno as the kernel headers spell it ("EPERM").
pub fn errno_name(errno: Errno) -> String {
    format!("{errno:?}")
}

/// `null` on success, the errno's name on failure.
pub fn errno_value<T>(result: &Result<T, Errno>) -> Value {
    match result {
        Ok(_) => Value::Null,
        Err(errno) => Value::String(errno_name(*errno)),
    }
}

/// The errno behind a std I/O error. std reports a few failures without an
/// OS error (a connect timeout, for one); those get the errno that means the
/// same thing.
pub fn io_errno(err: &io::Error) -> Errno {
    match err.raw_os_error() {
        Some(raw) => Errno::from_raw(raw),
        None => match err.kind() {
            io::ErrorKind::TimedOut => Errno::ETIMEDOUT,
            io::ErrorKind::WouldBlock => Errno::EAGAIN,
            io::ErrorKind::InvalidInput => Errno::EINVAL,
            _ => Errno::EIO,
        },
    }
}

/// `null` on success, the errno's name on failure, for std I/O results.
pub fn io_errno_value<T>(result: &io::Result<T>) -> Value {
    match result {
        Ok(_) => Value::Null,
        Err(err) => Value::String(errno_name(io_errno(err))),
    }
}

/// What the probe does after it has printed its observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Afterwards {
    /// Exit at once.
    Exit,
    /// Sleep, reap whatever children have exited, then exit (forkbomb).
    SleepThenReap(Duration),
    /// Block until stdin has a line or reaches EOF, then exit (daemon).
    AwaitStdin,
    /// Exit with this status (trap: 128 + the signal, as a shell does).
    ExitWith(u8),
}

/// The fields of one observation, built up by an action.
#[derive(Debug)]
pub struct Observation {
    fields: Map<String, Value>,
    pub afterwards: Afterwards,
}

impl Default for Observation {
    fn default() -> Self {
        Self::new()
    }
}

impl Observation {
    pub fn new() -> Self {
        Self {
            fields: Map::new(),
            afterwards: Afterwards::Exit,
        }
    }

    /// Adds a field.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }

    /// Adds an errno field from a nix result.
    pub fn errno<T>(self, key: &str, result: &Result<T, Errno>) -> Self {
        let value = errno_value(result);
        self.with(key, value)
    }

    /// Adds an errno field from a std I/O result.
    pub fn io_errno<T>(self, key: &str, result: &io::Result<T>) -> Self {
        let value = io_errno_value(result);
        self.with(key, value)
    }

    /// Sets what happens after the observation is printed.
    pub fn then(mut self, afterwards: Afterwards) -> Self {
        self.afterwards = afterwards;
        self
    }

    /// The single line printed on stdout: `{"action": NAME, ...fields}`.
    pub fn to_line(&self, action: &str) -> String {
        let mut fields = self.fields.clone();
        fields.insert("action".into(), Value::String(action.to_owned()));
        Value::Object(fields).to_string()
    }
}

/// Writes one line to stdout and flushes it, so the harness sees it now.
pub fn print_line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// First half of a two-phase action: tell the harness we are in place.
pub fn print_ready() -> io::Result<()> {
    print_line(r#"{"phase":"ready"}"#)
}

/// Second half: wait for the harness's go (one line on stdin). EOF, or a
/// stdin that cannot be read, also means go: the probe must not hang when
/// the harness has gone.
pub fn wait_for_go() {
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
}

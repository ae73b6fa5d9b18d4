//! Drives an OCI runtime binary with runc's command line: `create` →
//! `state` (the pid) → `start` → wait for `stopped` → evidence → `delete
//! --force`, with `--root` a state directory of ours, so nothing of the
//! runtime's lands in its system-wide state dir.

use serde_json::Value;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a runtime could not be found or a step failed. `Refused` carries
/// the runtime's own stderr: a config it will not run is `unsupported`.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("runtime {0:?}: not found on PATH nor in $CARGO_HOME/bin or ~/.cargo/bin")]
    NotFound(String),
    #[error("{step}: running {path}: {source}")]
    Spawn {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{step} refused by the runtime: {stderr}")]
    Refused { step: &'static str, stderr: String },
    #[error("{step}: {message}")]
    Other { step: &'static str, message: String },
}

/// An OCI runtime binary: its name, path and `--version` first line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OciRuntime {
    pub name: String,
    pub path: PathBuf,
    pub version: String,
}

/// The names `--runtime` looks up on PATH; anything with a `/` is a path.
pub const KNOWN: &[&str] = &["runc", "crun", "youki"];

impl OciRuntime {
    /// `runc`, `crun`, `youki` looked up on PATH (then ~/.cargo/bin), or a
    /// path to a binary.
    pub fn resolve(name_or_path: &str) -> Result<OciRuntime, RuntimeError> {
        let path = if name_or_path.contains('/') {
            PathBuf::from(name_or_path)
        } else {
            super::trials::find_installed(name_or_path)
                .ok_or_else(|| RuntimeError::NotFound(name_or_path.into()))?
        };
        if !path.is_file() {
            return Err(RuntimeError::NotFound(name_or_path.into()));
        }
        let out = Command::new(&path)
            .arg("--version")
            .output()
            .map_err(|source| RuntimeError::Spawn {
                step: "--version",
                path: path.clone(),
                source,
            })?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name_or_path.into());
        Ok(OciRuntime {
            name,
            path,
            version,
        })
    }

    fn command(&self, state_root: &Path) -> Command {
        let mut c = Command::new(&self.path);
        c.arg("--root").arg(state_root);
        c
    }

    /// Runs one subcommand to completion; a non-zero exit is `Refused` with
    /// the runtime's stderr.
    fn step(
        &self,
        state_root: &Path,
        step: &'static str,
        args: &[&str],
    ) -> Result<String, RuntimeError> {
        let out = self
            .command(state_root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                step,
                path: self.path.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(RuntimeError::Refused {
                step,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// A container the runtime created; `delete --force` runs on drop.
#[derive(Debug)]
pub struct OciContainer {
    runtime: OciRuntime,
    state_root: PathBuf,
    id: String,
    pid: u32,
    deleted: bool,
}

/// The created container's stdio: the write end of its stdin (the probe
/// waits there for "go") and the read end of its stdout (EOF once every
/// process holding it is gone).
#[derive(Debug)]
pub struct ContainerIo {
    pub stdin: File,
    pub stdout: File,
}

/// What an `exec` printed and how it ended.
#[derive(Debug, Clone)]
pub struct Exec {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
}

impl OciContainer {
    /// `create` from `bundle` (its stdin and stdout pipes of ours), then
    /// `state` for the pid. Not started yet: the caller may read the
    /// cgroup the runtime made before the process runs.
    pub fn create(
        runtime: &OciRuntime,
        state_root: &Path,
        bundle: &Path,
        id: &str,
    ) -> Result<(OciContainer, ContainerIo), RuntimeError> {
        std::fs::create_dir_all(state_root).map_err(|e| RuntimeError::Other {
            step: "create the state dir",
            message: format!("{}: {e}", state_root.display()),
        })?;
        // stderr to a file: the container inherits create's stdio, so a
        // pipe would stay open until it exits.
        let err_path = state_root.join(format!("{id}.create-stderr"));
        let err_file = std::fs::File::create(&err_path).map_err(|e| RuntimeError::Other {
            step: "create the stderr file",
            message: format!("{}: {e}", err_path.display()),
        })?;
        let mut child = runtime
            .command(state_root)
            .arg("create")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err_file)
            .spawn()
            .map_err(|source| RuntimeError::Spawn {
                step: "create",
                path: runtime.path.clone(),
                source,
            })?;
        // The container inherits both pipes; only our ends stay here.
        let io = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => Some(ContainerIo {
                stdin: File::from(OwnedFd::from(stdin)),
                stdout: File::from(OwnedFd::from(stdout)),
            }),
            _ => None,
        };
        let ok = child.wait().map(|s| s.success()).unwrap_or(false);
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        let _ = std::fs::remove_file(&err_path);
        let mut c = OciContainer {
            runtime: runtime.clone(),
            state_root: state_root.into(),
            id: id.into(),
            pid: 0,
            deleted: false,
        };
        if !ok {
            c.delete();
            return Err(RuntimeError::Refused {
                step: "create",
                stderr: stderr.trim().to_string(),
            });
        }
        let io = io.ok_or_else(|| RuntimeError::Other {
            step: "create",
            message: "no stdin/stdout pipe to the container".into(),
        })?;
        let state = c.state()?;
        c.pid = state["pid"]
            .as_u64()
            .filter(|p| *p > 0)
            .ok_or_else(|| RuntimeError::Other {
                step: "state",
                message: format!("no pid in {state}"),
            })? as u32;
        Ok((c, io))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// `state ID` as JSON.
    pub fn state(&self) -> Result<Value, RuntimeError> {
        let text = self
            .runtime
            .step(&self.state_root, "state", &["state", &self.id])?;
        serde_json::from_str(&text).map_err(|e| RuntimeError::Other {
            step: "state",
            message: format!("not JSON ({e}): {text}"),
        })
    }

    pub fn start(&self) -> Result<(), RuntimeError> {
        self.runtime
            .step(&self.state_root, "start", &["start", &self.id])
            .map(|_| ())
    }

    /// `kill [--all] ID SIGNAL`: without `--all` the init alone (and with
    /// it a pid namespace), with it every process of the container.
    pub fn kill(&self, all: bool, signal: &str) -> Result<(), RuntimeError> {
        let args: Vec<&str> = if all {
            vec!["kill", "--all", &self.id, signal]
        } else {
            vec!["kill", &self.id, signal]
        };
        self.runtime
            .step(&self.state_root, "kill", &args)
            .map(|_| ())
    }

    /// `pause ID` (freezes the container's cgroup) or `resume ID`.
    pub fn pause(&self, pause: bool) -> Result<(), RuntimeError> {
        let step = if pause { "pause" } else { "resume" };
        self.runtime
            .step(&self.state_root, step, &[step, &self.id])
            .map(|_| ())
    }

    /// `exec ID ARGV...` to its end: the process the runtime starts in the
    /// running container as its config.json's process says (namespaces,
    /// capabilities, seccomp...), with `argv` instead of the args.
    pub fn exec(&self, argv: &[String]) -> Result<Exec, RuntimeError> {
        let out = self
            .runtime
            .command(&self.state_root)
            .arg("exec")
            .arg(&self.id)
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                step: "exec",
                path: self.runtime.path.clone(),
                source,
            })?;
        Ok(Exec {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            code: out.status.code(),
        })
    }

    /// Waits until `state` says stopped; at `deadline` SIGKILL (all of
    /// it), then up to 5 s more. Whether it had to be killed.
    pub fn wait_stopped(&self, deadline: Instant) -> Result<bool, RuntimeError> {
        let mut killed = false;
        let give_up = deadline + Duration::from_secs(5);
        loop {
            let status = self.state()?["status"].as_str().unwrap_or("").to_string();
            if status == "stopped" {
                return Ok(killed);
            }
            let now = Instant::now();
            if now >= deadline && !killed {
                killed = true;
                let _ = self.kill(true, "KILL");
            }
            if now >= give_up {
                return Err(RuntimeError::Other {
                    step: "wait for stopped",
                    message: format!("{} still {status:?} 5 s after SIGKILL", self.id),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `delete --force`; also on drop. Errors are ignored here: the run's
    /// leftover check (state dir, cgroups) is what proves nothing stayed.
    pub fn delete(&mut self) {
        if !self.deleted {
            self.deleted = true;
            let _ = self
                .runtime
                .step(&self.state_root, "delete", &["delete", "--force", &self.id]);
        }
    }
}

impl Drop for OciContainer {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The container's cgroup path of `controller` (a v1 hierarchy name) as
/// /proc/PID/cgroup shows it from the host, under /sys/fs/cgroup.
pub fn v1_cgroup_dir(pid: u32, controller: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        ctrls
            .split(',')
            .any(|c| c == controller)
            .then(|| PathBuf::from(format!("/sys/fs/cgroup/{ctrls}{path}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_name_is_not_found() {
        let e = OciRuntime::resolve("isocheck-no-such-runtime").unwrap_err();
        assert!(matches!(e, RuntimeError::NotFound(_)), "{e}");
        let e = OciRuntime::resolve("/nonexistent/runc").unwrap_err();
        assert!(matches!(e, RuntimeError::NotFound(_)), "{e}");
    }
}

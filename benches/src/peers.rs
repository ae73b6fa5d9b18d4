//! The runtimes people use instead, each asked to do the same no-op in the
//! same rootfs. Each peer is tried once before it is timed; a peer that is
//! missing or refuses this host is skipped with its reason, never silently.

use crate::cgroup_tree::BenchCgroups;
use crate::full::full_spec;
use crate::oci;
use crate::probe::NOOP_ARG;
use crate::rootfs::{MinimalRootfs, PROBE_IN_ROOT};
use isocheck_harness::oci::Bundle;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("`{program}` is not installed (not found in PATH)")]
    NotInstalled { program: &'static str },
    #[error("not run unless asked: {reason}")]
    OptIn { reason: &'static str },
    #[error("building it: {0}")]
    Build(String),
    #[error("preparing the bundle: {0}")]
    Bundle(#[from] oci::OciError),
    #[error("creating temp dir isocheck-bench-state-*: {0}")]
    StateDir(std::io::Error),
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} did not exit within {after:?} (killed)")]
    Hung {
        command: String,
        after: std::time::Duration,
    },
    #[error("{command} exited with {status}: {stderr}")]
    Failed {
        command: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
}

/// How a peer is driven.
#[derive(Debug)]
enum Driver {
    /// An OCI runtime CLI: `<bin> --root STATE run --bundle B id-N`, with a
    /// private state dir and a bundle of its own (own cgroupsPath leaf).
    Oci {
        bundle: Bundle,
        state: tempfile::TempDir,
        next_id: u64,
    },
    /// A fixed argv run once per iteration.
    Argv(Vec<OsString>),
}

/// One peer, ready to be timed.
#[derive(Debug)]
pub struct Peer {
    /// Bench id, e.g. `peers/runc`.
    pub id: &'static str,
    /// What it is asked to do, and what it cannot do that `start/full` does.
    pub asked: String,
    program: PathBuf,
    driver: Driver,
}

/// Where `program` is in PATH, if anywhere.
pub fn which(program: &str) -> Option<PathBuf> {
    isocheck_harness::oci::trials::find_on_path(program)
}

impl Peer {
    /// An OCI runtime (runc, crun, youki) on a generated bundle.
    pub fn oci(
        id: &'static str,
        program: &'static str,
        root: &MinimalRootfs,
        cgroups: &BenchCgroups,
    ) -> Result<Peer, PeerError> {
        // PATH, then cargo's bin dir (`cargo install youki`), as the
        // per-runtime trials look.
        let binary = isocheck_harness::oci::trials::find_installed(program)
            .ok_or(PeerError::NotInstalled { program })?;
        // `start/full`'s own container, said in config.json by the
        // harness's builder; the rootfs as is (no overlay).
        let mut spec = full_spec(root, &[PROBE_IN_ROOT, NOOP_ARG]);
        spec.rootfs.overlay = false;
        let bundle = oci::bundle(&spec, &cgroups.oci_path(program))?;
        let state = tempfile::Builder::new()
            .prefix("isocheck-bench-state-")
            .tempdir()
            .map_err(PeerError::StateDir)?;
        Ok(Peer {
            id,
            asked: format!(
                "`{program} --root STATE run --bundle B id-N`: config.json built by the harness \
                 (isocheck_harness::oci::build_config) from start/full's spec: pid/mount/uts/ipc/net/cgroup \
                 namespaces, memory 64M + pids 32 + cpu 0.5 limits, no capabilities, no_new_privs, \
                 seccomp deny list, masked and read-only paths, device allowlist, /proc /dev /dev/pts \
                 /dev/shm /dev/mqueue ro /sys /tmp, /probe noop; rootfs as is (no overlay), \
                 then `delete --force` if state remains"
            ),
            program: binary,
            driver: Driver::Oci {
                bundle,
                state,
                next_id: 0,
            },
        })
    }

    /// bubblewrap: every namespace it supports, the rootfs bound as /.
    /// No cgroup limits (bwrap has none), no overlay.
    pub fn bwrap(root: &MinimalRootfs) -> Result<Peer, PeerError> {
        let program = which("bwrap").ok_or(PeerError::NotInstalled { program: "bwrap" })?;
        let argv: Vec<OsString> = vec![
            "--unshare-all".into(),
            "--bind".into(),
            root.path().into(),
            "/".into(),
            "--proc".into(),
            "/proc".into(),
            "--dev".into(),
            "/dev".into(),
            "--".into(),
            PROBE_IN_ROOT.into(),
            NOOP_ARG.into(),
        ];
        Ok(Peer {
            id: "peers/bwrap",
            asked: "`bwrap --unshare-all --bind ROOT / --proc /proc --dev /dev -- /probe noop`: \
                    user(try)/pid/mount/uts/ipc/net/cgroup(try) namespaces; no cgroup limits, \
                    no overlay, capabilities as bwrap drops them"
                .into(),
            program,
            driver: Driver::Argv(argv),
        })
    }

    /// `isocheck container run` as one whole process, the CLI half of the
    /// pair with `peers/bwrap`: the runtime's defaults (every namespace but
    /// user and time, overlay, cgroups, capabilities dropped, seccomp,
    /// masked paths), the probe's no-op, teardown, exit.
    pub fn isocheck_cli(program: PathBuf, root: &MinimalRootfs) -> Peer {
        let argv: Vec<OsString> = vec![
            "container".into(),
            "run".into(),
            "--rootfs".into(),
            root.path().into(),
            "--".into(),
            PROBE_IN_ROOT.into(),
            NOOP_ARG.into(),
        ];
        Peer {
            id: "cli/isocheck",
            asked: "`isocheck container run --rootfs ROOT -- /probe noop`: the runtime's defaults \
                    as a whole process (parse, stand-in checks, spawn, wait, teardown, exit)"
                .into(),
            program,
            driver: Driver::Argv(argv),
        }
    }

    /// util-linux unshare + chroot: the namespaces, nothing mounted, no
    /// limits, no capability drop, chroot instead of pivot_root.
    pub fn unshare_chroot(root: &MinimalRootfs) -> Result<Peer, PeerError> {
        let program = which("unshare").ok_or(PeerError::NotInstalled { program: "unshare" })?;
        which("chroot").ok_or(PeerError::NotInstalled { program: "chroot" })?;
        let argv: Vec<OsString> = vec![
            "--pid".into(),
            "--fork".into(),
            "--mount".into(),
            "--uts".into(),
            "--ipc".into(),
            "--net".into(),
            "--cgroup".into(),
            "chroot".into(),
            root.path().into(),
            PROBE_IN_ROOT.into(),
            NOOP_ARG.into(),
        ];
        Ok(Peer {
            id: "peers/unshare-chroot",
            asked: "`unshare --pid --fork --mount --uts --ipc --net --cgroup chroot ROOT /probe noop`: \
                    the six namespaces; no limits, no /proc, no capability drop, chroot not pivot_root"
                .into(),
            program,
            driver: Driver::Argv(argv),
        })
    }

    /// One start of the no-op, waited for and cleaned up.
    pub fn run_once(&mut self) -> Result<(), PeerError> {
        match &mut self.driver {
            Driver::Argv(argv) => run(self.id, Command::new(&self.program).args(argv.iter())),
            Driver::Oci {
                bundle,
                state,
                next_id,
            } => {
                let id = format!("isocheck-bench-{}-{next_id}", std::process::id());
                *next_id += 1;
                let label = format!("{} run", self.program.display());
                let result = run(
                    &label,
                    Command::new(&self.program)
                        .arg("--root")
                        .arg(state.path())
                        .args(["run", "--bundle"])
                        .arg(&bundle.dir)
                        .arg(&id),
                );
                // A foreground `run` deletes the container when it exits;
                // if state remains (a failure), force the delete.
                if state.path().join(&id).exists() {
                    let _ = run(
                        "delete",
                        Command::new(&self.program)
                            .arg("--root")
                            .arg(state.path())
                            .args(["delete", "--force", &id]),
                    );
                }
                result
            }
        }
    }

    /// Try one start; Err carries the reason to print when skipping.
    pub fn trial(&mut self) -> Result<(), PeerError> {
        self.run_once()
    }

    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// Run a command with stdout discarded and stderr captured for the error.
/// `label` names the command in errors (`runc run`), without temp paths.
fn run(label: &str, command: &mut Command) -> Result<(), PeerError> {
    run_within(label, command, PEER_TIMEOUT)
}

/// How long one peer start may take before it counts as hung.
const PEER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// [`run`] that kills the command after `timeout` and reports it hung,
/// rather than hanging the whole bench run.
fn run_within(
    label: &str,
    command: &mut Command,
    timeout: std::time::Duration,
) -> Result<(), PeerError> {
    let rendered = label.to_string();
    let spawn_error = |source| PeerError::Spawn {
        command: rendered.clone(),
        source,
    };
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // A pidfd polled with the timeout: two syscalls, no thread and no
    // sleep loop in the timed path. (stderr is small: an error message.)
    if !exits_within(child.id(), timeout).map_err(spawn_error)? {
        let _ = child.kill();
        let _ = child.wait();
        return Err(PeerError::Hung {
            command: rendered,
            after: timeout,
        });
    }
    let output = child.wait_with_output().map_err(spawn_error)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(PeerError::Failed {
            command: rendered,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Whether process `pid` (a child of ours, not yet reaped) exits within
/// `timeout`.
fn exits_within(pid: u32, timeout: std::time::Duration) -> std::io::Result<bool> {
    use isocheck_runtime::sys::{pidfd_open, poll_readable};
    use std::os::fd::AsFd;
    let pidfd = pidfd_open(pid as i32)?;
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    Ok(poll_readable(pidfd.as_fd(), ms)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_that_does_not_exit_in_time_is_killed_and_reported_hung() {
        let err = run_within(
            "sleep",
            Command::new("sleep").arg("30"),
            std::time::Duration::from_millis(200),
        )
        .expect_err("must time out");
        assert!(matches!(err, PeerError::Hung { .. }), "{err}");
        assert!(run_within("true", &mut Command::new("true"), PEER_TIMEOUT).is_ok());
    }

    #[test]
    fn which_finds_sh_and_not_a_made_up_name() {
        assert!(which("sh").is_some());
        assert!(which("isocheck-no-such-program-xyz").is_none());
    }

    #[test]
    fn a_failing_command_reports_status_and_stderr() {
        let err = run(
            "sh",
            Command::new("sh").args(["-c", "echo refused >&2; exit 3"]),
        )
        .expect_err("must fail");
        let text = err.to_string();
        assert!(text.contains("refused"), "{text}");
        assert!(text.contains('3'), "{text}");
    }
}

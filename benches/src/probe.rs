//! Finding the probe binary every bench executes. Every start must exec the
//! same static binary, so the floor, the peers and our runtime pay the same
//! exec cost.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable that names the probe explicitly.
pub const PROBE_ENV: &str = "ISOCHECK_PROBE";

/// What the probe prints for its no-op, if it implements actions yet.
pub const NOOP_ARG: &str = "noop";

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{PROBE_ENV}={0} does not exist")]
    EnvPathMissing(PathBuf),
    #[error("running `cargo build --release` in {dir}: {source}")]
    CargoSpawn {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("`cargo build --release` failed ({status}) and no binary of it exists under {target}")]
    CargoFailed {
        status: std::process::ExitStatus,
        target: PathBuf,
    },
}

/// The workspace's target directory for the static gnu target.
pub fn target_dir(workspace: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"))
        .join("x86_64-unknown-linux-gnu")
}

/// The probe named by the environment, else an already built one (release
/// first), else `None`.
pub fn find(workspace: &Path) -> Result<Option<PathBuf>, ProbeError> {
    if let Some(path) = std::env::var_os(PROBE_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(Some(path))
        } else {
            Err(ProbeError::EnvPathMissing(path))
        };
    }
    Ok(["release", "debug"]
        .iter()
        .map(|profile| target_dir(workspace).join(profile).join("isocheck-probe"))
        .find(|path| path.is_file()))
}

/// The probe named by $ISOCHECK_PROBE; else `cargo build -p isocheck-probe
/// --release` (a no-op when it is fresh, so a stale probe is never timed)
/// and that binary; if cargo fails, an already built probe with a warning.
pub fn find_or_build(workspace: &Path) -> Result<PathBuf, ProbeError> {
    if std::env::var_os(PROBE_ENV).is_some() {
        if let Some(path) = find(workspace)? {
            return Ok(path);
        }
    }
    build_release(workspace, "isocheck-probe", "isocheck-probe", || {
        find(workspace)
    })
}

/// The `isocheck` CLI, built like the probe (`cargo build -p
/// isocheck-harness --release --bin isocheck`), for the CLI pair.
pub fn isocheck_cli(workspace: &Path) -> Result<PathBuf, ProbeError> {
    build_release(workspace, "isocheck-harness", "isocheck", || {
        let built = target_dir(workspace).join("release").join("isocheck");
        Ok(built.is_file().then_some(built))
    })
}

/// `cargo build --release -p PACKAGE --bin BIN` and that binary; if cargo
/// fails, what `fallback` finds, with a warning.
fn build_release(
    workspace: &Path,
    package: &str,
    bin: &str,
    fallback: impl Fn() -> Result<Option<PathBuf>, ProbeError>,
) -> Result<PathBuf, ProbeError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "-p", package, "--bin", bin])
        .current_dir(workspace)
        .status()
        .map_err(|source| ProbeError::CargoSpawn {
            dir: workspace.to_path_buf(),
            source,
        })?;
    let release = target_dir(workspace).join("release").join(bin);
    if status.success() && release.is_file() {
        return Ok(release);
    }
    match fallback()? {
        Some(path) => {
            eprintln!(
                "isocheck-benches: `cargo build -p {package} --release` failed ({status}); using {} as it is",
                path.display()
            );
            Ok(path)
        }
        None => Err(ProbeError::CargoFailed {
            status,
            target: target_dir(workspace),
        }),
    }
}

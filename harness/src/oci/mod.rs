//! Other runtimes: the container a scenario asks for as an OCI bundle
//! (config.json built with the oci-spec crate), for runc, crun or youki.

pub mod config;
pub mod half;

pub use config::{build_config, oci_meaning, BundleInputs, ConfigError};
pub mod runtime;
pub mod trials;

pub use half::{run_half, start_half, Finished, HalfError, HalfRequest, HalfSeen, RunningHalf};
pub use runtime::{ContainerIo, Exec, OciContainer, OciRuntime, RuntimeError};

use std::path::{Path, PathBuf};

/// A bundle directory of ours: config.json and, with the overlay
/// protection on, `rootfs` an overlay (upper and work beside it) over the
/// image, unmounted on drop.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    overlay: Option<PathBuf>,
}

impl Bundle {
    /// Makes `dir` and, when `overlay`, mounts the image under an overlay
    /// at `dir/rootfs`. The rootfs to name in config.json is [`Bundle::rootfs`].
    pub fn create(dir: &Path, image: &Path, overlay: bool) -> Result<Bundle, String> {
        let mk = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|e| format!("create {}: {e}", p.display()))
        };
        mk(dir)?;
        if !overlay {
            return Ok(Bundle {
                dir: dir.into(),
                overlay: None,
            });
        }
        let (root, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        for p in [&root, &upper, &work] {
            mk(p)?;
        }
        let data = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.display(),
            upper.display(),
            work.display()
        );
        nix::mount::mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            nix::mount::MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|e| format!("mount the bundle's overlay at {}: {e}", root.display()))?;
        Ok(Bundle {
            dir: dir.into(),
            overlay: Some(root),
        })
    }

    /// The root to put in config.json: the overlay, or `image` itself.
    pub fn rootfs(&self, image: &Path) -> PathBuf {
        self.overlay.clone().unwrap_or_else(|| image.into())
    }

    pub fn write_config(&self, config: &oci_spec::runtime::Spec) -> Result<(), String> {
        let path = self.dir.join("config.json");
        let text = serde_json::to_string_pretty(config).map_err(|e| format!("config.json: {e}"))?;
        std::fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Some(root) = &self.overlay {
            let _ = nix::mount::umount2(root, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

//! The v2 (unified) backend: one directory `isocheck/<name>` holds every
//! controller.
//!
//! A controller only shows up in a child once it is enabled in the parent's
//! cgroup.subtree_control. We enable in our own `isocheck` parent the
//! controllers we use (memory, pids, cpu when available; cpuset and io
//! only when asked for). If the hierarchy's root has not enabled one that its
//! cgroup.controllers offers — a freshly mounted cgroup2 in a bare guest —
//! we enable it there too: that only makes the controller available to
//! children and moves no task. Controllers the root does not offer at all
//! (here: all of them, they are bound to v1) are simply not used; a limit
//! that needs one is refused with `ControllerUnavailable`.

use std::path::{Path, PathBuf};

use super::{
    fs, make_child, CgroupBackend, CgroupError, CgroupMode, Controller, ControllerDir, Nodes,
    Version, PARENT,
};
use crate::spec::Limits;

#[derive(Debug, Clone)]
pub(crate) struct V2Backend {
    root: PathBuf,
}

impl V2Backend {
    pub(crate) fn new(root: PathBuf) -> Self {
        V2Backend { root }
    }

    /// The unified node `<root>/isocheck/<name>`, no controllers enabled:
    /// what the hybrid backend adds beside its v1 directories.
    pub(crate) fn create_bare_node(
        &self,
        name: &str,
        nodes: &mut Nodes,
    ) -> Result<PathBuf, CgroupError> {
        make_child(&self.root.join(PARENT), name, nodes, |_| Ok(()))
    }

    /// `<root>/isocheck/<name>`, whether it exists or not.
    pub(crate) fn node_path(&self, name: &str) -> PathBuf {
        self.root.join(PARENT).join(name)
    }
}

/// Names listed in a space-separated controller file (cgroup.controllers,
/// cgroup.subtree_control); a missing file lists none.
fn listed(dir: &Path, file: &str) -> Result<Vec<String>, CgroupError> {
    Ok(fs::read_optional(dir, file)?
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Enable `controllers` in `dir/cgroup.subtree_control`, one write each so
/// an error names the controller, skipping those already on.
fn enable_in_subtree(dir: &Path, controllers: &[Controller]) -> Result<(), CgroupError> {
    let enabled = listed(dir, "cgroup.subtree_control")?;
    for c in controllers {
        if !enabled.iter().any(|e| e == c.as_str()) {
            fs::write(dir, "cgroup.subtree_control", &format!("+{}", c.as_str()))?;
        }
    }
    Ok(())
}

impl CgroupBackend for V2Backend {
    fn mode(&self) -> CgroupMode {
        CgroupMode::V2
    }

    fn available_controllers(&self) -> Vec<Controller> {
        let offered = listed(&self.root, "cgroup.controllers").unwrap_or_default();
        Controller::ALL
            .into_iter()
            .filter(|c| offered.iter().any(|o| o == c.as_str()))
            .collect()
    }

    fn parents(&self) -> Vec<PathBuf> {
        vec![self.root.join(PARENT)]
    }

    /// v2 has one node, with the limits: made whole before clone.
    fn create_rest(&self, _: &str, _: &Limits, _: &mut Nodes) -> Result<(), CgroupError> {
        Ok(())
    }

    fn create_birth(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError> {
        let available = self.available_controllers();
        super::require_controllers(&available, limits)?;
        let wanted: Vec<Controller> = available
            .into_iter()
            .filter(|c| match c {
                Controller::Cpuset => limits.cpuset.is_some(),
                Controller::Io => !limits.io_write_bps.is_empty(),
                _ => true,
            })
            .collect();

        enable_in_subtree(&self.root, &wanted)?;
        let dir = make_child(&self.root.join(PARENT), name, nodes, |parent| {
            enable_in_subtree(parent, &wanted)
        })?;

        // Every controller reads from the one node; files of a controller
        // that is not enabled are absent and read back as None (cpu.stat's
        // usage_usec is there regardless).
        let node = ControllerDir {
            path: dir.clone(),
            version: Version::V2,
        };
        nodes.memory = Some(node.clone());
        nodes.pids = Some(node.clone());
        nodes.cpu = Some(node.clone());
        nodes.cpuset = limits.cpuset.as_ref().map(|_| node.clone());
        nodes.io = (!limits.io_write_bps.is_empty()).then(|| node.clone());
        nodes.freezer = dir.join("cgroup.freeze").exists().then(|| node.clone());
        nodes.unified = Some(dir);

        super::apply_limits(nodes, limits)
    }

    fn locate(&self, name: &str, nodes: &mut Nodes) {
        let dir = self.node_path(name);
        if !dir.is_dir() {
            return;
        }
        let node = ControllerDir {
            path: dir.clone(),
            version: Version::V2,
        };
        // Files of a controller not enabled there read back as None.
        for slot in [
            &mut nodes.memory,
            &mut nodes.pids,
            &mut nodes.cpu,
            &mut nodes.cpuset,
            &mut nodes.io,
        ] {
            *slot = Some(node.clone());
        }
        nodes.freezer = dir.join("cgroup.freeze").exists().then(|| node.clone());
        nodes.dirs.push(dir.clone());
        nodes.unified = Some(dir);
    }
}

//! The hybrid backend (this host; systemd's "hybrid" layout): the
//! controllers are v1 hierarchies, and cgroup2 is mounted beside them with
//! no controllers. Limits and evidence go through the v1 backend; a bare
//! node `isocheck/<name>` in the unified hierarchy is added because it has
//! `cgroup.kill`, which kills the whole group atomically (v1 has no
//! equivalent; freezer + SIGKILL stays as the fallback for kernels before
//! 5.14).

use std::path::PathBuf;

use super::v1::V1Backend;
use super::v2::V2Backend;
use super::{CgroupBackend, CgroupError, CgroupMode, Controller, Nodes, PARENT};
use crate::spec::Limits;

#[derive(Debug, Clone)]
pub(crate) struct HybridBackend {
    v1: V1Backend,
    unified: V2Backend,
    unified_root: PathBuf,
}

impl HybridBackend {
    pub(crate) fn new(v1: V1Backend, unified_root: PathBuf) -> Self {
        HybridBackend {
            v1,
            unified: V2Backend::new(unified_root.clone()),
            unified_root,
        }
    }
}

impl HybridBackend {
    /// The v1 devices hierarchy, if mounted.
    pub(crate) fn devices_mount(&self) -> Option<&PathBuf> {
        self.v1.devices_mount()
    }
}

impl CgroupBackend for HybridBackend {
    fn mode(&self) -> CgroupMode {
        CgroupMode::Hybrid
    }

    fn available_controllers(&self) -> Vec<Controller> {
        self.v1.available_controllers()
    }

    /// The unified parent first: in cleanup its cgroup.kill empties the v1
    /// directories of the same group too.
    fn parents(&self) -> Vec<PathBuf> {
        let mut parents = vec![self.unified_root.join(PARENT)];
        parents.extend(self.v1.parents());
        parents
    }

    /// The bare v2 node (no controllers there: kill, freeze, events).
    fn create_birth(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError> {
        self.v1.create_birth(name, limits, nodes)?;
        let node = self.unified.create_bare_node(name, nodes)?;
        nodes.unified = Some(node);
        Ok(())
    }

    fn create_rest(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError> {
        self.v1.create_rest(name, limits, nodes)
    }

    fn locate(&self, name: &str, nodes: &mut Nodes) {
        self.v1.locate(name, nodes);
        let node = self.unified.node_path(name);
        if node.is_dir() {
            nodes.dirs.push(node.clone());
            nodes.unified = Some(node);
        }
    }
}

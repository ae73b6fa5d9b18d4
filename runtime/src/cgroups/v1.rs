//! The v1 (legacy) backend: one hierarchy per controller (or a few
//! co-mounted), a directory `isocheck/<name>` in each one used.
//!
//! Which hierarchies a cgroup uses: memory, pids, cpu, cpuacct and freezer
//! whenever they are mounted — memory/pids/cpu/cpuacct so the evidence can
//! be read back even without a limit, freezer so the group can be killed
//! whole and paused — and cpuset and blkio only when the limits ask. A task placed by
//! `add_process` joins every directory made, so its placement is the same
//! across those hierarchies; in hierarchies not used (cpuset without a
//! cpuset limit, devices, blkio...) it stays where its parent was. Not
//! making a cpuset cgroup without need avoids the empty-cpuset trap and a
//! pointless copy of the parent's cpus.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{
    cpuset, make_child, CgroupBackend, CgroupError, CgroupMode, Controller, ControllerDir, Nodes,
    Version, PARENT,
};
use crate::spec::Limits;

#[derive(Debug, Clone)]
pub(crate) struct V1Backend {
    /// controller name → mount point.
    mounts: BTreeMap<String, PathBuf>,
}

impl V1Backend {
    pub(crate) fn new(mounts: BTreeMap<String, PathBuf>) -> Self {
        V1Backend { mounts }
    }

    /// The v1 devices hierarchy, if mounted.
    pub(crate) fn devices_mount(&self) -> Option<&PathBuf> {
        self.mounts.get("devices")
    }

    /// The hierarchies a cgroup with these limits uses, in the order the
    /// directories are made and tasks placed.
    fn hierarchies_for(&self, limits: &Limits) -> Vec<&'static str> {
        let mut wanted = Vec::new();
        if limits.cpuset.is_some() {
            wanted.push("cpuset");
        }
        wanted.extend(["memory", "pids", "cpu", "cpuacct", "freezer"]);
        if !limits.io_write_bps.is_empty() {
            wanted.push("blkio");
        }
        wanted.retain(|c| self.mounts.contains_key(*c));
        wanted
    }
}

impl CgroupBackend for V1Backend {
    fn mode(&self) -> CgroupMode {
        CgroupMode::V1
    }

    fn available_controllers(&self) -> Vec<Controller> {
        Controller::ALL
            .into_iter()
            .filter(|c| self.mounts.contains_key(c.v1_name()))
            .collect()
    }

    /// Freezer first: `isocheck cleanup` thaws and kills there before the
    /// others are emptied.
    fn parents(&self) -> Vec<PathBuf> {
        let mut mounts: Vec<&PathBuf> = Vec::new();
        if let Some(freezer) = self.mounts.get("freezer") {
            mounts.push(freezer);
        }
        for mount in self.mounts.values() {
            if !mounts.contains(&mount) {
                mounts.push(mount);
            }
        }
        mounts.into_iter().map(|m| m.join(PARENT)).collect()
    }

    /// Nothing to be born into: the first process joins the v1
    /// directories by itself once they exist.
    fn create_birth(&self, _: &str, limits: &Limits, _: &mut Nodes) -> Result<(), CgroupError> {
        super::require_controllers(&self.available_controllers(), limits)
    }

    fn create_rest(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError> {
        super::require_controllers(&self.available_controllers(), limits)?;

        // One directory per distinct mount (cpu,cpuacct may be one).
        let mut dir_of_mount: BTreeMap<&PathBuf, PathBuf> = BTreeMap::new();
        for controller in self.hierarchies_for(limits) {
            let mount = &self.mounts[controller];
            if dir_of_mount.contains_key(mount) {
                continue;
            }
            let is_cpuset = controller == "cpuset";
            let dir = make_child(&mount.join(PARENT), name, nodes, |parent| {
                // The shared parent is a cpuset cgroup too: seed it first.
                if is_cpuset {
                    cpuset::inherit_from_parent(parent)?;
                }
                Ok(())
            })?;
            dir_of_mount.insert(mount, dir);
        }
        let controller_dir = |controller: &str| {
            let mount = self.mounts.get(controller)?;
            dir_of_mount.get(mount).map(|path| ControllerDir {
                path: path.clone(),
                version: Version::V1,
            })
        };
        fill(nodes, controller_dir);
        super::apply_limits(nodes, limits)
    }

    fn locate(&self, name: &str, nodes: &mut Nodes) {
        let controller_dir = |controller: &str| {
            let path = self.mounts.get(controller)?.join(PARENT).join(name);
            path.is_dir().then_some(ControllerDir {
                path,
                version: Version::V1,
            })
        };
        for controller in [
            "memory", "pids", "cpu", "cpuacct", "cpuset", "blkio", "freezer",
        ] {
            if let Some(d) = controller_dir(controller) {
                if !nodes.dirs.contains(&d.path) {
                    nodes.dirs.push(d.path);
                }
            }
        }
        fill(nodes, controller_dir);
    }
}

/// Each controller's directory, by v1 hierarchy name.
fn fill(nodes: &mut Nodes, controller_dir: impl Fn(&str) -> Option<ControllerDir>) {
    nodes.memory = controller_dir("memory");
    nodes.pids = controller_dir("pids");
    nodes.cpu = controller_dir("cpu");
    nodes.cpuacct = controller_dir("cpuacct").map(|d| d.path);
    nodes.cpuset = controller_dir("cpuset");
    nodes.io = controller_dir("blkio");
    nodes.freezer = controller_dir("freezer");
}

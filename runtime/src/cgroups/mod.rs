//! cgroups: limits for a container, the evidence of what the kernel did
//! under them, and killing the whole group.
//!
//! The host's layout is probed once from /proc/self/mountinfo
//! ([`CgroupManager::detect`]): v2 (unified), v1 (legacy) or hybrid (v1
//! controllers with cgroup2 beside them, as on this machine). One backend per
//! layout implements [`CgroupBackend`]; the manager holds the one picked and
//! callers never branch on the mode again. One file per controller
//! (`memory`, `pids`, `cpu`, `cpuset`, `io`, `freezer`) writes the limits and
//! reads the counters back, for either version.
//!
//! Everything is made under a parent `isocheck` in each hierarchy used,
//! as `isocheck/<name>`; nothing outside those parents is written, apart
//! from enabling controllers in a v2 root's subtree_control (see `v2`).
//!
//! Each cgroup made has an owner record, `/run/isocheck/cgroups/<name>`
//! (see `crate::owner`), written before its directories and removed after
//! them: cleanup removes a leftover cgroup only when its record shows that
//! the process that made it is dead.

mod cpu;
mod cpuset;
pub mod devices;
mod error;
mod freezer;
mod fs;
mod hybrid;
mod io;
mod kill;
pub mod memory;
mod mountinfo;
mod pids;
mod v1;
mod v2;

#[cfg(all(test, feature = "privileged"))]
mod privileged_tests;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use error::CgroupError;

use crate::spec::Limits;
use hybrid::HybridBackend;
use v1::V1Backend;
use v2::V2Backend;

/// The parent directory of all our cgroups, in every hierarchy.
pub const PARENT: &str = crate::owner::OURS;

/// Longest name accepted (well under NAME_MAX, leaves room in messages).
const MAX_NAME_LEN: usize = 128;

/// How the host's cgroup filesystems are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Legacy: one hierarchy per controller.
    V1,
    /// Unified: one cgroup2 hierarchy with every controller.
    V2,
    /// v1 controllers, cgroup2 mounted beside them without controllers.
    Hybrid,
}

impl CgroupMode {
    /// "v1" | "v2" | "hybrid", as in the JSON report's `cgroup_mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMode::V1 => "v1",
            CgroupMode::V2 => "v2",
            CgroupMode::Hybrid => "hybrid",
        }
    }
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The controllers whose limits a spec can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
    Cpuset,
    /// Block I/O: `io` on v2, `blkio` on v1.
    Io,
}

impl Controller {
    pub const ALL: [Controller; 5] = [
        Controller::Memory,
        Controller::Pids,
        Controller::Cpu,
        Controller::Cpuset,
        Controller::Io,
    ];

    /// The kernel's name for it (v2's; see [`Controller::v1_name`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
            Controller::Cpuset => "cpuset",
            Controller::Io => "io",
        }
    }

    /// The name of its v1 hierarchy.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Io => "blkio",
            other => other.as_str(),
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the kernel counted for a cgroup. `None`: this kernel or version has
/// no such counter (or the controller is not there).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct CgroupStats {
    /// Tasks killed by the OOM killer (v2 memory.events oom_kill; v1
    /// memory.oom_control oom_kill).
    pub oom_kills: Option<u64>,
    /// Times the limit was hit and reclaim failed (v2 memory.events oom).
    pub oom_events: Option<u64>,
    /// Tasks killed because a member's OOM took the group (v2 memory.events
    /// oom_group_kill, 6.0+).
    pub oom_group_kills: Option<u64>,
    /// Times usage went over memory.high (v2 memory.events high).
    pub memory_high_events: Option<u64>,
    /// Usage now (v2 memory.current, v1 memory.usage_in_bytes).
    pub memory_current_bytes: Option<u64>,
    pub memory_peak_bytes: Option<u64>,
    /// `None` when unlimited.
    pub memory_limit_bytes: Option<u64>,
    /// v2 memory.high; `None` when unlimited (or v1).
    pub memory_high_bytes: Option<u64>,
    /// Swap in use (v2 memory.swap.current, v1 memory.stat swap).
    pub swap_bytes: Option<u64>,
    /// Most swap ever used (v2 memory.swap.peak, 6.5+).
    pub swap_peak_bytes: Option<u64>,
    pub pids_current: Option<u64>,
    /// Forks refused at pids.max (pids.events max).
    pub pids_limit_hits: Option<u64>,
    pub nr_periods: Option<u64>,
    pub nr_throttled: Option<u64>,
    pub throttled_usec: Option<u64>,
    pub cpu_usage_usec: Option<u64>,
    /// Bytes written to block devices, all devices summed (v2 io.stat
    /// wbytes, v1 blkio.throttle.io_service_bytes Write).
    pub io_write_bytes: Option<u64>,
}

/// Which version of the interface files a directory has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

/// Where one controller's files are for one cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ControllerDir {
    pub path: PathBuf,
    pub version: Version,
}

/// The directories that make up one cgroup, filled in by a backend.
#[derive(Debug, Default)]
pub(crate) struct Nodes {
    pub memory: Option<ControllerDir>,
    pub pids: Option<ControllerDir>,
    pub cpu: Option<ControllerDir>,
    /// v1 cpuacct directory (cpuacct.usage); may equal the cpu directory.
    pub cpuacct: Option<PathBuf>,
    pub cpuset: Option<ControllerDir>,
    /// io (v2) or blkio (v1), only when the limits ask for it.
    pub io: Option<ControllerDir>,
    /// v1 freezer directory, or a v2 node with cgroup.freeze.
    pub freezer: Option<ControllerDir>,
    /// A v2 node (cgroup.kill, cgroup.events), in v2 and hybrid mode.
    pub unified: Option<PathBuf>,
    /// Every directory made, in creation order: tasks join each of them.
    pub dirs: Vec<PathBuf>,
}

impl Nodes {
    /// `dirs` with the ones a kill goes through (freezer, v2 node) at the
    /// end, for an rmdir sweep that may stop part way: what is left can
    /// still be killed.
    fn kill_dirs_last(&self) -> Vec<PathBuf> {
        let kills = |d: &PathBuf| {
            self.freezer.as_ref().is_some_and(|f| &f.path == d) || self.unified.as_ref() == Some(d)
        };
        let (last, first): (Vec<PathBuf>, Vec<PathBuf>) =
            self.dirs.iter().cloned().partition(kills);
        first.into_iter().chain(last).collect()
    }
}

impl Nodes {
    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mut stats = CgroupStats::default();
        if let Some(dir) = &self.memory {
            memory::stats(dir, &mut stats)?;
        }
        if let Some(dir) = &self.pids {
            pids::stats(dir, &mut stats)?;
        }
        if let Some(dir) = &self.cpu {
            cpu::stats(dir, self.cpuacct.as_deref(), &mut stats)?;
        } else if let Some(acct) = &self.cpuacct {
            stats.cpu_usage_usec = fs::read_single_u64(acct, "cpuacct.usage")?.map(|ns| ns / 1000);
        }
        if let Some(dir) = &self.io {
            io::stats(dir, &mut stats)?;
        }
        Ok(stats)
    }
}

/// A cgroup another runtime made at `isocheck/<name>` (an OCI runtime given
/// that `cgroupsPath`): read only, never removed by us.
#[derive(Debug)]
pub struct CgroupView {
    nodes: Nodes,
}

impl CgroupView {
    /// The same counters as [`Cgroup::stats`].
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        self.nodes.stats()
    }

    /// The directories found, one per hierarchy.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.nodes.dirs.clone()
    }
}

/// One way of laying cgroups out on a host. Each backend knows which
/// hierarchies to use and how to make a cgroup in them; what a cgroup does
/// afterwards (place, read, kill, remove) is driven by the [`Nodes`] it made.
pub(crate) trait CgroupBackend {
    fn mode(&self) -> CgroupMode;
    fn available_controllers(&self) -> Vec<Controller>;
    /// The `isocheck` parent in every hierarchy used (made or not yet), in
    /// the order cleanup should empty them.
    fn parents(&self) -> Vec<PathBuf>;
    /// The part of `isocheck/<name>` a process must exist in from birth
    /// (clone3 with CLONE_INTO_CGROUP): the v2 node. A limit the host
    /// cannot hold is refused here, before any process exists. Every
    /// directory made is pushed to `nodes.dirs` at once, so a failure part
    /// way is undone by the caller.
    fn create_birth(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError>;
    /// The rest: the v1 directories and the limits, made while the first
    /// process may already be in the v2 node (it joins the v1 directories
    /// itself once they exist).
    fn create_rest(
        &self,
        name: &str,
        limits: &Limits,
        nodes: &mut Nodes,
    ) -> Result<(), CgroupError>;
    /// The directories of an existing `isocheck/<name>` (made by another
    /// runtime told that path), without making or changing anything.
    fn locate(&self, name: &str, nodes: &mut Nodes);
}

/// The backend picked for this host.
#[derive(Debug, Clone)]
enum Backend {
    V1(V1Backend),
    V2(V2Backend),
    Hybrid(HybridBackend),
}

impl Backend {
    fn get(&self) -> &dyn CgroupBackend {
        match self {
            Backend::V1(b) => b,
            Backend::V2(b) => b,
            Backend::Hybrid(b) => b,
        }
    }
}

/// Entry point: knows the host's layout, makes cgroups, cleans up leftovers.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    backend: Backend,
    /// Where owner records live (`<fs root>/run/isocheck/cgroups`).
    records: PathBuf,
}

impl CgroupManager {
    /// Probe the real host through /proc/self/mountinfo.
    pub fn detect() -> Result<CgroupManager, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(|source| CgroupError::ReadMountinfo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::detect_from(&text, Path::new("/"))
    }

    /// Build from mountinfo text, with mount points taken under `fs_root`
    /// (`/` on a real host; a temp dir holding a fake tree in tests).
    pub fn detect_from(mountinfo: &str, fs_root: &Path) -> Result<CgroupManager, CgroupError> {
        let mounts = mountinfo::parse(mountinfo, fs_root);
        let backend = match mounts.mode()? {
            CgroupMode::V1 => Backend::V1(V1Backend::new(mounts.v1)),
            CgroupMode::V2 => Backend::V2(V2Backend::new(mounts.unified.unwrap_or_default())),
            CgroupMode::Hybrid => Backend::Hybrid(HybridBackend::new(
                V1Backend::new(mounts.v1),
                mounts.unified.unwrap_or_default(),
            )),
        };
        Ok(CgroupManager {
            backend,
            records: fs_root.join(crate::owner::CGROUP_RECORDS),
        })
    }

    pub fn mode(&self) -> CgroupMode {
        self.backend.get().mode()
    }

    /// Of memory, pids, cpu, cpuset: those a limit can be set with here.
    pub fn available_controllers(&self) -> Vec<Controller> {
        self.backend.get().available_controllers()
    }

    /// Make `isocheck/<name>` in each hierarchy used and apply `limits`.
    /// `name` is like "<run_id>-<container>": ASCII letters, digits, `-`,
    /// `_`, `.`; an existing cgroup of that name is an error. On failure,
    /// whatever was made is removed again. The owner record (this process,
    /// run id = the name up to its first `-`) is written first.
    pub fn create(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        let mut cgroup = self.create_for_birth(name, limits)?;
        self.complete(&mut cgroup, limits)?;
        Ok(cgroup)
    }

    /// [`CgroupManager::create`] in two halves, for a runtime that makes
    /// the cgroup while its first process builds its root: this one (owner
    /// record, the v2 node to clone into, limits checked) before clone,
    /// [`CgroupManager::complete`] after. Dropping the half-made cgroup
    /// removes what was made.
    pub fn create_for_birth(&self, name: &str, limits: &Limits) -> Result<Cgroup, CgroupError> {
        validate_name(name)?;
        let record = self.records.join(name);
        let run_id = name.split('-').next().unwrap_or(name);
        fs::ensure_private_dir(&self.records)?;
        // A record left by a dead run whose cgroup is gone (run ids come
        // from pids, which are reused) must not block this name.
        if record.exists()
            && !self.exists_anywhere(name)
            && crate::owner::Owner::read(&record, name).map_or(true, |o| !o.alive())
        {
            self.remove_record(&record)?;
        }
        crate::owner::Owner::current(name, run_id)
            .and_then(|owner| owner.write(&record))
            .map_err(|e| CgroupError::OwnerRecord {
                path: record.clone(),
                reason: e.to_string(),
            })?;
        let mut cgroup = Cgroup {
            name: name.to_string(),
            nodes: Nodes::default(),
            removed: false,
            record: Some(record),
        };
        // On error `cgroup` is dropped here, which removes what was made.
        self.backend
            .get()
            .create_birth(name, limits, &mut cgroup.nodes)?;
        Ok(cgroup)
    }

    /// The second half of [`CgroupManager::create`]: the v1 directories
    /// and the limits. The caller's first process joins those directories
    /// afterwards, through [`Cgroup::self_attach`]'s `tasks` files.
    pub fn complete(&self, cgroup: &mut Cgroup, limits: &Limits) -> Result<(), CgroupError> {
        self.backend
            .get()
            .create_rest(&cgroup.name, limits, &mut cgroup.nodes)
    }

    /// The existing cgroup `isocheck/<name>` made by someone else; an error
    /// when no hierarchy has it.
    pub fn view(&self, name: &str) -> Result<CgroupView, CgroupError> {
        validate_name(name)?;
        let mut nodes = Nodes::default();
        self.backend.get().locate(name, &mut nodes);
        if nodes.dirs.is_empty() {
            return Err(CgroupError::Read {
                path: PathBuf::from(PARENT).join(name),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        Ok(CgroupView { nodes })
    }

    /// Who made the leftover cgroup at `path`, from its owner record; an
    /// error when it has none or the record does not vouch for it.
    pub fn owner_of(&self, path: &Path) -> Result<crate::owner::Owner, crate::owner::OwnerError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        crate::owner::Owner::read(&self.records.join(&name), &name)
    }

    /// Owner records whose cgroup is gone from every hierarchy and whose
    /// owner is dead (a crash between writing one and making the cgroup, or
    /// before removing it): nothing vouches for anything with them.
    pub fn stale_records(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.records) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                !self.exists_anywhere(&name)
                    && crate::owner::Owner::read(&e.path(), &name).is_ok_and(|o| !o.alive())
            })
            .map(|e| e.path())
            .collect()
    }

    /// Removes an owner record (a stale one, see `stale_records`).
    pub fn remove_record(&self, path: &Path) -> Result<(), CgroupError> {
        if path.parent() != Some(self.records.as_path()) {
            return Err(CgroupError::NotOurs {
                path: path.to_path_buf(),
            });
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CgroupError::OwnerRecord {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// Whether `isocheck/<name>` exists in any hierarchy.
    fn exists_anywhere(&self, name: &str) -> bool {
        self.backend
            .get()
            .parents()
            .iter()
            .any(|p| p.join(name).exists())
    }

    /// Every `isocheck/*` cgroup directory, in every hierarchy, in the order
    /// `remove_leftover` should take them (the ones whose kill reaches the
    /// others first).
    /// The device allowlist ([`devices::ALLOWED`]) on `cgroup`: the v1
    /// devices controller where one is mounted (v1, hybrid), else a device
    /// program on its cgroup2 node. Call before the first task joins.
    pub fn restrict_devices(&self, cgroup: &mut Cgroup) -> Result<(), CgroupError> {
        let v1 = match &self.backend {
            Backend::V1(b) => b.devices_mount(),
            Backend::Hybrid(b) => b.devices_mount(),
            Backend::V2(_) => None,
        };
        if let Some(mount) = v1 {
            let dir = make_child(&mount.join(PARENT), &cgroup.name, &mut cgroup.nodes, |_| {
                Ok(())
            })?;
            return devices::apply_v1(&dir);
        }
        let node = cgroup
            .nodes
            .unified
            .clone()
            .ok_or(CgroupError::NoDeviceController)?;
        devices::attach_v2(&node)
    }

    pub fn leftovers(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for parent in self.backend.get().parents() {
            if let Ok(children) = fs::child_dirs(&parent) {
                found.extend(children);
            }
        }
        found
    }

    /// Kill every task in a leftover cgroup (and its sub-cgroups), remove it
    /// deepest first, then the `isocheck` parent if that is now empty.
    /// Refuses any path that is not below one of our `isocheck` parents.
    pub fn remove_leftover(&self, path: &Path) -> Result<(), CgroupError> {
        let parent = self
            .backend
            .get()
            .parents()
            .into_iter()
            .find(|p| path.parent() == Some(p.as_path()))
            .filter(|_| {
                path.components()
                    .all(|c| matches!(c, Component::Normal(_) | Component::RootDir))
            })
            .ok_or_else(|| CgroupError::NotOurs {
                path: path.to_path_buf(),
            })?;
        if path.exists() {
            kill::kill_tree(path)?;
            fs::remove_tree(path)?;
        }
        remove_parent_if_empty(&parent);
        // The record goes with the last hierarchy's directory.
        if let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) {
            if !self.exists_anywhere(&name) {
                self.remove_record(&self.records.join(name))?;
            }
        }
        Ok(())
    }
}

/// See [`Cgroup::self_attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfAttach {
    /// The `tasks` file of every v1 directory. (The v2 node, to clone
    /// into, is [`Cgroup::unified_path`].)
    pub v1_tasks: Vec<PathBuf>,
}

/// A cgroup of ours: `isocheck/<name>` in each hierarchy used. Dropping it
/// kills its tasks and removes it (best effort); `remove` does the same and
/// reports errors.
#[derive(Debug)]
pub struct Cgroup {
    name: String,
    nodes: Nodes,
    removed: bool,
    /// The owner record, removed once every directory is gone.
    record: Option<PathBuf>,
}

impl Cgroup {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Move `pid` (all its threads) into this cgroup, in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<(), CgroupError> {
        let pid = pid.to_string();
        for dir in &self.nodes.dirs {
            fs::write(dir, "cgroup.procs", &pid)?;
        }
        Ok(())
    }

    /// Read back the counters of every controller in use.
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        self.nodes.stats()
    }

    /// Freeze every task (v2 cgroup.freeze, v1 freezer.state) and return
    /// once the kernel reports the group frozen (bounded wait).
    pub fn freeze(&self) -> Result<(), CgroupError> {
        freezer::freeze(self.freezer_dir()?)
    }

    /// Let the frozen tasks run again.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        freezer::thaw(self.freezer_dir()?)
    }

    fn freezer_dir(&self) -> Result<&ControllerDir, CgroupError> {
        self.nodes.freezer.as_ref().ok_or(CgroupError::NoFreezer {
            name: self.name.clone(),
        })
    }

    /// Every task still in it, in any hierarchy or sub-cgroup. A directory
    /// of ours that is gone is an error here, never "no tasks".
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        if let Some(gone) = self.nodes.dirs.iter().find(|d| !d.is_dir()) {
            return Err(CgroupError::Read {
                path: gone.join("cgroup.procs"),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        kill::members(&self.nodes.dirs)
    }

    /// Kill every task, strays that left the process tree included, and
    /// return once none is left (bounded wait).
    pub fn kill_all(&self) -> Result<(), CgroupError> {
        kill::kill_all(&self.nodes)
    }

    /// `kill_all`, then remove the directories (sub-cgroups first) in every
    /// hierarchy, then our `isocheck` parents where now empty. Keeps going
    /// past errors and reports them together.
    pub fn remove(mut self) -> Result<(), CgroupError> {
        self.removed = true;
        self.teardown()
    }

    /// The directories of this cgroup, one per hierarchy used.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.nodes.dirs.clone()
    }

    /// The v2 node (v2 and hybrid mode): the directory to open for
    /// clone3(CLONE_INTO_CGROUP). On a hybrid host the v1 directories still
    /// need joining (see [`Cgroup::self_attach`]).
    pub fn unified_path(&self) -> Option<&Path> {
        self.nodes.unified.as_deref()
    }

    /// How a single-threaded process joins this cgroup by itself, cheaply:
    /// each v1 directory by writing "0" to its `tasks` file (a thread that
    /// moves itself is spared the kernel's global threadgroup lock, whose
    /// write side waits out an RCU grace period: 5 to 30 ms here, against
    /// 0.3 ms), the v2 node at birth (clone3 with CLONE_INTO_CGROUP into
    /// [`Cgroup::unified_path`]).
    pub fn self_attach(&self) -> SelfAttach {
        let unified = self.nodes.unified.as_deref();
        SelfAttach {
            v1_tasks: self
                .nodes
                .dirs
                .iter()
                .filter(|d| Some(d.as_path()) != unified)
                .map(|d| d.join("tasks"))
                .collect(),
        }
    }

    fn teardown(&mut self) -> Result<(), CgroupError> {
        let mut errors = Vec::new();
        // An empty cgroup without sub-cgroups goes with one rmdir per
        // hierarchy; the kernel refuses that (EBUSY) while a task is left,
        // and only then is the group killed and its tree removed.
        if !fs::remove_if_empty(&self.nodes.kill_dirs_last()) {
            if let Err(e) = self.kill_all() {
                errors.push(e);
            }
            for dir in self.nodes.dirs.iter().rev() {
                if let Err(e) = fs::remove_tree(dir) {
                    errors.push(e);
                }
            }
        }
        crate::timeline::point(crate::timeline::Point::CgroupRemoved);
        for dir in &self.nodes.dirs {
            if let Some(parent) = dir.parent() {
                remove_parent_if_empty(parent);
            }
        }
        // Kept while a directory is left, so cleanup can still prove it ours.
        if errors.is_empty() {
            if let Some(record) = self.record.take() {
                if let Err(e) = std::fs::remove_file(&record) {
                    errors.push(CgroupError::OwnerRecord {
                        path: record,
                        reason: e.to_string(),
                    });
                }
            }
        }
        collect(errors)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        self.removed = true;
        if let Err(e) = self.teardown() {
            tracing::warn!(cgroup = %self.name, error = %e, "cgroup cleanup on drop failed");
        }
    }
}

fn collect(mut errors: Vec<CgroupError>) -> Result<(), CgroupError> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        count => Err(CgroupError::Several {
            count,
            first: Box::new(errors.remove(0)),
        }),
    }
}

/// Names become one directory under `isocheck/`: never a path, never `..`.
pub(crate) fn validate_name(name: &str) -> Result<(), CgroupError> {
    let refuse = |reason| {
        Err(CgroupError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return refuse("empty");
    }
    if name == "." || name == ".." {
        return refuse("a relative path component");
    }
    if name.contains('/') {
        return refuse("contains '/'");
    }
    if name.len() > MAX_NAME_LEN {
        return refuse("longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return refuse("only ASCII letters, digits, '-', '_' and '.' are allowed");
    }
    Ok(())
}

/// Refuse limits whose controller this host lacks, before anything is made.
pub(crate) fn require_controllers(
    available: &[Controller],
    limits: &Limits,
) -> Result<(), CgroupError> {
    let asked = [
        (
            Controller::Memory,
            limits.memory_bytes.is_some(),
            "limits.memory_bytes",
        ),
        (
            Controller::Memory,
            limits.memory_high_bytes.is_some(),
            "limits.memory_high_bytes",
        ),
        (Controller::Memory, limits.oom_group, "limits.oom_group"),
        (Controller::Pids, limits.pids.is_some(), "limits.pids"),
        (Controller::Cpu, limits.cpu.is_some(), "limits.cpu"),
        (
            Controller::Cpu,
            limits.cpu_weight.is_some(),
            "limits.cpu_weight",
        ),
        (Controller::Cpuset, limits.cpuset.is_some(), "limits.cpuset"),
        (
            Controller::Io,
            !limits.io_write_bps.is_empty(),
            "limits.io_write_bps",
        ),
    ];
    for (controller, wanted, needed_for) in asked {
        if wanted && !available.contains(&controller) {
            return Err(CgroupError::ControllerUnavailable {
                controller,
                needed_for,
            });
        }
    }
    Ok(())
}

/// Write the asked-for limits through each controller's `apply`.
pub(crate) fn apply_limits(nodes: &Nodes, limits: &Limits) -> Result<(), CgroupError> {
    let dir = |d: &Option<ControllerDir>, c: Controller, needed_for| {
        d.clone().ok_or(CgroupError::ControllerUnavailable {
            controller: c,
            needed_for,
        })
    };
    if let Some(set) = &limits.cpuset {
        cpuset::apply(
            &dir(&nodes.cpuset, Controller::Cpuset, "limits.cpuset")?,
            set,
        )?;
    }
    if memory::wanted(limits) {
        memory::apply(
            &dir(&nodes.memory, Controller::Memory, "limits.memory_bytes")?,
            limits,
        )?;
    }
    if let Some(max) = limits.pids {
        pids::apply(&dir(&nodes.pids, Controller::Pids, "limits.pids")?, max)?;
    }
    if let Some(quota) = &limits.cpu {
        cpu::apply(&dir(&nodes.cpu, Controller::Cpu, "limits.cpu")?, quota)?;
    }
    if let Some(weight) = limits.cpu_weight {
        cpu::apply_weight(
            &dir(&nodes.cpu, Controller::Cpu, "limits.cpu_weight")?,
            weight,
        )?;
    }
    if !limits.io_write_bps.is_empty() {
        io::apply(
            &dir(&nodes.io, Controller::Io, "limits.io_write_bps")?,
            &limits.io_write_bps,
        )?;
    }
    Ok(())
}

/// Make `<parent>/<name>`, making and preparing the shared `parent` first.
/// A concurrent cleanup may remove an empty parent between the two mkdirs;
/// then the parent is made again (a few tries).
pub(crate) fn make_child(
    parent: &Path,
    name: &str,
    nodes: &mut Nodes,
    prepare_parent: impl Fn(&Path) -> Result<(), CgroupError>,
) -> Result<PathBuf, CgroupError> {
    let dir = parent.join(name);
    let mut tries = 0;
    loop {
        tries += 1;
        fs::ensure_dir(parent)?;
        prepare_parent(parent)?;
        match fs::create_dir(&dir) {
            Ok(()) => {
                nodes.dirs.push(dir.clone());
                return Ok(dir);
            }
            Err(CgroupError::CreateDir { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound && tries < 3 => {}
            Err(e) => return Err(e),
        }
    }
}

/// How many [`ParentHold`]s this process has alive.
static PARENT_HOLDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Keeps the `isocheck` parents in place while it lives, so a run of many
/// containers in a row does not make and remove them around each one
/// (making a v1 parent, cpuset's with its cpus and mems copied, and
/// removing it again cost more than the container's own cgroup). Dropping
/// the last hold removes every parent that is empty by then, as dropping a
/// cgroup does without one.
#[derive(Debug)]
#[must_use = "the parents are kept only while the hold lives"]
pub struct ParentHold {
    parents: Vec<PathBuf>,
}

impl CgroupManager {
    /// See [`ParentHold`].
    pub fn hold_parents(&self) -> ParentHold {
        PARENT_HOLDS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ParentHold {
            parents: self.backend.get().parents(),
        }
    }
}

impl Drop for ParentHold {
    fn drop(&mut self) {
        if PARENT_HOLDS.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            for parent in self.parents.iter().chain(&parents_in_every_hierarchy()) {
                remove_parent_if_empty(parent);
            }
        }
    }
}

/// `isocheck` under every cgroup filesystem mounted, named v1 hierarchies
/// (name=systemd) included: an OCI runtime given a cgroupsPath under it
/// makes it in each of them, and leaves it when it deletes its container.
fn parents_in_every_hierarchy() -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mountinfo::parse(&info, Path::new("/"))
        .all
        .into_iter()
        .map(|point| point.join(PARENT))
        .collect()
}

/// rmdir our `isocheck` parent; fails harmlessly (EBUSY, ENOTEMPTY) while
/// another cgroup of ours is still under it, and is not tried while a
/// [`ParentHold`] lives.
fn remove_parent_if_empty(parent: &Path) {
    if PARENT_HOLDS.load(std::sync::atomic::Ordering::SeqCst) == 0
        && parent.file_name() == Some(PARENT.as_ref())
        && fs::child_dirs(parent).is_ok_and(|c| c.is_empty())
    {
        let _ = std::fs::remove_dir(parent);
    }
}

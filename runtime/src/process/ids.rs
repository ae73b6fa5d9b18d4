//! The container's user namespace from the parent's side: the mapping when
//! none is given, where an id inside lands outside, and writing the maps.

use crate::error::Error;
use crate::spec::{IdMap, UserMapping};

/// uid/gid maps used when `namespaces.user` is on but no mapping is given:
/// root inside is the caller outside (like `unshare -r`).
pub(crate) fn default_mapping() -> UserMapping {
    let uid = nix::unistd::geteuid().as_raw();
    let gid = nix::unistd::getegid().as_raw();
    UserMapping {
        uid_map: vec![IdMap {
            inside: 0,
            outside: uid,
            count: 1,
        }],
        gid_map: vec![IdMap {
            inside: 0,
            outside: gid,
            count: 1,
        }],
    }
}

/// The host id that `inside` maps to.
pub(crate) fn outside_of(map: &[IdMap], inside: u32) -> Option<u32> {
    map.iter()
        .find(|m| {
            inside >= m.inside && u64::from(inside) < u64::from(m.inside) + u64::from(m.count)
        })
        .map(|m| m.outside + (inside - m.inside))
}

fn map_text(map: &[IdMap]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count))
        .collect()
}

pub(crate) fn write_id_maps(pid: i32, mapping: &UserMapping) -> Result<(), Error> {
    let proc_ = format!("/proc/{pid}");
    if !nix::unistd::geteuid().is_root() {
        // An unprivileged writer may map gids only with setgroups denied.
        let p = format!("{proc_}/setgroups");
        std::fs::write(&p, "deny").map_err(|e| Error::os_path("write setgroups", p, e))?;
    }
    for (file, map) in [("uid_map", &mapping.uid_map), ("gid_map", &mapping.gid_map)] {
        let p = format!("{proc_}/{file}");
        std::fs::write(&p, map_text(map)).map_err(|e| Error::os_path("write id map", p, e))?;
    }
    Ok(())
}

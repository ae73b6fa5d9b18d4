//! Capabilities: keep exactly the spec's set in all five sets, then read
//! back. The parent prepares a [`CapPlan`]; the child applies it right
//! before execve.
//!
//! Order matters: the bounding set is dropped first, while we still hold
//! CAP_SETPCAP; inheritable before permitted shrinks (raising inheritable
//! needs the cap in permitted); effective before permitted (effective must
//! stay a subset); ambient last (it needs permitted and inheritable).

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use caps::{CapSet, Capability, CapsHashSet};
use nix::errno::Errno;
use std::str::FromStr;

use crate::step::{Step, StepFailure};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("capabilities[{index}]: {name} is not a capability")]
    UnknownName { index: usize, name: String },
}

/// What to keep and what to drop, computed before clone so the child does
/// little work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPlan {
    pub keep: CapsHashSet,
    /// Every capability this kernel knows that is not kept.
    pub drop: Vec<Capability>,
}

impl CapPlan {
    pub fn new(names: &[String]) -> Result<CapPlan, CapsError> {
        let mut keep = CapsHashSet::new();
        for (index, name) in names.iter().enumerate() {
            let cap = Capability::from_str(name).map_err(|_| CapsError::UnknownName {
                index,
                name: name.clone(),
            })?;
            keep.insert(cap);
        }
        let mut drop: Vec<Capability> = caps::runtime::thread_all_supported()
            .into_iter()
            .filter(|c| !keep.contains(c))
            .collect();
        drop.sort_by_key(|c| c.index());
        Ok(CapPlan { keep, drop })
    }

    /// Applies the plan to the calling thread. Call in the child only.
    pub fn apply(&self) -> Result<(), StepFailure> {
        // caps wraps the OS error in a string; errno still holds it.
        let errno = |_: caps::errors::CapsError| Errno::last();
        for cap in &self.drop {
            caps::drop(None, CapSet::Bounding, *cap)
                .map_err(|e| StepFailure::new(Step::DropBoundingCaps, errno(e), cap_name(*cap)))?;
        }
        for set in [CapSet::Inheritable, CapSet::Effective, CapSet::Permitted] {
            caps::set(None, set, &self.keep)
                .map_err(|e| StepFailure::new(Step::SetCaps, errno(e), set_name(set)))?;
        }
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| StepFailure::new(Step::SetAmbientCaps, errno(e), b"ambient"))?;
        for cap in &self.keep {
            caps::raise(None, CapSet::Ambient, *cap)
                .map_err(|e| StepFailure::new(Step::SetAmbientCaps, errno(e), cap_name(*cap)))?;
        }
        self.verify()
    }

    /// Reads the sets back with capget/prctl (no allocation): effective,
    /// permitted, ambient and bounding must each hold exactly the kept caps.
    pub fn verify(&self) -> Result<(), StepFailure> {
        for cap in self.keep.iter().chain(self.drop.iter()) {
            let want = self.keep.contains(cap);
            for set in [
                CapSet::Effective,
                CapSet::Permitted,
                CapSet::Ambient,
                CapSet::Bounding,
            ] {
                let has = caps::has_cap(None, set, *cap).map_err(|_| {
                    StepFailure::new(Step::VerifyCaps, Errno::last(), set_name(set))
                })?;
                if has != want {
                    let mut buf = [0u8; 64];
                    let name = cap_name(*cap);
                    let set = set_name(set);
                    let n = name.len() + 1 + set.len();
                    buf[..name.len()].copy_from_slice(name);
                    buf[name.len()] = b' ';
                    buf[name.len() + 1..n].copy_from_slice(set);
                    return Err(StepFailure::new(
                        Step::VerifyCaps,
                        Errno::UnknownErrno,
                        &buf[..n],
                    ));
                }
            }
        }
        Ok(())
    }
}

fn set_name(set: CapSet) -> &'static [u8] {
    match set {
        CapSet::Ambient => b"ambient",
        CapSet::Bounding => b"bounding",
        CapSet::Effective => b"effective",
        CapSet::Inheritable => b"inheritable",
        CapSet::Permitted => b"permitted",
    }
}

fn cap_name(cap: Capability) -> &'static [u8] {
    // Capability's Display allocates; the index is enough to name it.
    const NAMES: [&str; 41] = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_DAC_READ_SEARCH",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETPCAP",
        "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_BROADCAST",
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_IPC_LOCK",
        "CAP_IPC_OWNER",
        "CAP_SYS_MODULE",
        "CAP_SYS_RAWIO",
        "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE",
        "CAP_SYS_PACCT",
        "CAP_SYS_ADMIN",
        "CAP_SYS_BOOT",
        "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE",
        "CAP_SYS_TIME",
        "CAP_SYS_TTY_CONFIG",
        "CAP_MKNOD",
        "CAP_LEASE",
        "CAP_AUDIT_WRITE",
        "CAP_AUDIT_CONTROL",
        "CAP_SETFCAP",
        "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN",
        "CAP_SYSLOG",
        "CAP_WAKE_ALARM",
        "CAP_BLOCK_SUSPEND",
        "CAP_AUDIT_READ",
        "CAP_PERFMON",
        "CAP_BPF",
        "CAP_CHECKPOINT_RESTORE",
    ];
    NAMES
        .get(cap.index() as usize)
        .map_or(&b"CAP_?"[..], |s| s.as_bytes())
}

/// Every capability the caller can pass on (its bounding set), as `CAP_*`
/// names: what a spec keeps when the capability drop is switched off. Not
/// every capability the kernel knows: a runtime without one (a VM that
/// withholds CAP_SYS_RESOURCE) cannot keep it.
pub fn all_names() -> Vec<String> {
    caps::read(None, caps::CapSet::Bounding)
        .map(|set| set.iter().map(|c| c.to_string()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_keeps_the_named_caps_and_drops_the_rest() {
        let plan =
            CapPlan::new(&["CAP_NET_BIND_SERVICE".into(), "CAP_CHOWN".into()]).expect("valid");
        assert_eq!(plan.keep.len(), 2);
        assert!(plan.keep.contains(&Capability::CAP_CHOWN));
        assert!(!plan.drop.contains(&Capability::CAP_CHOWN));
        assert!(plan.drop.contains(&Capability::CAP_SYS_ADMIN));
    }

    #[test]
    fn plan_refuses_unknown_names_with_index_and_name() {
        let err =
            CapPlan::new(&["CAP_CHOWN".into(), "CAP_FOO".into()]).expect_err("CAP_FOO is refused");
        assert_eq!(
            err.to_string(),
            "capabilities[1]: CAP_FOO is not a capability"
        );
    }

    #[test]
    fn names_match_the_caps_crate() {
        for cap in caps::all() {
            assert_eq!(cap_name(cap), cap.to_string().as_bytes());
        }
    }
}

//! Capabilities: keep exactly the spec's set in all five sets, then read
//! back. The parent prepares a [`CapPlan`]; the child applies it right
//! before execve.
//!
//! Order matters: the bounding set is dropped first, while we still hold
//! CAP_SETPCAP; then effective, permitted and inheritable in one capset;
//! ambient last (it needs permitted and inheritable).

// StepFailure is fixed-size on purpose (the child must not allocate), so
// boxing it, as this lint suggests, would defeat it.
#![allow(clippy::result_large_err)]

use caps::Capability;
use nix::errno::Errno;
use std::str::FromStr;

use crate::step::{Step, StepFailure};
use crate::sys::{CapSets, Syscalls};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapsError {
    #[error("capabilities[{index}]: {name} is not a capability")]
    UnknownName { index: usize, name: String },
}

/// What to keep and what to drop, computed before clone so the child only
/// makes syscalls (through the [`Syscalls`] seam: no allocation after fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapPlan {
    /// The kept capabilities, in index order.
    pub keep: Vec<Capability>,
    /// Every capability this kernel knows that is not kept.
    pub drop: Vec<Capability>,
    /// `keep` as a mask (bit N is capability N).
    keep_mask: u64,
}

/// The capabilities this kernel knows, probed once per process (one
/// PR_CAPBSET_READ each, 41 calls on every spawn otherwise): a property of
/// the kernel, not of the calling thread's sets.
fn supported() -> &'static [Capability] {
    static SUPPORTED: std::sync::OnceLock<Vec<Capability>> = std::sync::OnceLock::new();
    SUPPORTED.get_or_init(|| caps::runtime::thread_all_supported().into_iter().collect())
}

impl CapPlan {
    pub fn new(names: &[String]) -> Result<CapPlan, CapsError> {
        let mut keep = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let cap = Capability::from_str(name).map_err(|_| CapsError::UnknownName {
                index,
                name: name.clone(),
            })?;
            if !keep.contains(&cap) {
                keep.push(cap);
            }
        }
        keep.sort_by_key(|c| c.index());
        let mut drop: Vec<Capability> = supported()
            .iter()
            .filter(|c| !keep.contains(c))
            .copied()
            .collect();
        drop.sort_by_key(|c| c.index());
        let keep_mask = keep.iter().fold(0u64, |m, c| m | (1 << c.index()));
        Ok(CapPlan {
            keep,
            drop,
            keep_mask,
        })
    }

    /// Applies the plan to the calling thread. Call in the child only.
    pub fn apply<S: Syscalls>(&self, sys: &mut S) -> Result<(), StepFailure> {
        for cap in &self.drop {
            sys.cap_bound_drop(cap.index())
                .map_err(|e| StepFailure::new(Step::DropBoundingCaps, e, cap_name(*cap)))?;
        }
        // One capset moves the three sets at once: the kept caps are a
        // subset of what root holds, so the kernel's rules (inheritable and
        // permitted may only shrink, effective within permitted) hold.
        let sets = CapSets {
            effective: self.keep_mask,
            permitted: self.keep_mask,
            inheritable: self.keep_mask,
        };
        sys.capset(sets)
            .map_err(|e| StepFailure::new(Step::SetCaps, e, b"effective permitted inheritable"))?;
        sys.cap_ambient_clear()
            .map_err(|e| StepFailure::new(Step::SetAmbientCaps, e, b"ambient"))?;
        for cap in &self.keep {
            sys.cap_ambient_raise(cap.index())
                .map_err(|e| StepFailure::new(Step::SetAmbientCaps, e, cap_name(*cap)))?;
        }
        self.verify(sys)
    }

    /// Reads the sets back (capget, prctl): effective, permitted, ambient
    /// and bounding must each hold exactly the kept caps.
    pub fn verify<S: Syscalls>(&self, sys: &mut S) -> Result<(), StepFailure> {
        let now = sys
            .capget()
            .map_err(|e| StepFailure::new(Step::VerifyCaps, e, b"capget"))?;
        for cap in self.keep.iter().chain(self.drop.iter()) {
            let want = self.keep.contains(cap);
            let bit = 1u64 << cap.index();
            let read = |e| StepFailure::new(Step::VerifyCaps, e, cap_name(*cap));
            let held = [
                (b"effective".as_slice(), now.effective & bit != 0),
                (b"permitted".as_slice(), now.permitted & bit != 0),
                (
                    b"ambient".as_slice(),
                    sys.cap_ambient_has(cap.index()).map_err(read)?,
                ),
                (
                    b"bounding".as_slice(),
                    sys.cap_bound_has(cap.index()).map_err(read)?,
                ),
            ];
            if let Some((set, _)) = held.iter().find(|(_, has)| *has != want) {
                let mut buf = [0u8; 64];
                let name = cap_name(*cap);
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
        Ok(())
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
    fn apply_drops_bounding_sets_the_rest_once_and_verifies() {
        let plan = CapPlan::new(&["CAP_NET_BIND_SERVICE".into()]).expect("valid");
        let mut sys = crate::sys::RecordingSyscalls::default();
        plan.apply(&mut sys).expect("the double holds what was set");
        let calls = sys.process_calls();
        let dropped = calls
            .iter()
            .filter(|c| c.starts_with("capbset_drop"))
            .count();
        assert_eq!(dropped, plan.drop.len());
        let tail: Vec<&str> = calls[dropped..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["capset(0x400)", "ambient_clear()", "ambient_raise(10)"]
        );
    }

    #[test]
    fn verify_names_the_cap_and_set_that_differ() {
        let plan = CapPlan::new(&["CAP_CHOWN".into()]).expect("valid");
        // Nothing applied: root still holds CAP_SYS_ADMIN everywhere.
        let mut sys = crate::sys::RecordingSyscalls::default();
        let err = crate::step::ChildError::from(plan.verify(&mut sys).expect_err("differs"));
        assert_eq!(err.step, Step::VerifyCaps);
        assert_eq!(err.path, "CAP_CHOWN ambient");
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

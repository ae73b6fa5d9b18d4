//! Timestamps along one container's start and teardown, to find where the
//! time goes (the breakdown in benches/README.md comes from
//! `cargo run --release -p isocheck-benches --features timeline --example
//! start-timeline`). Without the `timeline` feature every mark is an empty
//! inline function.
//!
//! The child's marks (between clone and execve) land beside the parent's:
//! the record is one MAP_SHARED page made before the first clone, so the
//! forked child writes where the parent reads. A mark is a clock read and
//! two stores: nothing allocates, so it is safe in the child.

use crate::step::Step;

/// Points of the parent's side (the child's are its [`Step`]s, 1-99).
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::FromRepr, strum::IntoStaticStr)]
#[strum(serialize_all = "kebab-case")]
#[repr(u8)]
pub enum Point {
    SpawnStart = 100,
    ConfinementCompiled,
    RootfsPrepared,
    CgroupMade,
    ChildPlanBuilt,
    Cloned,
    CgroupCompleted,
    ChildReady,
    ParentSetupDone,
    Execed,
    DropStart,
    InitReaped,
    CgroupRemoved,
    // In the child, around its root and its confinement.
    RootStart = 200,
    HostRootSlave,
    ImageMounted,
    DevMounted,
    ProcMounted,
    SysMounted,
    KernelPathsReadonly,
    KernelPathsMasked,
    TmpMounted,
    BindsMounted,
    RootEntered,
    Confined,
}

/// The name of a recorded code: a [`Point`] or a child [`Step`].
pub fn name(code: u8) -> &'static str {
    match Point::from_repr(code) {
        Some(p) => p.into(),
        None => Step::from_repr(code).map_or("?", <&'static str>::from),
    }
}

/// Whether a recorded code is one of the parent's marks (the first run of
/// [`Point`]s; the child's are its [`Step`]s and the root's points).
pub fn is_parent(code: u8) -> bool {
    (Point::SpawnStart as u8..Point::RootStart as u8).contains(&code)
}

#[inline(always)]
pub(crate) fn point(p: Point) {
    imp::mark(p as u8);
}

#[inline(always)]
pub(crate) fn step(s: Step) {
    imp::mark(s as u8);
}

pub use imp::{enable, take};

#[cfg(feature = "timeline")]
mod imp {
    use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

    /// Entries in the record; marks past it are dropped.
    const SLOTS: usize = 4096;
    /// `[count, (code, nanoseconds) * SLOTS]` as u64s.
    const WORDS: usize = 1 + 2 * SLOTS;

    static RECORD: AtomicPtr<AtomicU64> = AtomicPtr::new(std::ptr::null_mut());

    /// Map the shared record (once); marks before this are not kept.
    pub fn enable() -> Result<(), nix::Error> {
        if !RECORD.load(Ordering::Acquire).is_null() {
            return Ok(());
        }
        let len = std::num::NonZeroUsize::new(WORDS * 8).ok_or(nix::Error::EINVAL)?;
        // Never unmapped (one per process); zero bytes are valid AtomicU64s.
        let page = crate::sys::map_anonymous(len, nix::sys::mman::MapFlags::MAP_SHARED)?;
        RECORD.store(page.as_ptr().cast(), Ordering::Release);
        Ok(())
    }

    fn word(i: usize) -> Option<&'static AtomicU64> {
        let base = RECORD.load(Ordering::Acquire);
        // SAFETY: `base` is the live mapping of WORDS words made in
        // `enable`, and i < WORDS is checked.
        (!base.is_null() && i < WORDS).then(|| unsafe { &*base.add(i) })
    }

    pub(super) fn mark(code: u8) {
        let Some(count) = word(0) else { return };
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
            t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
        });
        let i = count.fetch_add(1, Ordering::AcqRel) as usize;
        if let (Some(c), Some(t)) = (word(1 + 2 * i), word(2 + 2 * i)) {
            c.store(u64::from(code), Ordering::Relaxed);
            t.store(now, Ordering::Release);
        }
    }

    /// The marks so far (code, CLOCK_MONOTONIC ns), in order of taking,
    /// and a fresh record.
    pub fn take() -> Vec<(u8, u64)> {
        let Some(count) = word(0) else {
            return Vec::new();
        };
        let n = (count.swap(0, Ordering::AcqRel) as usize).min(SLOTS);
        (0..n)
            .filter_map(|i| {
                let code = word(1 + 2 * i)?.load(Ordering::Relaxed) as u8;
                Some((code, word(2 + 2 * i)?.load(Ordering::Acquire)))
            })
            .collect()
    }
}

#[cfg(not(feature = "timeline"))]
mod imp {
    /// Without the `timeline` feature there is nothing to record.
    pub fn enable() -> Result<(), nix::Error> {
        Err(nix::Error::ENOSYS)
    }

    #[inline(always)]
    pub(super) fn mark(_code: u8) {}

    pub fn take() -> Vec<(u8, u64)> {
        Vec::new()
    }
}

#[cfg(all(test, feature = "timeline"))]
mod tests {
    use super::*;

    #[test]
    fn marks_come_back_in_order_with_their_names_and_a_forked_childs_too() {
        enable().expect("map the record");
        take();
        point(Point::SpawnStart);
        // A forked child writes into the same shared page.
        // SAFETY: the child only marks and _exits (no allocation, no locks).
        match unsafe { libc::fork() } {
            0 => {
                step(Step::Chdir);
                // SAFETY: ends the forked child without running the
                // parent's atexit handlers or test harness.
                unsafe { libc::_exit(0) }
            }
            pid if pid > 0 => {
                let mut status = 0;
                // SAFETY: waits for our own child.
                assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            }
            _ => panic!("fork failed"),
        }
        point(Point::Execed);
        let marks = take();
        let names: Vec<&str> = marks.iter().map(|(c, _)| name(*c)).collect();
        assert_eq!(names, ["spawn-start", "chdir", "execed"]);
        assert!(marks.windows(2).all(|w| w[0].1 <= w[1].1), "{marks:?}");
        assert!(take().is_empty());
    }
}

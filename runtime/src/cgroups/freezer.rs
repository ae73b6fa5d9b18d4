//! The freezer: stop every task of a group at once and let it go again
//! (`Container::pause` / `resume`, and the kill fallback without
//! cgroup.kill).
//!
//! v1: freezer.state FROZEN / THAWED, read back until FROZEN (FREEZING
//! while tasks are being stopped). v2: cgroup.freeze 1 / 0, and
//! cgroup.events `frozen 1` once every task is stopped. A frozen task uses
//! no CPU: that, measured, is what proves it.

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::{fs, CgroupError, ControllerDir, Version};

const FREEZE_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(5);

pub(crate) fn freeze(dir: &ControllerDir) -> Result<(), CgroupError> {
    let start = Instant::now();
    match dir.version {
        Version::V1 => fs::write(&dir.path, "freezer.state", "FROZEN")?,
        Version::V2 => fs::write(&dir.path, "cgroup.freeze", "1")?,
    }
    loop {
        let state = match dir.version {
            Version::V1 => fs::read(&dir.path, "freezer.state")?.trim().to_string(),
            Version::V2 => match fs::read_keyed_u64(&dir.path, "cgroup.events", "frozen")? {
                Some(1) => "FROZEN".to_string(),
                _ => "FREEZING".to_string(),
            },
        };
        if state == "FROZEN" {
            return Ok(());
        }
        if start.elapsed() > FREEZE_WAIT {
            return Err(CgroupError::FreezeTimeout {
                path: dir.path.clone(),
                state,
                waited_ms: start.elapsed().as_millis(),
            });
        }
        sleep(POLL);
    }
}

pub(crate) fn thaw(dir: &ControllerDir) -> Result<(), CgroupError> {
    match dir.version {
        Version::V1 => fs::write(&dir.path, "freezer.state", "THAWED"),
        Version::V2 => fs::write(&dir.path, "cgroup.freeze", "0"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{dir_of, fake_dir};
    use super::*;
    use std::fs::read_to_string;

    #[test]
    fn cgroup_freezer_v1_writes_states() {
        // A fake file keeps what is written: FROZEN reads back at once.
        let tmp = fake_dir(&[("freezer.state", "THAWED\n")]);
        let dir = dir_of(&tmp, Version::V1);
        freeze(&dir).expect("freeze");
        assert_eq!(
            read_to_string(tmp.path().join("freezer.state")).expect("read"),
            "FROZEN"
        );
        thaw(&dir).expect("thaw");
        assert_eq!(
            read_to_string(tmp.path().join("freezer.state")).expect("read"),
            "THAWED"
        );
    }

    #[test]
    fn cgroup_freezer_v2_waits_for_frozen_event() {
        let tmp = fake_dir(&[
            ("cgroup.freeze", "0\n"),
            ("cgroup.events", "populated 1\nfrozen 1\n"),
        ]);
        let dir = dir_of(&tmp, Version::V2);
        freeze(&dir).expect("freeze");
        assert_eq!(
            read_to_string(tmp.path().join("cgroup.freeze")).expect("read"),
            "1"
        );
        thaw(&dir).expect("thaw");
        assert_eq!(
            read_to_string(tmp.path().join("cgroup.freeze")).expect("read"),
            "0"
        );
    }

    #[test]
    fn cgroup_freezer_v2_never_frozen_times_out_naming_the_path() {
        let tmp = fake_dir(&[
            ("cgroup.freeze", "0\n"),
            ("cgroup.events", "populated 1\nfrozen 0\n"),
        ]);
        let e = freeze(&dir_of(&tmp, Version::V2)).expect_err("never frozen");
        assert!(
            e.to_string().contains(&tmp.path().display().to_string()),
            "{e}"
        );
    }
}

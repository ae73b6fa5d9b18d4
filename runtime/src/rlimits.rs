//! Limits of the first process that are not cgroups: RLIMIT_NOFILE,
//! RLIMIT_NPROC and oom_score_adj. The parent sets them on the child's pid
//! during the handshake (prlimit(2) and /proc/PID/oom_score_adj), while the
//! child waits for `Go`, so the child's path stays allocation-free; each is
//! read back and a difference is an error. Children inherit all three.
//!
//! Without CAP_SYS_RESOURCE the parent can lower a hard limit but not raise
//! it above its own, nor set an oom_score_adj below its own minimum: such a
//! spec fails here with the value named, before the command runs.

use crate::error::Error;
use crate::spec::Limits;
use crate::sys::{self, Rlimit};

/// Applies the process limits of `limits` to `pid` and checks them.
pub(crate) fn apply(pid: i32, limits: &Limits) -> Result<(), Error> {
    for (field, resource, value) in [
        ("limits.nofile", Rlimit::Nofile, limits.nofile),
        ("limits.nproc", Rlimit::Nproc, limits.nproc),
    ] {
        let Some(value) = value else { continue };
        let held =
            sys::set_rlimit_of(pid, resource, value).map_err(|errno| Error::ProcessLimit {
                field,
                value: value.to_string(),
                pid,
                reason: format!("prlimit: {errno}"),
            })?;
        if held != (value, value) {
            return Err(Error::ProcessLimit {
                field,
                value: value.to_string(),
                pid,
                reason: format!("the kernel holds soft {} / hard {}", held.0, held.1),
            });
        }
    }
    if let Some(adj) = limits.oom_score_adj {
        set_oom_score_adj(pid, adj)?;
    }
    Ok(())
}

fn set_oom_score_adj(pid: i32, adj: i32) -> Result<(), Error> {
    let path = format!("/proc/{pid}/oom_score_adj");
    let refused = |reason: String| Error::ProcessLimit {
        field: "limits.oom_score_adj",
        value: adj.to_string(),
        pid,
        reason,
    };
    std::fs::write(&path, adj.to_string()).map_err(|e| refused(format!("write {path}: {e}")))?;
    let back = std::fs::read_to_string(&path).map_err(|e| refused(format!("read {path}: {e}")))?;
    if back.trim() != adj.to_string() {
        return Err(refused(format!("{path} reads back {:?}", back.trim())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On ourselves, with values we may set without privilege: the current
    /// limits and oom_score_adj (re-setting them changes nothing).
    #[test]
    fn applying_the_current_values_to_ourselves_reads_them_back() {
        let pid = std::process::id() as i32;
        let (_, nofile_hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
                .expect("getrlimit");
        let (soft, _) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .expect("getrlimit");
        if soft != nofile_hard {
            // Setting soft = hard would raise the soft limit of the test
            // process: harmless, but only check the read-back when equal.
            return;
        }
        let adj: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .expect("read")
            .trim()
            .parse()
            .expect("a number");
        let limits = Limits {
            nofile: Some(nofile_hard),
            oom_score_adj: Some(adj),
            ..Limits::default()
        };
        apply(pid, &limits).expect("apply");
    }

    #[test]
    fn a_refused_limit_names_field_value_and_pid() {
        // pid 0 is "ourselves" for prlimit; use a pid that cannot exist.
        let limits = Limits {
            nofile: Some(64),
            ..Limits::default()
        };
        let e = apply(i32::MAX, &limits).expect_err("no such process");
        let text = e.to_string();
        assert!(
            text.starts_with("limits.nofile 64 on pid 2147483647: prlimit: ESRCH"),
            "{text}"
        );
        let limits = Limits {
            oom_score_adj: Some(5),
            ..Limits::default()
        };
        let text = apply(i32::MAX, &limits)
            .expect_err("no such process")
            .to_string();
        assert!(
            text.starts_with(
                "limits.oom_score_adj 5 on pid 2147483647: write /proc/2147483647/oom_score_adj"
            ),
            "{text}"
        );
    }
}

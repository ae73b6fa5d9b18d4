//! Limits of the first process that are not cgroups. RLIMIT_NOFILE and
//! RLIMIT_NPROC are set by the child itself, after its root is built and
//! before its confinement (`process::child`, step `setrlimit`, read back);
//! oom_score_adj is set here by the parent during the handshake, through
//! /proc/PID/oom_score_adj while the child waits for `Go`, and read back.
//! Children inherit all three.
//!
//! Without CAP_SYS_RESOURCE a hard limit can be lowered but not raised
//! above the runtime's own, nor an oom_score_adj set below its own minimum:
//! such a spec fails with the value named, before the command runs.

use crate::error::Error;
use crate::spec::Limits;

/// Applies the parent's part of `limits` (oom_score_adj) to `pid` and
/// checks it.
pub(crate) fn apply(pid: i32, limits: &Limits) -> Result<(), Error> {
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

    /// On ourselves, with a value we may set without privilege: the
    /// current oom_score_adj (re-setting it changes nothing).
    #[test]
    fn applying_the_current_value_to_ourselves_reads_it_back() {
        let pid = std::process::id() as i32;
        let adj: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
            .expect("read")
            .trim()
            .parse()
            .expect("a number");
        let limits = Limits {
            oom_score_adj: Some(adj),
            ..Limits::default()
        };
        apply(pid, &limits).expect("apply");
    }

    #[test]
    fn a_refused_limit_names_field_value_and_pid() {
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

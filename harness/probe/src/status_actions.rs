//! What confines the probe itself, read from the kernel: the five capability
//! sets, no_new_privs and the seccomp mode (/proc/self/status), and its
//! cgroup paths as its cgroup namespace shows them (/proc/self/cgroup). A
//! file that cannot be read fails the action: a missing line must never
//! read as "confined".

use std::fs;

use crate::args::Args;
use crate::output::Observation;
use crate::ProbeError;

/// The status lines reported, by their name in /proc/self/status.
const STATUS_FIELDS: [(&str, &str); 7] = [
    ("CapInh", "cap_inh"),
    ("CapPrm", "cap_prm"),
    ("CapEff", "cap_eff"),
    ("CapBnd", "cap_bnd"),
    ("CapAmb", "cap_amb"),
    ("NoNewPrivs", "no_new_privs"),
    ("Seccomp", "seccomp"),
];

/// The value of `name:` in /proc/self/status text.
pub(crate) fn status_value<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.trim())
    })
}

/// The cgroup path of each line of /proc/self/cgroup (`id:controllers:path`).
fn cgroup_paths(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .map(str::to_owned)
        .collect()
}

pub fn status(args: Args) -> Result<Observation, ProbeError> {
    args.finish()?;
    let text = fs::read_to_string("/proc/self/status")
        .map_err(|e| ProbeError::internal("read /proc/self/status", e))?;
    let mut obs = Observation::new();
    for (line, field) in STATUS_FIELDS {
        let value = status_value(&text, line).ok_or_else(|| {
            ProbeError::internal("read /proc/self/status", format!("no {line} line"))
        })?;
        obs = match value.parse::<u64>() {
            // NoNewPrivs and Seccomp are numbers; the Cap* sets are hex masks.
            Ok(n) if !line.starts_with("Cap") => obs.with(field, n),
            _ => obs.with(field, value.to_owned()),
        };
    }
    let cgroup = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| ProbeError::internal("read /proc/self/cgroup", e))?;
    let paths = cgroup_paths(&cgroup);
    if paths.is_empty() {
        return Err(ProbeError::internal("read /proc/self/cgroup", "no lines"));
    }
    let all_root = paths.iter().all(|p| p == "/");
    Ok(obs
        .with("cgroups", paths)
        .with("cgroups_all_root", all_root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_found_by_exact_name() {
        let text = "Name:\tprobe\nCapEff:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\nSeccomp_filters:\t1\n";
        assert_eq!(status_value(text, "CapEff"), Some("0000000000000000"));
        assert_eq!(status_value(text, "Seccomp"), Some("2"));
        assert_eq!(status_value(text, "CapAmb"), None);
    }

    #[test]
    fn cgroup_paths_keep_colons_in_the_path() {
        let text = "12:pids:/\n0::/a:b\n";
        assert_eq!(cgroup_paths(text), ["/", "/a:b"]);
    }
}

//! seccomp: the default filter every container gets, in the spirit of the
//! profiles container engines ship (Docker's, Podman's): a deny list on top
//! of "allow", not an allow list, so ordinary programs never notice it.
//!
//! - Each denied syscall fails with [`DENY_ERRNO`] (EPERM), as Docker's
//!   profile answers: a program sees "not permitted", the same errno a
//!   missing capability gives, and carries on.
//! - Where the spec has no user namespace, clone(2) and unshare(2) with
//!   CLONE_NEWUSER are refused too (EPERM): a nested user namespace gives
//!   back every capability inside it and with them kernel code paths that
//!   are otherwise out of reach. clone3(2) passes its flags in a struct that
//!   seccomp cannot read, so clone3 is refused as a whole with ENOSYS, which
//!   makes libc fall back to clone(2), where the flags are filtered (runc
//!   and Docker do the same).
//! - Syscall numbers with the x32 bit (0x40000000) are refused with ENOSYS:
//!   they share the x86_64 audit arch, so a deny list keyed by x86_64
//!   numbers would not see them. Any other arch (i386 through int 0x80)
//!   kills the process (seccompiler's arch check).
//!
//! The program is compiled (with seccompiler: pure Rust, no libseccomp,
//! fits the static binary) by the parent before clone; the child only
//! passes a pointer to the kernel (`sys::seccomp_set_filter`), right before
//! execve. The kernel needs no_new_privs or CAP_SYS_ADMIN for that, so the
//! child installs it after no_new_privs, or, with no_new_privs switched
//! off, before it drops its capabilities.

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The errno a denied syscall fails with.
pub const DENY_ERRNO: i32 = libc::EPERM;

/// What the spec's filter refuses. The default is [`DEFAULT_DENY`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeccompPolicy {
    /// Syscall names refused with EPERM (see [`known_syscalls`]).
    pub deny: Vec<String>,
}

impl Default for SeccompPolicy {
    fn default() -> Self {
        SeccompPolicy {
            deny: DEFAULT_DENY.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// The default deny list: keyrings (not namespaced), eBPF and perf (kernel
/// attack surface, host-wide tracing), userfaultfd (a classic exploit
/// helper), kexec and modules (replace or extend the host's kernel),
/// open_by_handle_at (the "Shocker" escape: opens any inode of a host
/// filesystem by handle, past the container's root), swap and reboot.
pub const DEFAULT_DENY: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "open_by_handle_at",
    "init_module",
    "finit_module",
    "delete_module",
    "swapon",
    "swapoff",
    "reboot",
];

/// The syscalls a spec may name, with their numbers on this architecture.
pub fn known_syscalls() -> &'static [(&'static str, i64)] {
    KNOWN
}

const KNOWN: &[(&str, i64)] = &[
    ("keyctl", libc::SYS_keyctl),
    ("add_key", libc::SYS_add_key),
    ("request_key", libc::SYS_request_key),
    ("bpf", libc::SYS_bpf),
    ("perf_event_open", libc::SYS_perf_event_open),
    ("userfaultfd", libc::SYS_userfaultfd),
    ("kexec_load", libc::SYS_kexec_load),
    ("kexec_file_load", libc::SYS_kexec_file_load),
    ("open_by_handle_at", libc::SYS_open_by_handle_at),
    ("name_to_handle_at", libc::SYS_name_to_handle_at),
    ("init_module", libc::SYS_init_module),
    ("finit_module", libc::SYS_finit_module),
    ("delete_module", libc::SYS_delete_module),
    ("swapon", libc::SYS_swapon),
    ("swapoff", libc::SYS_swapoff),
    ("reboot", libc::SYS_reboot),
    ("acct", libc::SYS_acct),
    ("syslog", libc::SYS_syslog),
    ("ptrace", libc::SYS_ptrace),
    ("process_vm_readv", libc::SYS_process_vm_readv),
    ("process_vm_writev", libc::SYS_process_vm_writev),
    ("kcmp", libc::SYS_kcmp),
    ("personality", libc::SYS_personality),
    ("mount", libc::SYS_mount),
    ("umount2", libc::SYS_umount2),
    ("pivot_root", libc::SYS_pivot_root),
    ("move_mount", libc::SYS_move_mount),
    ("open_tree", libc::SYS_open_tree),
    ("fsopen", libc::SYS_fsopen),
    ("fsmount", libc::SYS_fsmount),
    ("fspick", libc::SYS_fspick),
    ("mount_setattr", libc::SYS_mount_setattr),
    ("setns", libc::SYS_setns),
    ("unshare", libc::SYS_unshare),
    ("settimeofday", libc::SYS_settimeofday),
    ("clock_settime", libc::SYS_clock_settime),
    ("clock_adjtime", libc::SYS_clock_adjtime),
    ("adjtimex", libc::SYS_adjtimex),
    ("quotactl", libc::SYS_quotactl),
    ("fanotify_init", libc::SYS_fanotify_init),
    ("io_uring_setup", libc::SYS_io_uring_setup),
    ("io_uring_enter", libc::SYS_io_uring_enter),
    ("io_uring_register", libc::SYS_io_uring_register),
    ("iopl", libc::SYS_iopl),
    ("ioperm", libc::SYS_ioperm),
    ("vhangup", libc::SYS_vhangup),
    ("lookup_dcookie", libc::SYS_lookup_dcookie),
    ("chroot", libc::SYS_chroot),
    ("sethostname", libc::SYS_sethostname),
    ("setdomainname", libc::SYS_setdomainname),
];

/// The number of a known syscall name.
pub fn syscall_number(name: &str) -> Option<i64> {
    KNOWN.iter().find(|(n, _)| *n == name).map(|(_, nr)| *nr)
}

/// A policy that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp.deny[{index}]: {name:?} is not a syscall this runtime can filter")]
    UnknownSyscall { index: usize, name: String },
    #[error("seccomp: compiling the filter: {0}")]
    Compile(String),
}

/// A compiled filter, ready for `sys::seccomp_set_filter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeccompProgram {
    pub instructions: Vec<sock_filter>,
}

/// The x32 ABI's bit in a syscall number.
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// Offset of `nr` in `struct seccomp_data`.
const SECCOMP_DATA_NR: u32 = 0;
/// Instructions of seccompiler's arch check, which our prefix follows.
const ARCH_CHECK_LEN: usize = 3;

/// BPF_LD | BPF_W | BPF_ABS (the first two are 0).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// Compiles `policy` for this architecture; `user_namespace` says whether
/// the spec gives the container a user namespace (then nested ones are not
/// refused).
pub fn compile(
    policy: &SeccompPolicy,
    user_namespace: bool,
) -> Result<SeccompProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (index, name) in policy.deny.iter().enumerate() {
        let nr = syscall_number(name).ok_or_else(|| SeccompError::UnknownSyscall {
            index,
            name: name.clone(),
        })?;
        // An empty rule list matches the syscall whatever its arguments.
        rules.insert(nr, Vec::new());
    }
    if !user_namespace {
        let newuser = libc::CLONE_NEWUSER as u64;
        let flag_rule = |len| {
            SeccompCondition::new(0, len, SeccompCmpOp::MaskedEq(newuser), newuser)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(|e| SeccompError::Compile(e.to_string()))
        };
        // clone(flags, ...) on x86_64 and aarch64 alike: flags is arg 0.
        for (nr, len) in [
            (libc::SYS_clone, SeccompCmpArgLen::Qword),
            (libc::SYS_unshare, SeccompCmpArgLen::Dword),
        ] {
            // Denied by name already: the unconditional rule stays.
            if rules.get(&nr).is_some_and(Vec::is_empty) {
                continue;
            }
            rules.entry(nr).or_default().push(flag_rule(len)?);
        }
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(DENY_ERRNO as u32),
        arch,
    )
    .map_err(|e| SeccompError::Compile(e.to_string()))?;
    let mut program: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Compile(e.to_string()))?;
    // Our own prefix right after the arch check (jumps in BPF are relative
    // and forward, so inserting before seccompiler's code moves none of its
    // targets): x32 numbers and clone3 get ENOSYS.
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut prefix = vec![insn(BPF_LD_W_ABS, 0, 0, SECCOMP_DATA_NR)];
    if arch == TargetArch::x86_64 {
        prefix.push(insn(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT));
        prefix.push(insn(BPF_RET_K, 0, 0, enosys));
    }
    prefix.push(insn(BPF_JMP_JEQ_K, 0, 1, libc::SYS_clone3 as u32));
    prefix.push(insn(BPF_RET_K, 0, 0, enosys));
    if program.len() < ARCH_CHECK_LEN {
        return Err(SeccompError::Compile(
            "seccompiler gave no arch check".into(),
        ));
    }
    program.splice(ARCH_CHECK_LEN..ARCH_CHECK_LEN, prefix);
    Ok(SeccompProgram {
        instructions: program,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter for the instructions seccompiler and
    /// our prefix use, run over a `seccomp_data`, so the filter's decisions
    /// are tested without installing it.
    fn run(prog: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&nr.to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for a in args {
            data.extend_from_slice(&a.to_ne_bytes());
        }
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &prog[pc];
            pc += 1;
            match i.code {
                0x20 => {
                    let o = i.k as usize;
                    a = u32::from_ne_bytes(data[o..o + 4].try_into().expect("4 bytes"));
                }
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 | 0x25 | 0x35 => {
                    let hit = match i.code {
                        0x15 => a == i.k,
                        0x25 => a > i.k,
                        _ => a >= i.k,
                    };
                    pc += if hit { i.jt } else { i.jf } as usize;
                }
                0x06 => return i.k,
                c => panic!("instruction {c:#x} not modelled"),
            }
        }
    }

    const ARCH: u32 = 62 | 0x8000_0000 | 0x4000_0000;
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_default_filter_denies_its_list_and_allows_the_rest() {
        let p = compile(&SeccompPolicy::default(), false).expect("compiles");
        let p = &p.instructions;
        for name in DEFAULT_DENY {
            let nr = syscall_number(name).expect("known") as u32;
            assert_eq!(run(p, ARCH, nr, [0; 6]), EPERM, "{name}");
        }
        for nr in [
            libc::SYS_read,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_mount,
        ] {
            assert_eq!(run(p, ARCH, nr as u32, [0; 6]), ALLOW, "{nr}");
        }
        assert_eq!(run(p, ARCH, libc::SYS_clone3 as u32, [0; 6]), ENOSYS);
        assert_eq!(
            run(p, ARCH, X32_SYSCALL_BIT | libc::SYS_keyctl as u32, [0; 6]),
            ENOSYS
        );
        assert_eq!(
            run(p, 3 | 0x4000_0000, libc::SYS_read as u32, [0; 6]),
            libc::SECCOMP_RET_KILL_PROCESS,
            "another arch is killed"
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn new_user_namespaces_are_refused_unless_the_spec_has_one() {
        let newuser = libc::CLONE_NEWUSER as u64;
        let fork = libc::SIGCHLD as u64;
        let p = compile(&SeccompPolicy::default(), false).expect("compiles");
        let p = &p.instructions;
        let clone = libc::SYS_clone as u32;
        let unshare = libc::SYS_unshare as u32;
        assert_eq!(run(p, ARCH, clone, [fork, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(run(p, ARCH, clone, [fork | newuser, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(run(p, ARCH, unshare, [newuser, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(
            run(p, ARCH, unshare, [libc::CLONE_NEWNS as u64, 0, 0, 0, 0, 0]),
            ALLOW
        );
        let with_userns = compile(&SeccompPolicy::default(), true).expect("compiles");
        assert_eq!(
            run(
                &with_userns.instructions,
                ARCH,
                clone,
                [fork | newuser, 0, 0, 0, 0, 0]
            ),
            ALLOW
        );
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn a_spec_names_its_own_list() {
        let policy = SeccompPolicy {
            deny: vec!["mount".into(), "unshare".into()],
        };
        let p = compile(&policy, false).expect("compiles");
        let p = &p.instructions;
        assert_eq!(run(p, ARCH, libc::SYS_mount as u32, [0; 6]), EPERM);
        assert_eq!(run(p, ARCH, libc::SYS_keyctl as u32, [0; 6]), ALLOW);
        // Denied by name: every unshare, not only CLONE_NEWUSER.
        assert_eq!(run(p, ARCH, libc::SYS_unshare as u32, [0; 6]), EPERM);
    }

    #[test]
    fn an_unknown_name_is_refused_with_its_index() {
        let policy = SeccompPolicy {
            deny: vec!["bpf".into(), "teleport".into()],
        };
        assert_eq!(
            compile(&policy, false).expect_err("refused").to_string(),
            "seccomp.deny[1]: \"teleport\" is not a syscall this runtime can filter"
        );
    }
}

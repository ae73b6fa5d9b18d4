//! The device allowlist: a container may open only the devices a program
//! expects to find (null, zero, full, random, urandom, tty, ptmx and its
//! pts), however it got hold of a node (mknod with CAP_MKNOD, a bind). mknod
//! itself stays allowed for every device, as in Docker's default: the node
//! is harmless until it is opened, and images ship device nodes.
//!
//! - v1: the devices controller, `devices.deny a` then one `devices.allow`
//!   line per rule, read back from `devices.list`.
//! - v2 has no devices controller: a BPF_PROG_TYPE_CGROUP_DEVICE program,
//!   attached to the container's cgroup, answers each access. The program
//!   is a handful of instructions assembled here (no crate: aya and
//!   libbpf-rs bring an ELF loader or a C library for what is a dozen
//!   compares), loaded and attached by `sys::bpf_*`.

use std::path::Path;

use super::{fs, CgroupError};
pub use crate::sys::BpfInsn;

/// One allowed device: a char device `major:minor` (`None` minor: every
/// minor of that major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CharDevice {
    pub major: u32,
    pub minor: Option<u32>,
    pub name: &'static str,
}

/// The devices a container may open (read, write).
pub const ALLOWED: &[CharDevice] = &[
    CharDevice {
        major: 1,
        minor: Some(3),
        name: "null",
    },
    CharDevice {
        major: 1,
        minor: Some(5),
        name: "zero",
    },
    CharDevice {
        major: 1,
        minor: Some(7),
        name: "full",
    },
    CharDevice {
        major: 1,
        minor: Some(8),
        name: "random",
    },
    CharDevice {
        major: 1,
        minor: Some(9),
        name: "urandom",
    },
    CharDevice {
        major: 5,
        minor: Some(0),
        name: "tty",
    },
    CharDevice {
        major: 5,
        minor: Some(2),
        name: "ptmx",
    },
    CharDevice {
        major: 136,
        minor: None,
        name: "pts/*",
    },
];

/// The v1 rules, in the order they are written to `devices.allow`.
pub(crate) fn v1_rules() -> Vec<String> {
    let mut rules: Vec<String> = vec!["c *:* m".into(), "b *:* m".into()];
    for d in ALLOWED {
        let minor = d.minor.map_or("*".to_string(), |m| m.to_string());
        rules.push(format!("c {}:{minor} rwm", d.major));
    }
    rules
}

/// v1: deny everything, allow the list, read `devices.list` back.
pub(crate) fn apply_v1(dir: &Path) -> Result<(), CgroupError> {
    fs::write(dir, "devices.deny", "a")?;
    let rules = v1_rules();
    for rule in &rules {
        fs::write(dir, "devices.allow", rule)?;
    }
    let list =
        std::fs::read_to_string(dir.join("devices.list")).map_err(|source| CgroupError::Read {
            path: dir.join("devices.list"),
            source,
        })?;
    let seen: Vec<&str> = list.lines().map(str::trim).collect();
    if seen != rules.iter().map(String::as_str).collect::<Vec<_>>() {
        return Err(CgroupError::Verify {
            path: dir.join("devices.list"),
            expected: rules.join(", "),
            found: seen.join(", "),
        });
    }
    Ok(())
}

const LDX_MEM_W: u8 = 0x61;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const JMP_JEQ_K: u8 = 0x15;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

/// `bpf_cgroup_dev_ctx.access_type`: type in the low 16 bits, access above.
pub const DEVCG_DEV_CHAR: i32 = 2;
pub const DEVCG_ACC_MKNOD: i32 = 1;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> BpfInsn {
    BpfInsn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The program: allow a bare mknod (of anything), allow the listed char
/// devices for any access, deny the rest (return 0: the kernel answers
/// EPERM).
///
/// r1 = ctx; r2 = type, r3 = access, r4 = major, r5 = minor.
pub fn v2_program() -> Vec<BpfInsn> {
    let mut p = vec![
        insn(LDX_MEM_W, 2, 1, 0, 0),
        insn(ALU64_MOV_X, 3, 2, 0, 0),
        insn(ALU64_AND_K, 2, 0, 0, 0xffff),
        insn(ALU64_RSH_K, 3, 0, 0, 16),
        insn(LDX_MEM_W, 4, 1, 4, 0),
        insn(LDX_MEM_W, 5, 1, 8, 0),
    ];
    // Jumps to "allow" are patched once its position is known.
    let mut to_allow = vec![p.len()];
    p.push(insn(JMP_JEQ_K, 3, 0, 0, DEVCG_ACC_MKNOD));
    let to_deny = vec![p.len()];
    p.push(insn(JMP_JNE_K, 2, 0, 0, DEVCG_DEV_CHAR));
    for d in ALLOWED {
        match d.minor {
            Some(minor) => {
                // if major != M skip the minor test; if minor == m allow.
                p.push(insn(JMP_JNE_K, 4, 0, 1, d.major as i32));
                to_allow.push(p.len());
                p.push(insn(JMP_JEQ_K, 5, 0, 0, minor as i32));
            }
            None => {
                to_allow.push(p.len());
                p.push(insn(JMP_JEQ_K, 4, 0, 0, d.major as i32));
            }
        }
    }
    let deny = p.len();
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 0));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    let allow = p.len();
    p.push(insn(ALU64_MOV_K, 0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    for (list, target) in [(to_allow, allow), (to_deny, deny)] {
        for at in list {
            p[at].off = (target - at - 1) as i16;
        }
    }
    p
}

/// v2: load the program and attach it to the cgroup directory.
pub(crate) fn attach_v2(dir: &Path) -> Result<(), CgroupError> {
    let program = v2_program();
    let err = |step: &'static str, e: nix::errno::Errno| CgroupError::Bpf {
        step,
        path: dir.to_path_buf(),
        source: std::io::Error::from(e),
    };
    let prog = crate::sys::bpf_load_cgroup_device(&program).map_err(|e| err("load", e))?;
    let cgroup = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| err("open the cgroup", e))?;
    crate::sys::bpf_attach_cgroup_device(&prog, &cgroup).map_err(|e| err("attach", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program over one access, as the kernel would.
    fn decide(p: &[BpfInsn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [(access << 16 | kind) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = p[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(src, 1, "loads from the context only");
                    r[dst] = u64::from(ctx[(i.off / 4) as usize]);
                }
                ALU64_MOV_K => r[dst] = i.imm as u64,
                ALU64_MOV_X => r[dst] = r[src],
                ALU64_AND_K => r[dst] &= i.imm as u64,
                ALU64_RSH_K => r[dst] >>= i.imm,
                JMP_JEQ_K | JMP_JNE_K => {
                    let eq = r[dst] == i.imm as u64;
                    if eq == (i.code == JMP_JEQ_K) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                JMP_EXIT => return r[0],
                c => panic!("instruction {c:#x} not modelled"),
            }
        }
    }

    const BLOCK: i32 = 1;
    const READ: i32 = 2;
    const WRITE: i32 = 4;

    #[test]
    fn the_program_allows_the_list_and_mknod_only() {
        let p = v2_program();
        for d in ALLOWED {
            let minor = d.minor.unwrap_or(7);
            assert_eq!(
                decide(&p, DEVCG_DEV_CHAR, READ | WRITE, d.major, minor),
                1,
                "{}",
                d.name
            );
        }
        assert_eq!(decide(&p, BLOCK, READ, 7, 0), 0, "loop");
        assert_eq!(decide(&p, DEVCG_DEV_CHAR, READ, 1, 1), 0, "mem");
        assert_eq!(decide(&p, DEVCG_DEV_CHAR, READ, 1, 2), 0, "kmem-like minor");
        assert_eq!(
            decide(&p, DEVCG_DEV_CHAR, WRITE, 10, 237),
            0,
            "loop-control"
        );
        assert_eq!(decide(&p, DEVCG_DEV_CHAR, READ, 5, 1), 0, "console");
        assert_eq!(decide(&p, BLOCK, DEVCG_ACC_MKNOD, 7, 0), 1, "mknod alone");
        assert_eq!(decide(&p, BLOCK, DEVCG_ACC_MKNOD | READ, 7, 0), 0);
    }

    #[test]
    fn v1_rules_deny_by_default_and_allow_mknod() {
        let rules = v1_rules();
        assert_eq!(&rules[..3], ["c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert_eq!(rules.last().map(String::as_str), Some("c 136:* rwm"));
    }

    #[test]
    fn v1_apply_writes_deny_then_allows_and_reads_back() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let rules = v1_rules();
        for f in ["devices.deny", "devices.allow"] {
            std::fs::write(tmp.path().join(f), "").expect("seed");
        }
        std::fs::write(tmp.path().join("devices.list"), rules.join("\n") + "\n").expect("seed");
        apply_v1(tmp.path()).expect("applies");
        // The fake file keeps the last write, as a plain file does.
        let allow = std::fs::read_to_string(tmp.path().join("devices.allow")).expect("allow");
        assert_eq!(allow, "c 136:* rwm");
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("devices.deny")).expect("deny"),
            "a"
        );
        std::fs::write(tmp.path().join("devices.list"), "a *:* rwm\n").expect("seed");
        let e = apply_v1(tmp.path()).expect_err("a list that did not change is refused");
        assert!(e.to_string().contains("devices.list"), "{e}");
    }
}

/// Loads and attaches the v2 program for real on this host's cgroup2 mount
/// (hybrid hosts have one too), whatever the host's devices controller:
/// a shell moved into the node can open /dev/null but not /dev/loop0.
#[cfg(all(test, feature = "privileged"))]
mod privileged_tests {
    use super::*;

    #[test]
    fn the_v2_program_refuses_an_unlisted_device() {
        let Some(root) = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .iter()
            .map(Path::new)
            .find(|p| p.join("cgroup.procs").exists() && !p.join("tasks").exists())
        else {
            eprintln!("no cgroup2 mount: skipped");
            return;
        };
        if !Path::new("/dev/loop0").exists() {
            eprintln!("no /dev/loop0: skipped");
            return;
        }
        let dir = root
            .join(super::super::PARENT)
            .join(format!("devices-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("make the node");
        attach_v2(&dir).expect("load and attach");
        let script = format!(
            "echo 0 > {}/cgroup.procs && head -c0 /dev/null && echo null-ok; head -c0 /dev/loop0 2>&1",
            dir.display()
        );
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .output()
            .expect("sh runs");
        let _ = std::fs::remove_dir(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("null-ok"), "{text}");
        assert!(text.contains("Operation not permitted"), "{text}");
    }
}

//! bpf(2): loading and attaching the cgroup v2 device program.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The bpf(2) attr union, as wide as any command we use needs.
#[repr(C, align(8))]
struct BpfAttr([u8; 128]);

impl BpfAttr {
    fn put_u32(&mut self, at: usize, v: u32) {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, at: usize, v: u64) {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
    }
}

fn bpf(cmd: libc::c_int, attr: &BpfAttr) -> Result<libc::c_long, Errno> {
    // SAFETY: `attr` is a zero-filled bpf_attr of the size we pass, with
    // the fields of `cmd` set; the pointers in it outlive the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::addr_of!(attr.0),
            std::mem::size_of::<BpfAttr>(),
        )
    };
    Errno::result(r)
}

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// One eBPF instruction (`struct bpf_insn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BpfInsn {
    pub code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    pub regs: u8,
    pub off: i16,
    pub imm: i32,
}

/// BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program.
pub fn bpf_load_cgroup_device(program: &[BpfInsn]) -> Result<OwnedFd, Errno> {
    let license = c"Apache-2.0";
    let mut attr = BpfAttr([0; 128]);
    attr.put_u32(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.put_u32(4, u32::try_from(program.len()).map_err(|_| Errno::E2BIG)?);
    attr.put_u64(8, program.as_ptr() as u64);
    attr.put_u64(16, license.as_ptr() as u64);
    let fd = bpf(BPF_PROG_LOAD, &attr)?;
    // SAFETY: the kernel returned a new program fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// BPF_PROG_ATTACH of a device program to a cgroup2 directory (ALLOW_MULTI,
/// so programs of the parents keep running too). The attachment lives as
/// long as the cgroup, not the fds.
pub fn bpf_attach_cgroup_device(
    program: &impl std::os::fd::AsFd,
    cgroup: &impl std::os::fd::AsFd,
) -> Result<(), Errno> {
    let mut attr = BpfAttr([0; 128]);
    attr.put_u32(0, cgroup.as_fd().as_raw_fd() as u32);
    attr.put_u32(4, program.as_fd().as_raw_fd() as u32);
    attr.put_u32(8, BPF_CGROUP_DEVICE);
    attr.put_u32(12, BPF_F_ALLOW_MULTI);
    bpf(BPF_PROG_ATTACH, &attr).map(drop)
}

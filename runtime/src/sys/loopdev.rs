//! Loop devices (linux/loop.h): a block device backed by a file.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd};

// Loop devices (linux/loop.h): a block device backed by a file, for tests
// that need a block device of their own and never a disk of the host.
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
/// Detach by itself when the last opener closes it (a crashed run leaks
/// nothing once its fds are gone).
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// A free loop device's number (LOOP_CTL_GET_FREE on /dev/loop-control).
pub fn loop_get_free(control: BorrowedFd<'_>) -> Result<u32, Errno> {
    // SAFETY: this ioctl takes no argument and returns a number.
    let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
    Errno::result(n).map(|n| n as u32)
}

/// Backs the loop device open as `device` with the file open as `backing`
/// (LOOP_SET_FD), then marks it autoclear and names it `name` (at most 63
/// bytes are kept) with LOOP_SET_STATUS64. EBUSY: someone else took it.
pub fn loop_attach(
    device: BorrowedFd<'_>,
    backing: BorrowedFd<'_>,
    name: &[u8],
) -> Result<(), Errno> {
    // SAFETY: LOOP_SET_FD takes the backing fd as its integer argument.
    Errno::result(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_FD,
            backing.as_raw_fd() as libc::c_ulong,
        )
    })?;
    let mut info = LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: LO_FLAGS_AUTOCLEAR,
        lo_file_name: [0; 64],
        lo_crypt_name: [0; 64],
        lo_encrypt_key: [0; 32],
        lo_init: [0; 2],
    };
    let len = name.len().min(63);
    info.lo_file_name[..len].copy_from_slice(&name[..len]);
    // SAFETY: `info` is a valid, initialised loop_info64 that outlives the
    // call; the kernel only reads it.
    let set = Errno::result(unsafe {
        libc::ioctl(
            device.as_raw_fd(),
            LOOP_SET_STATUS64,
            &info as *const LoopInfo64,
        )
    });
    if let Err(e) = set {
        let _ = loop_detach(device);
        return Err(e);
    }
    Ok(())
}

/// LOOP_CLR_FD: detach the backing file (done at last close if busy).
pub fn loop_detach(device: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: this ioctl takes no argument.
    Errno::result(unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD) }).map(drop)
}

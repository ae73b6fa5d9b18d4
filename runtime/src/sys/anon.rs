//! Anonymous memory for the child: a scratch buffer mapped before clone.

use nix::errno::Errno;

/// A zero-filled buffer of private anonymous pages, for the child's
/// scratch space. The kernel maps the shared zero page until a page is
/// written, so a megabyte the child rarely fills costs two syscalls; a
/// `Vec` of that size came from the allocator's heap, was memset page by
/// page in the parent, and every page was then copied on write in the
/// child.
pub struct AnonBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

impl std::fmt::Debug for AnonBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnonBuf").field("len", &self.len).finish()
    }
}

impl AnonBuf {
    /// `len` bytes (0 gives an empty buffer and no mapping).
    pub fn new(len: usize) -> Result<AnonBuf, Errno> {
        let Some(size) = std::num::NonZeroUsize::new(len) else {
            return Ok(AnonBuf {
                ptr: std::ptr::NonNull::dangling(),
                len: 0,
            });
        };
        let ptr = map_anonymous(size, nix::sys::mman::MapFlags::MAP_PRIVATE)?;
        Ok(AnonBuf {
            ptr: ptr.cast(),
            len,
        })
    }
}

/// A fresh readable and writable anonymous mapping of `len` zero bytes,
/// private or shared (`flags`); the caller owns it (munmap or keep).
pub fn map_anonymous(
    len: std::num::NonZeroUsize,
    flags: nix::sys::mman::MapFlags,
) -> Result<std::ptr::NonNull<std::ffi::c_void>, Errno> {
    use nix::sys::mman::{mmap_anonymous, ProtFlags};
    // SAFETY: a fresh anonymous mapping at an address the kernel picks
    // aliases nothing that exists.
    unsafe {
        mmap_anonymous(
            None,
            len,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            flags,
        )
    }
}

impl std::ops::Deref for AnonBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes (or
        // dangling with len 0), owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AnonBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref; &mut self makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AnonBuf {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `new`, not used after this.
            let _ = unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) };
        }
    }
}

// SAFETY: AnonBuf owns its mapping exclusively, like a Box<[u8]>.
unsafe impl Send for AnonBuf {}

#[cfg(test)]
mod tests {
    use super::AnonBuf;

    #[test]
    fn an_anon_buf_is_zeroed_writable_and_may_be_empty() {
        let mut buf = AnonBuf::new(3 * 4096 + 5).expect("mmap");
        assert_eq!(buf.len(), 3 * 4096 + 5);
        assert!(buf.iter().all(|&b| b == 0));
        buf[4096 * 3 + 4] = 7;
        assert_eq!(buf[4096 * 3 + 4], 7);
        let empty = AnonBuf::new(0).expect("no mapping");
        assert!(empty.is_empty());
    }
}

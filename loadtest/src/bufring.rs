//! A provided-buffer ring (io_uring `IORING_REGISTER_PBUF_RING`) for multishot receives: the kernel picks a buffer
//! per completion, so idle connections hold no receive buffer.

use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// For entry 0 this is the ring's tail.
    resv: u16,
}

pub struct BufRing {
    ring: *mut BufEntry,
    ring_bytes: usize,
    entries: u16,
    tail: u16,
    bufs: Box<[u8]>,
    size: usize,
    pub bgid: u16,
}

impl BufRing {
    /// `entries` must be a power of two (<= 32768).
    pub fn new(uring: &IoUring, entries: u16, size: usize, bgid: u16) -> std::io::Result<BufRing> {
        assert!(entries.is_power_of_two());
        let ring_bytes =
            (entries as usize * std::mem::size_of::<BufEntry>()).next_multiple_of(4096);
        // SAFETY: anonymous private mapping, checked for failure; page-aligned as the kernel requires.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mut br = BufRing {
            ring: p as *mut BufEntry,
            ring_bytes,
            entries,
            tail: 0,
            bufs: vec![0u8; entries as usize * size].into_boxed_slice(),
            size,
            bgid,
        };
        // SAFETY: the ring memory stays mapped until `Drop`, which runs after the io_uring that uses it is gone
        // (the owner drops the IoUring first).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(p as u64, entries, bgid, 0)?;
        }
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        Ok(br)
    }

    /// Give buffer `bid` back to the kernel (visible after `publish`).
    #[inline]
    pub fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries; the entry is ours until the tail is published. The tail field of entry 0 (`resv`)
        // is not written here.
        unsafe {
            let e = self.ring.add(idx);
            (*e).addr = self.bufs.as_ptr().add(bid as usize * self.size) as u64;
            (*e).len = self.size as u32;
            (*e).bid = bid;
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Publish pushed buffers to the kernel.
    #[inline]
    pub fn publish(&self) {
        // SAFETY: the tail is the u16 at byte offset 14 of the ring (entry 0's `resv`); the kernel reads it.
        let tail = unsafe { &*((self.ring as *mut u8).add(14) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid` (which the kernel handed us in a completion).
    ///
    /// # Safety
    /// `bid` must have come from a completion and not been pushed back yet.
    #[inline]
    pub unsafe fn buf(&mut self, bid: u16, len: usize) -> *mut [u8] {
        let start = bid as usize * self.size;
        &mut self.bufs[start..start + len.min(self.size)] as *mut [u8]
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: mapped in `new` with this size.
        unsafe { libc::munmap(self.ring as *mut libc::c_void, self.ring_bytes) };
    }
}

//! A minimal provided-buffer ring for the floor echo: `entries` buffers of `size` bytes in one anonymous mapping,
//! consumed incrementally (`IOU_PBUF_RING_INC`, Linux 6.12+) where the kernel has it, whole otherwise.
//!
//! Soundness: the mappings are never unmapped while the process runs (the echo server lives until it is killed), so
//! the kernel can never write into freed memory, whatever operations are still armed.

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// `IOU_PBUF_RING_INC` from the kernel uapi.
const IOU_PBUF_RING_INC: u16 = 2;

pub struct BufRing {
    ring: *mut BufRingEntry,
    mem: *mut u8,
    entries: u16,
    size: u32,
    tail: u16,
    /// Bytes of each buffer already consumed (incremental mode).
    offsets: Vec<u32>,
    pub incremental: bool,
    pub bgid: u16,
}

fn mmap_anon(bytes: usize) -> io::Result<*mut u8> {
    // SAFETY: an anonymous private mapping without address hint has no preconditions; the result is checked.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(p.cast())
}

impl BufRing {
    /// Map and register the ring as group `bgid`. `entries` must be a power of two.
    pub fn register(
        submitter: &Submitter<'_>,
        entries: u16,
        size: u32,
        bgid: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "entries must be a power of two, size > 0",
            ));
        }
        let ring = mmap_anon(entries as usize * std::mem::size_of::<BufRingEntry>())?
            .cast::<BufRingEntry>();
        let mem = mmap_anon(entries as usize * size as usize)?;
        let mut br = BufRing {
            ring,
            mem,
            entries,
            size,
            tail: 0,
            offsets: vec![0; entries as usize],
            incremental: true,
            bgid,
        };
        for bid in 0..entries {
            br.push(bid);
        }
        br.publish();
        // SAFETY: both mappings live until the process exits (module docs), so the kernel's view stays valid.
        let r = unsafe {
            submitter.register_buf_ring_with_flags(ring as u64, entries, bgid, IOU_PBUF_RING_INC)
        };
        if r.is_err() {
            br.incremental = false;
            // SAFETY: as above.
            unsafe { submitter.register_buf_ring_with_flags(ring as u64, entries, bgid, 0)? };
        }
        Ok(br)
    }

    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries (mask of a power of two), inside the ring mapping; the kernel reads only entries
        // before the published tail, and this one is after it.
        let e = unsafe { &mut *self.ring.add(idx) };
        // SAFETY: bid < entries, so the buffer lies inside the buffer mapping.
        e.set_addr(unsafe { self.mem.add(bid as usize * self.size as usize) } as u64);
        e.set_len(self.size);
        e.set_bid(bid);
        self.offsets[bid as usize] = 0;
        self.tail = self.tail.wrapping_add(1);
    }

    /// Make every buffer given back so far visible to the kernel (once per loop turn).
    pub fn publish(&self) {
        // SAFETY: the tail overlays the reserved u16 of entry 0 (io_uring_buf_ring layout), naturally aligned and
        // only read by the kernel: a release store is the documented protocol.
        unsafe {
            let tail = BufRingEntry::tail(self.ring) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `len` bytes the kernel wrote into buffer `bid` for a completion with `flags`. The bytes must be used before
    /// the next [`BufRing::publish`]: the buffer is handed back (queued) here unless the kernel keeps filling it.
    /// None if the kernel's `bid`/`len` do not fit the ring.
    pub fn take(&mut self, bid: u16, len: usize, flags: u32) -> Option<&[u8]> {
        if bid >= self.entries {
            return None;
        }
        let off = if self.incremental {
            self.offsets[bid as usize] as usize
        } else {
            0
        };
        if off + len > self.size as usize {
            return None;
        }
        let keep = self.incremental && io_uring::cqueue::buffer_more(flags);
        if keep {
            self.offsets[bid as usize] = (off + len) as u32;
        } else {
            self.push(bid);
        }
        // SAFETY: bid < entries and off + len <= size: the range lies inside the buffer mapping. The kernel wrote it
        // before posting the completion and does not touch it again until the buffer is re-published, which happens
        // after the caller is done with the slice (it borrows `self`).
        Some(unsafe {
            std::slice::from_raw_parts(self.mem.add(bid as usize * self.size as usize + off), len)
        })
    }
}

//! A pool of receive buffers: an io_uring provided-buffer ring, created and owned by a [`super::Ring`].
//!
//! The kernel picks a buffer when data arrives (multishot recv with buffer select), so an idle connection holds no
//! receive buffer. Where the kernel supports it (6.12+), buffers are consumed incrementally (`IOU_PBUF_RING_INC`): one
//! large buffer serves many small reads, and a 16 KiB message arrives in one completion. We track each buffer's
//! consumed offset and give it back only on a completion without `IORING_CQE_F_BUF_MORE`. Without incremental
//! consumption every completion consumes a whole buffer, which goes back right after its bytes are processed.
//!
//! Lazily provided: a ring starts with only `initial` of its buffers given to the kernel and [`BufRing::grow`] gives it
//! more (doubling) when a receive reports `ENOBUFS`, so the memory of buffers a quiet worker never needs is never
//! touched (the mapping is reserved whole; only pages the kernel or we write become resident). [`BufRing::shrink_to`]
//! goes the other way after a burst: buffers coming back are taken out of the cycle and their pages dropped
//! (`MADV_DONTNEED`) until only the target is left; a later `grow` gives those first. Only buffers that came back
//! are ever dropped, never one the kernel still has, so a ring that receives nothing keeps what it has.
//!
//! Invariant: a buffer the kernel reported is returned exactly once, whatever the completion (data, error, cancel,
//! stale connection); the ring tail is published before every `io_uring_enter` (by [`super::Ring`]).
//!
//! Soundness: only [`super::Ring::add_buf_ring`] creates a `BufRing`, and the ring keeps it until the ring itself is
//! dropped, after the registration is removed and the io_uring is closed. The memory the kernel writes into is
//! therefore mapped for as long as the kernel may write into it, whatever the caller does.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

/// `IOU_PBUF_RING_INC` from the kernel uapi.
const IOU_PBUF_RING_INC: u16 = 2;

/// A provided-buffer ring: `entries` buffers of `buf_size` bytes in one anonymous mapping.
pub struct BufRing {
    ring: NonNull<BufRingEntry>,
    ring_bytes: usize,
    mem: NonNull<u8>,
    mem_bytes: usize,
    entries: u16,
    buf_size: u32,
    /// Consumed bytes of each buffer (incremental mode).
    offsets: Box<[u32]>,
    /// Holds on each buffer: bytes of it still queued for sending (see [`BufRing::hold`]).
    holds: Box<[u32]>,
    /// Buffers the kernel is done with that wait for their holds to end before going back.
    parked: Box<[bool]>,
    tail: u16,
    /// Buffers in the cycle (given to the kernel, or with us until they go back).
    provided: u16,
    /// Buffers `fresh..entries` were never given to the kernel.
    fresh: u16,
    /// Buffers taken out of the cycle by [`BufRing::shrink_to`], their pages dropped.
    retired: Vec<u16>,
    /// How many more buffers to take out of the cycle as they come back.
    retire: u16,
    /// Whether the kernel consumes buffers incrementally (`IOU_PBUF_RING_INC`, Linux 6.12+).
    pub incremental: bool,
    /// The buffer group id to pass to receives with buffer select.
    pub bgid: u16,
}

fn mmap_anon(bytes: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: an anonymous private mapping with no address hint has no preconditions; the result is checked.
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
    Ok(NonNull::new(p.cast()).expect("mmap never returns null on success"))
}

impl BufRing {
    /// Map the ring and the buffers and register them with `bgid`, giving the kernel the first `initial` buffers
    /// (at least one; see [`BufRing::grow`]). Tries incremental consumption first.
    /// Only [`super::Ring`] calls this, and it owns the result for the lifetime of the registration.
    pub(super) fn register(
        submitter: &Submitter<'_>,
        entries: u16,
        buf_size: u32,
        bgid: u16,
        initial: u16,
    ) -> io::Result<BufRing> {
        if !entries.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two",
            ));
        }
        let ring_bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let ring = mmap_anon(ring_bytes)?.cast::<BufRingEntry>();
        let mem_bytes = entries as usize * buf_size as usize;
        let mem = match mmap_anon(mem_bytes) {
            Ok(m) => m,
            Err(e) => {
                // SAFETY: `ring` was mapped above with `ring_bytes` and is not registered yet.
                unsafe { libc::munmap(ring.as_ptr().cast(), ring_bytes) };
                return Err(e);
            }
        };
        let mut br = BufRing {
            ring,
            ring_bytes,
            mem,
            mem_bytes,
            entries,
            buf_size,
            offsets: vec![0; entries as usize].into_boxed_slice(),
            holds: vec![0; entries as usize].into_boxed_slice(),
            parked: vec![false; entries as usize].into_boxed_slice(),
            tail: 0,
            provided: initial.clamp(1, entries),
            fresh: initial.clamp(1, entries),
            retired: Vec::new(),
            retire: 0,
            incremental: true,
            bgid,
        };
        for bid in 0..br.provided {
            br.push(bid);
        }
        br.publish();
        let addr = ring.as_ptr() as u64;
        // SAFETY: the ring and buffer memory stay mapped until `Drop`, and only `Ring` owns a `BufRing`: it
        // unregisters it and closes the io_uring before this value drops (see the module docs).
        let r = unsafe {
            submitter.register_buf_ring_with_flags(addr, entries, bgid, IOU_PBUF_RING_INC)
        };
        if r.is_err() {
            br.incremental = false;
            // SAFETY: as above.
            unsafe { submitter.register_buf_ring_with_flags(addr, entries, bgid, 0)? };
        }
        Ok(br)
    }

    /// Add buffer `bid` at the tail (not yet visible to the kernel until `publish`).
    fn push(&mut self, bid: u16) {
        let idx = (self.tail & (self.entries - 1)) as usize;
        // SAFETY: idx < entries, inside the mapping; the kernel reads only entries before the published tail.
        let e = unsafe { &mut *self.ring.as_ptr().add(idx) };
        // SAFETY: bid < entries so the buffer lies inside `mem`.
        e.set_addr(unsafe { self.mem.as_ptr().add(bid as usize * self.buf_size as usize) } as u64);
        e.set_len(self.buf_size);
        e.set_bid(bid);
        self.offsets[bid as usize] = 0;
        self.tail = self.tail.wrapping_add(1);
    }

    /// Give the kernel more buffers (as many again as it has, up to all of them), retired ones first, then ones it
    /// never had: a receive ran out (`ENOBUFS`). A shrink still under way is called off. Returns false when every
    /// buffer is already in the cycle. Visible to the kernel at the next publish.
    pub fn grow(&mut self) -> bool {
        self.retire = 0;
        let add = self.provided.min(self.entries - self.provided);
        if add == 0 {
            return false;
        }
        for _ in 0..add {
            let bid = self.retired.pop().unwrap_or_else(|| {
                self.fresh += 1;
                self.fresh - 1
            });
            self.push(bid);
        }
        self.provided += add;
        true
    }

    /// Take buffers out of the cycle until `target` (at least one) are left: each one beyond it is retired when it
    /// next comes back from the kernel (released, or its last hold ended), and its memory given back to the system.
    pub fn shrink_to(&mut self, target: u16) {
        self.retire = self.provided.saturating_sub(target.max(1));
    }

    /// Buffers in the cycle (a gauge: at most `entries`; their memory may be resident).
    pub fn provided(&self) -> u16 {
        self.provided
    }

    /// Buffer `bid` came back and nothing refers to its bytes: to the kernel, or out of the cycle (see
    /// [`BufRing::shrink_to`]).
    fn give_back(&mut self, bid: u16) {
        if self.retire == 0 {
            self.push(bid);
            return;
        }
        self.retire -= 1;
        self.provided -= 1;
        let size = self.buf_size as usize;
        // SAFETY: the range is buffer `bid` (bid < entries), inside the mapping. The kernel no longer has the buffer
        // (it is not in the ring) and nothing refers to its bytes (its completion was processed and it has no hold),
        // so dropping its pages loses nothing; they read as zeros if the buffer is ever given again.
        unsafe {
            libc::madvise(
                self.mem.as_ptr().add(bid as usize * size).cast(),
                size,
                libc::MADV_DONTNEED,
            )
        };
        self.retired.push(bid);
    }

    /// Make every pushed buffer visible to the kernel.
    pub fn publish(&self) {
        // SAFETY: the tail field overlays the reserved field of entry 0 (io_uring_buf_ring layout); it is a
        // naturally aligned u16 that the kernel only reads, so an atomic release store is the documented protocol.
        unsafe {
            let tail = BufRingEntry::tail(self.ring.as_ptr()) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The `len` bytes the kernel just wrote into buffer `bid`. Advances the buffer's offset in incremental mode.
    ///
    /// Returns None if `bid`/`len` are out of range (a kernel contract violation we refuse to trust blindly).
    pub fn take(&mut self, bid: u16, len: usize) -> Option<&mut [u8]> {
        if bid >= self.entries {
            return None;
        }
        let off = if self.incremental {
            self.offsets[bid as usize] as usize
        } else {
            0
        };
        if off + len > self.buf_size as usize {
            return None;
        }
        if self.incremental {
            self.offsets[bid as usize] = (off + len) as u32;
        }
        // SAFETY: the range lies inside buffer `bid` (checked above); the kernel has finished writing it (its
        // completion was reaped) and will not write this range again until the buffer is pushed back.
        Some(unsafe {
            std::slice::from_raw_parts_mut(
                self.mem
                    .as_ptr()
                    .add(bid as usize * self.buf_size as usize + off),
                len,
            )
        })
    }

    /// A completion that carried buffer `bid` was processed: give the buffer back unless the kernel keeps using it
    /// or bytes of it are still held for sending (then it goes back when the last hold ends).
    pub fn release(&mut self, bid: u16, buf_more: bool) {
        if bid >= self.entries || (self.incremental && buf_more) {
            return;
        }
        if self.holds[bid as usize] > 0 {
            self.parked[bid as usize] = true;
            return;
        }
        self.give_back(bid);
    }

    /// Keep buffer `bid` out of the kernel's reach: bytes already received into it are queued for sending straight
    /// from it (a large echo without a copy). The bytes of a held buffer are never overwritten: the kernel writes only
    /// past what it reported (incremental mode) or into buffers given back, and a held buffer is not given back.
    pub fn hold(&mut self, bid: u16) {
        if let Some(h) = self.holds.get_mut(bid as usize) {
            *h += 1;
        }
    }

    /// Buffers that bytes queued for sending still hold (a gauge: the kernel cannot use them meanwhile).
    pub fn held(&self) -> usize {
        self.holds.iter().filter(|&&h| h > 0).count()
    }

    /// End one hold on `bid` (its bytes were written, copied or dropped); the buffer goes back to the kernel if it
    /// was done with it.
    pub fn unhold(&mut self, bid: u16) {
        let i = bid as usize;
        let Some(h) = self.holds.get_mut(i) else {
            return;
        };
        debug_assert!(*h > 0, "unhold without hold on buffer {bid}");
        *h = h.saturating_sub(1);
        if *h == 0 && self.parked[i] {
            self.parked[i] = false;
            self.give_back(bid);
        }
    }
}

#[cfg(test)]
impl BufRing {
    /// The whole of buffer `bid` (tests only).
    fn peek(&self, bid: u16) -> &[u8] {
        assert!(bid < self.entries);
        let size = self.buf_size as usize;
        // SAFETY: buffer `bid` lies inside the mapping, which lives as long as `self`; in these tests no kernel
        // receive writes into it.
        unsafe { std::slice::from_raw_parts(self.mem.as_ptr().add(bid as usize * size), size) }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: both mappings were created in `new` with these sizes; the ring has been unregistered or torn down.
        unsafe {
            libc::munmap(self.mem.as_ptr().cast(), self.mem_bytes);
            libc::munmap(self.ring.as_ptr().cast(), self.ring_bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_held_buffer_goes_back_only_when_its_last_hold_ends() {
        let mut r = super::super::Ring::new(8, 16).expect("io_uring available");
        let i = r.add_buf_ring(4, 4096, 1, 4).unwrap();
        let b = r.bufs(i);
        assert_eq!(b.tail, 4, "every buffer starts with the kernel");
        b.hold(0);
        b.hold(0);
        b.release(0, false);
        assert_eq!(b.tail, 4, "held: parked, not given back");
        b.unhold(0);
        assert_eq!(b.tail, 4, "one hold left");
        b.unhold(0);
        assert_eq!(b.tail, 5, "the last hold ended: given back once");
        b.release(1, false);
        assert_eq!(b.tail, 6, "no hold: given back at once");
        // A hold that ends while the kernel still uses the buffer gives nothing back.
        b.hold(2);
        b.unhold(2);
        assert_eq!(b.tail, 6);
        // Out of range ids are ignored, never a panic.
        b.hold(99);
        b.unhold(99);
        b.release(99, false);
        assert_eq!(b.tail, 6);
    }

    #[test]
    fn a_lazy_ring_grows_by_doubling_up_to_its_size() {
        let mut r = super::super::Ring::new(8, 16).expect("io_uring available");
        let i = r.add_buf_ring(16, 4096, 1, 3).unwrap();
        let b = r.bufs(i);
        assert_eq!(
            (b.provided(), b.tail),
            (3, 3),
            "only the first buffers are given at first"
        );
        assert!(b.grow());
        assert_eq!((b.provided(), b.tail), (6, 6));
        assert!(b.grow() && b.grow());
        assert_eq!(b.provided(), 16, "capped at the ring's size");
        assert_eq!(b.tail, 16, "each buffer given exactly once");
        assert!(!b.grow(), "nothing left to give");
        assert_eq!(b.tail, 16);
    }

    #[test]
    fn a_ring_shrinks_as_buffers_come_back_and_grows_again_from_the_retired_ones() {
        let mut r = super::super::Ring::new(8, 16).expect("io_uring available");
        let i = r.add_buf_ring(16, 4096, 1, 4).unwrap();
        let b = r.bufs(i);
        assert!(b.grow() && b.grow());
        assert_eq!((b.provided(), b.tail), (16, 16));
        // Bytes "received" into buffer 5, which is held for sending when the kernel is done with it.
        b.take(5, 100).unwrap().fill(0xab);
        b.hold(5);
        b.shrink_to(4);
        assert_eq!(b.provided(), 16, "nothing retired before buffers come back");
        for bid in 0..4 {
            b.release(bid, false);
        }
        assert_eq!(
            (b.provided(), b.tail),
            (12, 16),
            "four retired, none given back"
        );
        b.release(5, false);
        assert_eq!(b.provided(), 12, "a held buffer is not retired while held");
        assert!(
            b.peek(5)[..100].iter().all(|&x| x == 0xab),
            "its bytes are intact"
        );
        b.unhold(5);
        assert_eq!(b.provided(), 11, "retired when its last hold ended");
        for bid in 6..13 {
            b.release(bid, false);
        }
        assert_eq!((b.provided(), b.tail), (4, 16), "down to the target");
        b.release(13, false);
        assert_eq!(
            (b.provided(), b.tail),
            (4, 17),
            "at the target, buffers go back to the kernel"
        );
        // A retired buffer's pages were dropped: it reads as zeros.
        assert!(b.peek(5).iter().all(|&x| x == 0));
        // Growing gives retired buffers, each once, and never more than the ring holds.
        assert!(b.grow());
        assert_eq!((b.provided(), b.tail), (8, 21));
        assert!(b.grow());
        assert_eq!((b.provided(), b.tail), (16, 29));
        assert!(!b.grow());
        assert!(b.retired.is_empty());
        // A shrink called off by a grow retires nothing more.
        b.shrink_to(1);
        assert!(!b.grow());
        b.release(14, false);
        assert_eq!(b.provided(), 16);
    }
}

//! A connection's outbound queue: bounded, corked per loop turn, at most one send in flight.
//!
//! Small frames are appended to an owned tail buffer (taken from a per-worker pool); shared frames (broadcasts) are
//! queued as `Bytes` without copying. A flush turns everything queued into ONE `send` (one segment) or `sendmsg`
//! (several segments as iovecs). Bytes stay in the queue until the kernel reports them written; a short send resumes
//! where it stopped. While a send is in flight its segments are never modified; new frames go to a new tail.

use std::collections::VecDeque;

use bytes::Bytes;

use super::backpressure::Backpressure;
use crate::proto::{encode_header, write_frame, OpCode, MAX_HEADER_LEN};

/// What happened to a message given to `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued on an empty queue: goes out at the end of this loop turn.
    Sent,
    /// Queued behind other bytes (the peer is reading slower than we write).
    Buffered,
    /// Not queued: the queue is over `max_backpressure`, or the connection is closing.
    Dropped,
}

/// Payloads at least this large that still lie in the receive buffer are sent from there instead of being copied
/// (below it, a copy into the corked buffer is cheaper than another iovec).
pub(crate) const ZERO_COPY_MIN: usize = 4096;

/// Most iovecs in one `sendmsg`.
pub(crate) const MAX_IOV: usize = 64;
/// Pooled send buffers come in three sizes. A turn's first frames for a connection go into a tiny one (one echo, an
/// upgrade response: every connection that has something to send in a turn holds one until the kernel has sent it,
/// so with thousands of connections in one turn their size is what the server's memory is made of); a connection
/// that queues more than a tiny buffer holds in one turn continues in a small one, which collects many corked
/// frames; large ones hold a big message (up to 64 KiB) without a fresh allocation per message. Bigger messages get
/// an exact allocation.
const TINY_CAP: usize = 512;
const SMALL_CAP: usize = 4 << 10;
const LARGE_CAP: usize = 64 << 10;
/// Buffers kept per class (bounds the memory the pool can hold: 4096 x 512 B + 1024 x 4 KiB + 64 x 64 KiB).
const TINY_MAX: usize = 4096;
const SMALL_MAX: usize = 1024;
const LARGE_MAX: usize = 64;

#[derive(Debug)]
enum Seg {
    Owned(Vec<u8>),
    Shared(Bytes),
    /// Bytes still in receive buffer `bid` of the worker's buffer ring, sent without a copy; the buffer is held
    /// (not given back to the kernel) until this segment is released (see [`BufPool::ring_holds`]).
    Ring {
        ptr: std::ptr::NonNull<u8>,
        len: usize,
        bid: u16,
    },
}

impl Seg {
    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            Seg::Owned(v) => v,
            Seg::Shared(b) => b,
            // SAFETY: `ptr..ptr+len` lies in receive buffer `bid` (checked against the read's span when queued), and
            // that buffer is held from then until this segment is released: the kernel does not write into it and
            // the buffer ring's memory outlives every connection of the worker.
            Seg::Ring { ptr, len, .. } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
        }
    }
}

/// The queued segments: the first one inline, so the common case (one corked buffer per turn) allocates no deque,
/// and the rest boxed (8 bytes inline), so an idle connection holds no heap memory and a small slot.
#[derive(Debug, Default)]
struct SegQueue {
    first: Option<Seg>,
    #[allow(clippy::box_collection)] // 8 bytes in every connection's slot instead of 32
    rest: Option<Box<VecDeque<Seg>>>,
}

impl SegQueue {
    #[inline]
    fn rest_len(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| r.len())
    }
    #[inline]
    fn len(&self) -> usize {
        self.first.is_some() as usize + self.rest_len()
    }
    #[inline]
    fn push_back(&mut self, s: Seg) {
        if self.first.is_none() {
            self.first = Some(s);
        } else {
            self.rest.get_or_insert_with(Default::default).push_back(s);
        }
    }
    #[inline]
    fn back(&self) -> Option<&Seg> {
        self.rest
            .as_ref()
            .and_then(|r| r.back())
            .or(self.first.as_ref())
    }
    #[inline]
    fn back_mut(&mut self) -> Option<&mut Seg> {
        match &mut self.rest {
            Some(r) if !r.is_empty() => r.back_mut(),
            _ => self.first.as_mut(),
        }
    }
    fn pop_back(&mut self) -> Option<Seg> {
        self.rest
            .as_mut()
            .and_then(|r| r.pop_back())
            .or_else(|| self.first.take())
    }
    #[inline]
    fn front(&self) -> Option<&Seg> {
        self.first.as_ref()
    }
    #[inline]
    fn pop_front(&mut self) -> Option<Seg> {
        let f = self.first.take();
        self.first = self.rest.as_mut().and_then(|r| r.pop_front());
        f
    }
    fn iter(&self) -> impl Iterator<Item = &Seg> {
        self.first
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()))
    }
    fn drain(&mut self) -> impl Iterator<Item = Seg> + '_ {
        self.first
            .take()
            .into_iter()
            .chain(self.rest.iter_mut().flat_map(|r| r.drain(..)))
    }
    fn get(&self, i: usize) -> Option<&Seg> {
        if i == 0 {
            self.first.as_ref()
        } else {
            self.rest.as_ref()?.get(i - 1)
        }
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut Seg> {
        if i == 0 {
            self.first.as_mut()
        } else {
            self.rest.as_mut()?.get_mut(i - 1)
        }
    }
    /// Insert at position `i` (<= len).
    fn insert(&mut self, i: usize, s: Seg) {
        if i == 0 {
            if let Some(f) = self.first.replace(s) {
                self.rest.get_or_insert_with(Default::default).push_front(f);
            }
        } else {
            self.rest
                .get_or_insert_with(Default::default)
                .insert(i - 1, s);
        }
    }
    /// Remove the segment at position `i` (< len).
    fn remove(&mut self, i: usize) -> Seg {
        if i == 0 {
            self.pop_front().expect("i < len")
        } else {
            self.rest
                .as_mut()
                .and_then(|r| r.remove(i - 1))
                .expect("i < len")
        }
    }
    fn shrink(&mut self) {
        if self.rest_len() == 0 {
            self.rest = None;
        }
    }
}

/// Per-worker pool of owned send buffers, so idle connections hold none and busy ones do not allocate per message.
/// It also records, for the worker to apply to its buffer ring, the receive buffers that ring segments took
/// (`ring_holds`) and gave up (`ring_releases`); holds are applied first.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    tiny: Vec<Vec<u8>>,
    small: Vec<Vec<u8>>,
    large: Vec<Vec<u8>>,
    pub(crate) ring_holds: Vec<u16>,
    pub(crate) ring_releases: Vec<u16>,
    /// Ring segments copied out after a short send (a counter the worker moves into its stats).
    pub(crate) ring_spills: u64,
    /// Ring segments queued and not yet released, and how many may be (a quarter of the receive ring, set by the
    /// worker): a send to a peer that does not read stays in flight, holding its buffer until the stall timeout,
    /// so held buffers are capped and most of the ring always stays with the kernel.
    ring_live: usize,
    pub(crate) ring_cap: usize,
}

impl BufPool {
    /// A segment is done with: its buffer goes back to the pool, or its receive buffer's hold ends.
    #[inline]
    fn release(&mut self, s: Seg) {
        match s {
            Seg::Owned(v) => self.give(v),
            Seg::Ring { bid, .. } => self.end_ring(bid),
            Seg::Shared(_) => {}
        }
    }

    /// Whether another payload may be sent from its receive buffer (under the cap of held segments).
    #[inline]
    pub(crate) fn ring_room(&self) -> bool {
        self.ring_live < self.ring_cap
    }

    fn end_ring(&mut self, bid: u16) {
        self.ring_live -= 1;
        self.ring_releases.push(bid);
    }

    /// Capacity of the buffers kept for reuse (a gauge).
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.tiny.len() * TINY_CAP + self.small.len() * SMALL_CAP + self.large.len() * LARGE_CAP
    }

    #[inline]
    fn take(&mut self, need: usize) -> Vec<u8> {
        if need <= TINY_CAP {
            self.tiny
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(TINY_CAP))
        } else if need <= SMALL_CAP {
            self.small
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(SMALL_CAP))
        } else if need <= LARGE_CAP {
            self.large
                .pop()
                .unwrap_or_else(|| Vec::with_capacity(LARGE_CAP))
        } else {
            Vec::with_capacity(need)
        }
    }
    #[inline]
    fn give(&mut self, mut v: Vec<u8>) {
        let (list, max) = match v.capacity() {
            TINY_CAP => (&mut self.tiny, TINY_MAX),
            SMALL_CAP => (&mut self.small, SMALL_MAX),
            LARGE_CAP => (&mut self.large, LARGE_MAX),
            _ => return,
        };
        if list.len() < max {
            v.clear();
            list.push(v);
        }
    }
}

/// The iovecs (and msghdr) of an in-flight `sendmsg`; boxed so their address is stable while the kernel reads them.
pub(crate) struct IoVecs {
    pub hdr: libc::msghdr,
    pub iov: [libc::iovec; MAX_IOV],
}

#[derive(Debug, Default)]
pub(crate) struct Outbound {
    segs: SegQueue,
    /// Bytes of `segs[0]` already written (a short send).
    head_off: u32,
    /// Segments (from the front) that belong to the send in flight; 0 = no send in flight.
    inflight_segs: u16,
    /// Total bytes queued and not yet written.
    queued: usize,
    /// On a TLS connection: segments (from the front) that are ciphertext, ready to send; the rest is plaintext
    /// the layers above queued, encrypted by `seal` right before the next send. Always 0 without TLS.
    sealed: u16,
}

impl Outbound {
    #[inline]
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }
    #[inline]
    pub(crate) fn in_flight(&self) -> bool {
        self.inflight_segs != 0
    }
    /// Whether a flush would send something.
    #[inline]
    pub(crate) fn has_unsent(&self) -> bool {
        self.queued != 0 && !self.in_flight()
    }

    fn status_for(&self, before: usize) -> SendStatus {
        if before == 0 {
            SendStatus::Sent
        } else {
            SendStatus::Buffered
        }
    }

    /// The owned tail buffer new bytes can be appended to (not in flight), with room for `need` more bytes.
    #[inline]
    pub(crate) fn tail(&mut self, need: usize, pool: &mut BufPool) -> &mut Vec<u8> {
        let open = self.segs.len() > (self.inflight_segs.max(self.sealed)) as usize;
        let room = match self.segs.back() {
            Some(Seg::Owned(v)) if open => Some((v.capacity() - v.len() >= need, v.capacity())),
            _ => None,
        };
        match room {
            Some((true, _)) => {}
            // A full tail: this connection is batching this turn, so it goes on in a small buffer (or one that fits
            // `need`), never back in a tiny one.
            Some((false, _)) => self
                .segs
                .push_back(Seg::Owned(pool.take(need.max(TINY_CAP + 1)))),
            None => self.segs.push_back(Seg::Owned(pool.take(need))),
        }
        match self.segs.back_mut() {
            Some(Seg::Owned(v)) => v,
            _ => unreachable!("tail segment was just made owned"),
        }
    }

    /// Encode and queue a data frame (copying `payload`), if the backpressure policy admits it.
    #[inline]
    pub(crate) fn push_frame(
        &mut self,
        op: OpCode,
        payload: &[u8],
        bp: &Backpressure,
        pool: &mut BufPool,
    ) -> SendStatus {
        self.push_encoded(payload.len(), bp, pool, |v| {
            write_frame(v, true, op, payload)
        })
    }

    /// Queue a data frame with RSV1 set: `payload` is a permessage-deflate compressed message.
    pub(crate) fn push_compressed(
        &mut self,
        op: OpCode,
        payload: &[u8],
        bp: &Backpressure,
        pool: &mut BufPool,
    ) -> SendStatus {
        self.push_encoded(payload.len(), bp, pool, |v| {
            crate::deflate::codec::write_frame(v, 0x40, op, payload, None)
        })
    }

    /// Queue one frame of `payload_len` payload bytes written by `write` into the tail, if the backpressure policy
    /// admits it.
    #[inline]
    fn push_encoded(
        &mut self,
        payload_len: usize,
        bp: &Backpressure,
        pool: &mut BufPool,
        write: impl FnOnce(&mut Vec<u8>),
    ) -> SendStatus {
        let len = payload_len + MAX_HEADER_LEN;
        if !bp.admits(self.queued, len) {
            return SendStatus::Dropped;
        }
        let before = self.queued;
        let v = self.tail(len, pool);
        let start = v.len();
        write(v);
        self.queued += v.len() - start;
        self.status_for(before)
    }

    /// Queue a data frame whose payload stays where it was received, in receive buffer `bid` (no copy): the header
    /// goes into the tail, the payload as a ring segment that holds the buffer until it is written (or copied out
    /// after a short send). The caller checked that `payload` lies in receive buffer `bid`.
    pub(crate) fn push_frame_in_ring(
        &mut self,
        op: OpCode,
        payload: &[u8],
        bid: u16,
        bp: &Backpressure,
        pool: &mut BufPool,
    ) -> SendStatus {
        if !bp.admits(self.queued, payload.len() + MAX_HEADER_LEN) {
            return SendStatus::Dropped;
        }
        let before = self.queued;
        let mut h = [0u8; MAX_HEADER_LEN];
        let n = encode_header(&mut h, true, op, payload.len() as u64, None);
        self.tail(n, pool).extend_from_slice(&h[..n]);
        self.segs.push_back(Seg::Ring {
            ptr: std::ptr::NonNull::from(payload).cast(),
            len: payload.len(),
            bid,
        });
        pool.ring_holds.push(bid);
        pool.ring_live += 1;
        self.queued += n + payload.len();
        self.status_for(before)
    }

    /// Queue a control frame: never dropped (bounded by the protocol: <= 127 bytes each, and a peer that floods
    /// pings without reading is paused like any other).
    pub(crate) fn push_control(&mut self, op: OpCode, payload: &[u8], pool: &mut BufPool) {
        let v = self.tail(payload.len() + MAX_HEADER_LEN, pool);
        let start = v.len();
        write_frame(v, true, op, payload);
        self.queued += v.len() - start;
    }

    /// Append raw bytes through `f` (e.g. an HTTP response or the protocol core's pending control frames).
    pub(crate) fn push_with(
        &mut self,
        hint: usize,
        pool: &mut BufPool,
        f: impl FnOnce(&mut Vec<u8>),
    ) {
        let v = self.tail(hint, pool);
        let start = v.len();
        f(v);
        self.queued += v.len() - start;
    }

    /// Queue a pre-encoded shared frame without copying, if the backpressure policy admits it.
    pub(crate) fn push_shared(&mut self, frame: Bytes, bp: &Backpressure) -> SendStatus {
        if !bp.admits(self.queued, frame.len()) {
            return SendStatus::Dropped;
        }
        let before = self.queued;
        self.queued += frame.len();
        self.segs.push_back(Seg::Shared(frame));
        self.status_for(before)
    }

    /// Describe the next send: `Single(ptr, len)` for one segment, or fill `iov` and return `Vectored(n)`.
    /// Marks the segments in flight. Call only when `has_unsent()`.
    pub(crate) fn prepare_send(&mut self, iov: &mut [libc::iovec; MAX_IOV]) -> Prepared {
        debug_assert!(self.has_unsent());
        // Drop empty owned tails (a pooled buffer nothing was written to).
        while let Some(Seg::Owned(v)) = self.segs.back() {
            if !v.is_empty() {
                break;
            }
            self.segs.pop_back();
        }
        let n = self.segs.len().min(MAX_IOV);
        self.inflight_segs = n as u16;
        let off = self.head_off as usize;
        if n == 1 {
            let b = &self.segs.front().expect("n == 1").bytes()[off..];
            return Prepared::Single(b.as_ptr(), b.len());
        }
        for (i, seg) in self.segs.iter().take(n).enumerate() {
            let b = if i == 0 {
                &seg.bytes()[off..]
            } else {
                seg.bytes()
            };
            iov[i] = libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            };
        }
        Prepared::Vectored(n)
    }

    /// The send in flight completed having written `written` bytes. Fully written segments are released.
    pub(crate) fn complete_send(&mut self, mut written: usize, pool: &mut BufPool) {
        self.inflight_segs = 0;
        self.queued -= written.min(self.queued);
        while written > 0 {
            let Some(front) = self.segs.front() else {
                break;
            };
            let rest = front.bytes().len() - self.head_off as usize;
            if written >= rest {
                written -= rest;
                self.head_off = 0;
                self.sealed = self.sealed.saturating_sub(1);
                if let Some(seg) = self.segs.pop_front() {
                    pool.release(seg);
                }
            } else {
                self.head_off += written as u32;
                written = 0;
            }
        }
        self.spill_ring(pool);
    }

    /// Copy what is left of ring segments into owned buffers and end their holds, so a receive buffer is never held
    /// longer than one send (a peer that stops reading must not keep the worker's receive buffers).
    fn spill_ring(&mut self, pool: &mut BufPool) {
        for i in 0..self.segs.len() {
            let Some(seg @ Seg::Ring { .. }) = self.segs.get_mut(i) else {
                continue;
            };
            let mut v = pool.take(seg.bytes().len());
            v.extend_from_slice(seg.bytes());
            if let Seg::Ring { bid, .. } = std::mem::replace(seg, Seg::Owned(v)) {
                pool.end_ring(bid);
                pool.ring_spills += 1;
            }
        }
    }

    /// The send in flight failed or was abandoned: nothing more will be sent.
    pub(crate) fn abandon(&mut self, pool: &mut BufPool) {
        self.inflight_segs = 0;
        self.sealed = 0;
        self.queued = 0;
        self.head_off = 0;
        for s in self.segs.drain() {
            pool.release(s);
        }
    }

    /// TLS: encrypt every plaintext segment (those after the sealed ones) into pooled buffers; afterwards every
    /// segment is ciphertext. `encrypt` gets a run of consecutive plaintext segments (as many as one large pooled
    /// buffer holds once encrypted, at least one) and appends their records to the given buffer, so that a frame
    /// header and a payload queued as a segment of its own (a ring segment) share records. Call before each send on
    /// a TLS connection, and before queueing ciphertext of a read. A send in flight only ever holds sealed
    /// segments (sends are prepared after sealing), and those are left alone: nothing changes under the kernel.
    pub(crate) fn seal<E>(
        &mut self,
        pool: &mut BufPool,
        mut encrypt: impl FnMut(&mut dyn Iterator<Item = &[u8]>, &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        debug_assert!(self.inflight_segs <= self.sealed);
        // Room for the records' overhead (a few dozen bytes per 16 KiB record).
        let room = |n: usize| n + n / 512 + 64;
        let mut result = Ok(());
        while self.segs.len() > self.sealed as usize {
            let first = self.sealed as usize;
            let (mut end, mut bytes) = (first, 0);
            while let Some(s) = self.segs.get(end) {
                let n = s.bytes().len();
                if end > first && room(bytes + n) > LARGE_CAP {
                    break;
                }
                (end, bytes) = (end + 1, bytes + n);
            }
            // The buffer the records go to is out of the queue while the run is read.
            let mut sealed = None;
            if result.is_ok() && bytes > 0 {
                let reuse = self.reusable_sealed_tail(room(bytes));
                let mut v = match reuse.and_then(|i| self.segs.get_mut(i)) {
                    Some(Seg::Owned(v)) => std::mem::take(v),
                    _ => pool.take(room(bytes)),
                };
                let start = v.len();
                let mut run = (first..end)
                    .filter_map(|i| self.segs.get(i))
                    .map(Seg::bytes);
                result = encrypt(&mut run, &mut v);
                self.queued += v.len() - start;
                sealed = Some((reuse, v));
            }
            for _ in first..end {
                let seg = self.segs.remove(first);
                self.queued -= seg.bytes().len();
                pool.release(seg);
            }
            match sealed {
                Some((Some(i), v)) => {
                    if let Some(s) = self.segs.get_mut(i) {
                        *s = Seg::Owned(v);
                    }
                }
                Some((None, v)) => {
                    self.segs.insert(first, Seg::Owned(v));
                    self.sealed += 1;
                }
                None => {}
            }
        }
        result
    }

    /// TLS: queue bytes that are already ciphertext (handshake flights, alerts; or a plain HTTP answer on a port
    /// that expected TLS) after the sealed segments. Call after `seal`, so records keep their order.
    pub(crate) fn push_sealed(&mut self, bytes: &[u8], pool: &mut BufPool) {
        debug_assert_eq!(
            self.segs.len(),
            self.sealed as usize,
            "seal before pushing ciphertext"
        );
        if bytes.is_empty() {
            return;
        }
        let v = self.sealed_tail(bytes.len(), pool);
        v.extend_from_slice(bytes);
        self.queued += bytes.len();
    }

    /// The last sealed segment if it is owned, not in flight and has room for `need` bytes; else a fresh pooled
    /// one inserted right after the sealed ones.
    fn sealed_tail(&mut self, need: usize, pool: &mut BufPool) -> &mut Vec<u8> {
        if self.reusable_sealed_tail(need).is_none() {
            self.segs
                .insert(self.sealed as usize, Seg::Owned(pool.take(need)));
            self.sealed += 1;
        }
        match self.segs.get_mut(self.sealed as usize - 1) {
            Some(Seg::Owned(v)) => v,
            _ => unreachable!("the last sealed segment was just made owned"),
        }
    }

    /// The index of the last sealed segment if it is owned, not in flight and has room for `need` more bytes.
    fn reusable_sealed_tail(&self, need: usize) -> Option<usize> {
        let n = self.sealed as usize;
        let ok = n > self.inflight_segs as usize
            && matches!(self.segs.get(n - 1), Some(Seg::Owned(v)) if v.capacity() - v.len() >= need);
        ok.then(|| n - 1)
    }

    /// Release the queue's own allocation when idle (called by the periodic sweep).
    pub(crate) fn shrink_if_idle(&mut self) {
        self.segs.shrink();
    }
}

pub(crate) enum Prepared {
    Single(*const u8, usize),
    Vectored(usize),
}

#[cfg(test)]
#[path = "outbound_tests.rs"]
mod tests;

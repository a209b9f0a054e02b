//! permessage-deflate in the server: what each worker owns, what a connection owns, and how sends, publishes and
//! reads go through [`crate::deflate`]'s codecs (the memory design is in that module's docs).
//!
//! - A connection carries one byte in its slot, its *mark*: 0 without the extension, else its window class
//!   (9..=15, [`DeflateParams::class`]), with [`DEDICATED`] set when it has state of its own. Shared mode: never;
//!   dedicated mode: a [`ConnDeflate`] in the worker's side table (by slot, removed at teardown), so the slot does
//!   not grow and a server without dedicated connections pays nothing per connection.
//! - The worker ([`WorkerDeflate`], in [`super::local::Local`]) owns the one [`Inflater`], one fresh-context-per-message
//!   [`SharedDeflater`] per window class in use (built on first use) and the scratch buffer compressed payloads go
//!   through.
//! - A publish carries a [`Deflated`] cache (one slot per class, shared by every worker through the publish): the
//!   first worker that delivers it to a subscriber of a class compresses it, once, with no context; every other
//!   subscriber of that class, on any worker, gets the same frame. A dedicated subscriber's own stream learns the
//!   plaintext through [`DedicatedDeflater::note_foreign`].

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Instant;

use bytes::Bytes;

use crate::deflate::codec::write_frame;
use crate::deflate::{
    Compression, DedicatedDeflater, DeflateParams, InflateHistory, Inflater, SharedDeflater, Skip,
    DEFAULT_LEVEL,
};
use crate::proto::{DecompressError, Decompressor, OpCode, MAX_HEADER_LEN};

use super::stats::Counters;

/// Set in a connection's mark when its compression state lives in [`WorkerDeflate::conns`].
pub(crate) const DEDICATED: u8 = 0x80;
const CLASS_MASK: u8 = 0x0f;
const CLASSES: usize = 7;

/// One connection's context takeover state (dedicated mode only).
#[derive(Debug)]
pub(crate) struct ConnDeflate {
    /// Server context takeover (`None` when the client asked for `server_no_context_takeover`).
    send: Option<DedicatedDeflater>,
    /// The client's last `2^W` bytes (`None` when it resets per message).
    recv: Option<InflateHistory>,
    /// Compressed something since the last [`WorkerDeflate::sweep`].
    used: bool,
}

/// A publish's compressed frames, one per window class, each made at most once (by whichever worker first needs
/// it); `None` inside: that class gets the plain frame (under the threshold, or no gain).
#[derive(Debug, Default)]
pub(crate) struct Deflated {
    frames: [OnceLock<Option<Bytes>>; CLASSES],
}

/// A worker's compression state.
#[derive(Debug)]
pub(crate) struct WorkerDeflate {
    policy: Compression,
    threshold: usize,
    /// Taken out while a read runs (the read's callbacks reach the rest of this struct).
    inflater: Option<Inflater>,
    shared: [Option<SharedDeflater>; CLASSES],
    scratch: Vec<u8>,
    /// Dedicated connections' state, by slot.
    conns: HashMap<u32, ConnDeflate>,
}

fn class_index(mark: u8) -> usize {
    usize::from((mark & CLASS_MASK).clamp(9, 15) - 9)
}

impl WorkerDeflate {
    pub(crate) fn new(policy: Compression, threshold: usize) -> Self {
        WorkerDeflate {
            policy,
            threshold,
            inflater: None,
            shared: Default::default(),
            scratch: Vec::new(),
            conns: HashMap::new(),
        }
    }

    /// A connection negotiated `p`: set up what it owns and return its mark.
    pub(crate) fn attach(&mut self, slot: u32, p: &DeflateParams) -> u8 {
        let class = p.class();
        let Compression::Dedicated { .. } = self.policy else {
            return class;
        };
        let send = (!p.server_no_context_takeover)
            .then(|| DedicatedDeflater::new(p.server_max_window_bits, DEFAULT_LEVEL));
        let recv =
            (!p.client_no_context_takeover).then(|| InflateHistory::new(p.client_max_window_bits));
        if send.is_none() && recv.is_none() {
            return class;
        }
        self.conns.insert(
            slot,
            ConnDeflate {
                send,
                recv,
                used: false,
            },
        );
        class | DEDICATED
    }

    /// The connection in `slot` is gone.
    pub(crate) fn detach(&mut self, slot: u32) {
        self.conns.remove(&slot);
    }

    /// Once a second (the worker's sweep): drop the zlib stream of every dedicated connection that compressed
    /// nothing since the last sweep, leaving only its window history; the next message rebuilds the stream.
    /// Returns the streams still live (a gauge).
    pub(crate) fn sweep(&mut self) -> u64 {
        let mut live = 0;
        for d in self.conns.values_mut() {
            let Some(s) = d.send.as_mut() else { continue };
            if !std::mem::take(&mut d.used) {
                s.compact();
            }
            live += u64::from(s.has_stream());
        }
        live
    }

    fn shared_deflater(
        shared: &mut [Option<SharedDeflater>; CLASSES],
        mark: u8,
    ) -> &mut SharedDeflater {
        let i = class_index(mark);
        shared[i].get_or_insert_with(|| SharedDeflater::new(i as u8 + 9, DEFAULT_LEVEL))
    }

    /// Compress `msg` for the connection (`slot`, `mark`): the payload to send with RSV1, or `None` to send it
    /// plain (counted by reason).
    pub(crate) fn compress(
        &mut self,
        c: &mut Counters,
        slot: u32,
        mark: u8,
        msg: &[u8],
    ) -> Option<&[u8]> {
        if msg.len() < self.threshold {
            c.deflate_skipped_threshold += 1;
            return None;
        }
        let t = Instant::now();
        self.scratch.clear();
        let own = match mark & DEDICATED {
            0 => None,
            _ => self.conns.get_mut(&slot).and_then(|d| {
                d.used = true;
                d.send.as_mut()
            }),
        };
        let r = match own {
            Some(d) => d.compress(msg, &mut self.scratch),
            None => Self::shared_deflater(&mut self.shared, mark).compress(msg, &mut self.scratch),
        };
        c.deflate_nanos += t.elapsed().as_nanos() as u64;
        count(c, msg.len(), &r);
        r.ok().map(|_| &self.scratch[..])
    }

    /// The frame to queue to a subscriber (`slot`, `mark`) of a publish whose plain frame is `plain` (payload
    /// `payload`, `op`): the class's compressed frame, made now if no worker made it yet, or `None` for the plain
    /// one.
    pub(crate) fn publish_frame(
        &mut self,
        c: &mut Counters,
        slot: u32,
        mark: u8,
        cache: &Deflated,
        op: OpCode,
        payload: &[u8],
    ) -> Option<Bytes> {
        if payload.len() < self.threshold {
            return None;
        }
        let frame = cache.frames[class_index(mark)]
            .get_or_init(|| {
                let t = Instant::now();
                self.scratch.clear();
                let r = Self::shared_deflater(&mut self.shared, mark)
                    .compress(payload, &mut self.scratch);
                c.deflate_nanos += t.elapsed().as_nanos() as u64;
                c.deflate_publish_compressions += 1;
                count(c, payload.len(), &r);
                r.ok().map(|_| {
                    let mut v = Vec::with_capacity(self.scratch.len() + MAX_HEADER_LEN);
                    write_frame(&mut v, 0x40, op, &self.scratch, None);
                    Bytes::from(v)
                })
            })
            .clone()?;
        if mark & DEDICATED != 0 {
            if let Some(d) = self.conns.get_mut(&slot).and_then(|d| d.send.as_mut()) {
                d.note_foreign(payload);
            }
        }
        Some(frame)
    }

    /// Before a read of the connection (`slot`, `mark`): the worker's inflater and, under client context
    /// takeover, the connection's window leave this struct for the read ([`ReadCodec`]), so that the handler's
    /// callbacks during the read can still compress sends. Give them back with [`WorkerDeflate::end_read`].
    pub(crate) fn begin_read(&mut self, slot: u32, mark: u8) -> ReadCodec {
        let history = match mark & DEDICATED {
            0 => None,
            _ => self.conns.get_mut(&slot).and_then(|d| d.recv.take()),
        };
        ReadCodec {
            inflater: self.inflater.take().unwrap_or_default(),
            history,
            tally: InflateTally::default(),
        }
    }

    /// After the read: take the inflater and the window back, count what was inflated.
    pub(crate) fn end_read(&mut self, slot: u32, rc: ReadCodec, c: &mut Counters) {
        let ReadCodec {
            mut inflater,
            history,
            tally,
        } = rc;
        inflater.trim();
        self.inflater = Some(inflater);
        if let (Some(h), Some(d)) = (history, self.conns.get_mut(&slot)) {
            d.recv = Some(h);
        }
        tally.add_to(c);
    }
}

/// The decompressor of one read (see [`WorkerDeflate::begin_read`]).
pub(crate) struct ReadCodec {
    inflater: Inflater,
    history: Option<InflateHistory>,
    tally: InflateTally,
}

impl ReadCodec {
    /// Run `f` with the decompressor: the inflater, primed with the connection's window if it has one. Counts
    /// inflated bytes, time and errors by kind.
    pub(crate) fn run<R>(&mut self, f: impl FnOnce(&mut dyn Decompressor) -> R) -> R {
        let tally = &mut self.tally;
        match self.history.as_mut() {
            Some(h) => f(&mut Counting {
                inner: &mut self.inflater.with_history(h),
                tally,
            }),
            None => f(&mut Counting {
                inner: &mut self.inflater,
                tally,
            }),
        }
    }
}

fn count(c: &mut Counters, len: usize, r: &Result<usize, Skip>) {
    match r {
        Ok(n) => {
            c.deflate_messages += 1;
            c.deflate_bytes_in += len as u64;
            c.deflate_bytes_out += *n as u64;
        }
        Err(_) => c.deflate_skipped_no_gain += 1,
    }
}

/// What one read inflated (added to the worker's counters once the read is done).
#[derive(Debug, Default)]
struct InflateTally {
    messages: u64,
    bytes_in: u64,
    bytes_out: u64,
    nanos: u64,
    error: Option<DecompressError>,
}

impl InflateTally {
    fn add_to(&self, c: &mut Counters) {
        c.inflate_messages += self.messages;
        c.inflate_bytes_in += self.bytes_in;
        c.inflate_bytes_out += self.bytes_out;
        c.deflate_nanos += self.nanos;
        match self.error {
            Some(DecompressError::TooBig) => c.inflate_too_big += 1,
            Some(DecompressError::Corrupt) => c.inflate_corrupt += 1,
            Some(DecompressError::InvalidUtf8) => c.inflate_bad_utf8 += 1,
            None => {}
        }
    }
}

struct Counting<'a> {
    inner: &'a mut dyn Decompressor,
    tally: &'a mut InflateTally,
}

impl Decompressor for Counting<'_> {
    fn decompress(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        let t = Instant::now();
        let r = self.inner.decompress(payload, text, max_len);
        self.tally.nanos += t.elapsed().as_nanos() as u64;
        match &r {
            Ok(out) => {
                self.tally.messages += 1;
                self.tally.bytes_in += payload.len() as u64;
                self.tally.bytes_out += out.len() as u64;
            }
            Err(e) => self.tally.error = Some(*e),
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deflate::negotiate;

    fn params(policy: Compression, offer: &str) -> DeflateParams {
        negotiate([offer], policy).unwrap().params
    }

    #[test]
    fn shared_connections_own_nothing_and_dedicated_ones_only_their_histories() {
        let mut w = WorkerDeflate::new(Compression::Shared, 64);
        let m = w.attach(1, &params(Compression::Shared, "permessage-deflate"));
        assert_eq!(m, 15);
        assert!(w.conns.is_empty());
        let policy = Compression::Dedicated { window_bits: 12 };
        let mut w = WorkerDeflate::new(policy, 64);
        let p = params(policy, "permessage-deflate; client_max_window_bits");
        let m = w.attach(7, &p);
        assert_eq!(m, 12 | DEDICATED);
        let d = &w.conns[&7];
        assert!(d.send.is_some() && d.recv.is_some());
        // The client asked the server to reset: no send state; the client's window is still kept.
        let p = params(policy, "permessage-deflate; server_no_context_takeover");
        assert_eq!(w.attach(8, &p) & DEDICATED, DEDICATED);
        assert!(w.conns[&8].send.is_none());
        w.detach(7);
        w.detach(8);
        assert!(w.conns.is_empty());
    }

    #[test]
    fn a_publish_is_compressed_once_per_class_and_counted() {
        let mut w = WorkerDeflate::new(Compression::Shared, 16);
        let mut c = Counters::default();
        let cache = Deflated::default();
        let payload = b"{\"event\":\"click\",\"user\":\"user_1\"} ".repeat(8);
        let a = w.publish_frame(&mut c, 1, 15, &cache, OpCode::Text, &payload);
        let b = w.publish_frame(&mut c, 2, 15, &cache, OpCode::Text, &payload);
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(a.as_ptr(), b.as_ptr(), "the same frame for the class");
        assert_eq!(a[0], 0x80 | 0x40 | 1, "FIN, RSV1, text");
        assert_eq!(c.deflate_publish_compressions, 1);
        let other = w.publish_frame(&mut c, 3, 10, &cache, OpCode::Text, &payload);
        assert!(other.is_some());
        assert_eq!(
            c.deflate_publish_compressions, 2,
            "one more for another class"
        );
        let small = Deflated::default();
        assert!(w
            .publish_frame(&mut c, 1, 15, &small, OpCode::Text, b"tiny")
            .is_none());
        assert_eq!(c.deflate_publish_compressions, 2, "under the threshold");
    }

    #[test]
    fn incompressible_and_short_messages_go_plain_and_are_counted() {
        let mut w = WorkerDeflate::new(Compression::Shared, 64);
        let mut c = Counters::default();
        assert!(w.compress(&mut c, 1, 15, b"short").is_none());
        assert_eq!(c.deflate_skipped_threshold, 1);
        let mut x: u32 = 12345;
        let noise: Vec<u8> = (0..512)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(w.compress(&mut c, 1, 15, &noise).is_none());
        assert_eq!(c.deflate_skipped_no_gain, 1);
        let text = b"hello hello hello hello hello hello hello hello hello hello hello hello";
        let z = w.compress(&mut c, 1, 15, text).unwrap().to_vec();
        assert!(z.len() < text.len());
        assert_eq!(c.deflate_messages, 1);
        assert_eq!(c.deflate_bytes_in, text.len() as u64);
        assert_eq!(c.deflate_bytes_out, z.len() as u64);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&z, true, 1 << 20).unwrap(), text);
    }
}

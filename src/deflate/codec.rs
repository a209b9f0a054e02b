//! Per-message compression and decompression (RFC 7692 section 7.2) on `zlib-rs` (see `perf/deflate-choice.md`).
//!
//! - [`Deflater`]: one raw-deflate stream. Shared mode: one per worker and window class, [`Deflater::reset`] before
//!   each message. [`Deflater::compress`] sync-flushes, strips the `00 00 ff ff` tail and gives up as soon as the
//!   output would not be smaller than the message ([`Skip::NoGain`]).
//! - [`DedicatedDeflater`]: server context takeover for one connection: a stream while the connection is active and
//!   the last `2^W` plaintext bytes it sent compressed (what the client's window holds), so [`DedicatedDeflater::compact`]
//!   can drop the stream when idle and a later message re-primes a new one with that history.
//! - [`Inflater`]: one per worker. Inflates a whole message at once (its compressed bytes are assembled first), with
//!   the output bounded by a limit checked while inflating ([`DecompressError::TooBig`] as soon as it is passed, the
//!   output buffer never larger than the limit plus one byte) and text checked as UTF-8 per output chunk.
//! - [`InflateHistory`]: client context takeover for one connection: only the last `2^W` bytes the client sent
//!   (the format's floor); the worker's [`Inflater`] is primed with them per message ([`Inflater::with_history`]),
//!   which costs a copy of the window, not a zlib state per connection.
//! - [`encode_message`]: a whole frame (RSV1 set when compressed, plain otherwise) for `send` and `publish`.

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateFlush, Status};

use crate::proto::{encode_header_rsv, MAX_HEADER_LEN};
use crate::proto::{DecompressError, Decompressor, OpCode};

/// zlib-rs level 2 (`deflate_fast`). Not level 1: zlib-rs 0.6.8's level 1 (`deflate_quick`) panics on an
/// `assert!` of its pending buffer when one call compresses ~64 KiB or more of incompressible bytes (a peer could
/// crash a worker with one large random message), and feeding it in smaller steps produced corrupt output; the test
/// `large_incompressible_messages_never_panic` guards the level used. Level 2 costs ~2x level 1 per 200 B message
/// (8.6 vs 4.1 µs with a reset, see PERF.md) and compresses JSON better.
pub const DEFAULT_LEVEL: u8 = 2;
/// Messages shorter than this are sent uncompressed: below it the RSV1 frame rarely saves a byte and a compression
/// costs more than sending the bytes.
pub const DEFAULT_THRESHOLD: usize = 64;
/// The dedicated mode's window when none is chosen: 4 KiB of history per direction and connection, most of the
/// ratio of a 32 KiB window on small JSON-like messages.
pub const DEFAULT_WINDOW_BITS: u8 = 12;
/// Output the inflater adds per step (the output buffer grows geometrically from here, never past the limit + 1).
const CHUNK: usize = 16 << 10;
/// Output capacity an [`Inflater`] keeps between messages; [`Inflater::trim`] releases anything larger.
const KEEP_CAPACITY: usize = 64 << 10;
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Why a message was sent uncompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Shorter than the threshold.
    Threshold,
    /// Compressing would not make it smaller.
    NoGain,
    /// The caller asked for this message to go uncompressed.
    OptOut,
}

/// One raw-deflate compressor.
pub struct Deflater {
    z: Deflate,
    window_bits: u8,
    level: u8,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .finish()
    }
}

impl Deflater {
    /// A compressor whose output fits a `window_bits` (8..=15) window; 8 builds a 9-bit compressor, whose matches
    /// never reach further than 250 bytes (see [`super::negotiate`]). `level` 0..=9.
    pub fn new(window_bits: u8, level: u8) -> Self {
        Self::with_mem_level(window_bits, level, 8)
    }

    /// [`Deflater::new`] with zlib's `memLevel` (1..=9): the symbol buffer holds `2^(mem_level + 6)` symbols, so a
    /// low one means small blocks (fine for small messages) and a smaller, cheaper stream.
    pub fn with_mem_level(window_bits: u8, level: u8, mem_level: u8) -> Self {
        let window_bits = window_bits.clamp(9, 15);
        let level = level.min(9);
        let z = Deflate::new_with_config(DeflateConfig {
            level: i32::from(level),
            window_bits: -i32::from(window_bits),
            mem_level: i32::from(mem_level.clamp(1, 9)),
            ..DeflateConfig::default()
        });
        Deflater {
            z,
            window_bits,
            level,
        }
    }

    /// The window this compressor was built with (9..=15).
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Start a new stream (no context): the next message refers to nothing before it.
    pub fn reset(&mut self) {
        self.z.reset();
    }

    /// Compress `msg` as the next message of the stream and append its payload (the sync-flushed deflate data
    /// without the `00 00 ff ff` tail) to `out`; returns the payload length. [`Skip::NoGain`] when the payload would
    /// not be shorter than `msg`: `out` is left as it was and the stream is mid-message, so it must be reset before
    /// its next use.
    pub fn compress(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<usize, Skip> {
        let start = out.len();
        // Room for the worst case (stored blocks and the sync flush), not just for a gain: zlib-rs 0.6.8 panics in
        // its stored-block path ("buf.len() must fit in remaining()") when incompressible input meets an output
        // buffer barely larger than the input (random 64 B messages did it; `tests/deflate_codec.rs`
        // `many_small_random_messages_through_the_shared_stream_never_panic`). Whether it gained is checked after.
        let room = msg.len() + (msg.len() >> 3) + (msg.len() >> 6) + 64;
        out.resize(start + room, 0);
        let in0 = self.z.total_in();
        let out0 = self.z.total_out();
        loop {
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            if produced == room {
                out.truncate(start);
                return Err(Skip::NoGain);
            }
            let r = self.z.compress(
                &msg[consumed..],
                &mut out[start + produced..],
                DeflateFlush::SyncFlush,
            );
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            match r {
                Ok(Status::Ok) | Ok(Status::BufError) | Ok(Status::StreamEnd) => {}
                Err(_) => {
                    out.truncate(start);
                    return Err(Skip::NoGain);
                }
            }
            if consumed == msg.len() && produced < room {
                // All input taken and output space left: the sync flush is complete.
                let end = start + produced;
                if produced < 4 || out[end - 4..end] != TAIL {
                    out.truncate(start);
                    return Err(Skip::NoGain);
                }
                let len = produced - 4;
                if len >= msg.len() {
                    out.truncate(start);
                    return Err(Skip::NoGain);
                }
                out.truncate(start + len);
                return Ok(len);
            }
        }
    }
}

/// Messages up to this size go through [`SharedDeflater`]'s small-message stream.
pub const SMALL_MESSAGE: usize = 8 << 10;

/// Shared mode's compressor for one window class: every message with a fresh context (no context takeover), from
/// one of two streams chosen by size. Messages up to [`SMALL_MESSAGE`] use `memLevel` 4 (1,024-symbol blocks): its
/// smaller symbol buffer makes each reset-and-compress ~1.3 µs (15%) cheaper than `memLevel` 8 at 200 B-4 KiB with
/// the same ratio; larger ones use 8, whose longer blocks are faster and smaller at 16 KiB (`perf/deflate-choice.md`).
/// Each stream is made on first use.
#[derive(Debug)]
pub struct SharedDeflater {
    small: Option<Box<Deflater>>,
    large: Option<Box<Deflater>>,
    window_bits: u8,
    level: u8,
}

impl SharedDeflater {
    /// For a `window_bits` (9..=15) class at `level`.
    pub fn new(window_bits: u8, level: u8) -> Self {
        SharedDeflater {
            small: None,
            large: None,
            window_bits,
            level,
        }
    }

    /// Compress `msg` as a message of its own (a fresh context) and append its payload to `out`, as
    /// [`Deflater::compress`].
    pub fn compress(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<usize, Skip> {
        let (w, l) = (self.window_bits, self.level);
        let d = if msg.len() <= SMALL_MESSAGE {
            self.small
                .get_or_insert_with(|| Box::new(Deflater::with_mem_level(w, l, 4)))
        } else {
            self.large
                .get_or_insert_with(|| Box::new(Deflater::with_mem_level(w, l, 8)))
        };
        d.reset();
        d.compress(msg, out)
    }
}

/// How [`encode_message`] compresses.
pub enum Compressor<'a> {
    /// A stream shared by many connections: reset before the message (no context takeover).
    Shared(&'a mut Deflater),
    /// One connection's context.
    Dedicated(&'a mut DedicatedDeflater),
}

/// Append one whole frame carrying `msg` (`opcode` Text or Binary; `mask` for client frames) to `out`: compressed with
/// RSV1 set when it is at least `threshold` bytes and compression gains, else plain. Returns the payload length of
/// the compressed frame, or why it went plain.
pub fn encode_message(
    out: &mut Vec<u8>,
    opcode: OpCode,
    msg: &[u8],
    mask: Option<[u8; 4]>,
    threshold: usize,
    compressor: Compressor<'_>,
    scratch: &mut Vec<u8>,
) -> Result<usize, Skip> {
    let r = if msg.len() < threshold {
        Err(Skip::Threshold)
    } else {
        scratch.clear();
        match compressor {
            Compressor::Shared(d) => {
                d.reset();
                d.compress(msg, scratch)
            }
            Compressor::Dedicated(d) => d.compress(msg, scratch),
        }
    };
    let (rsv, payload) = match r {
        Ok(_) => (0x40, &scratch[..]),
        Err(_) => (0, msg),
    };
    write_frame(out, rsv, opcode, payload, mask);
    r
}

/// Append a whole frame with the given RSV bits (masked with `mask` for client frames).
pub fn write_frame(
    out: &mut Vec<u8>,
    rsv: u8,
    opcode: OpCode,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header_rsv(&mut h, true, rsv, opcode, payload.len() as u64, mask);
    out.reserve(n + payload.len());
    out.extend_from_slice(&h[..n]);
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        crate::mask::apply_mask(key, 0, &mut out[start..]);
    }
}

/// Keep the last `window` bytes of everything appended (the LZ77 history a peer's decompressor holds).
#[derive(Debug, Default, Clone)]
pub struct History {
    buf: Vec<u8>,
    window: usize,
}

impl History {
    /// An empty history keeping the last `2^window_bits` bytes (8..=15).
    pub fn new(window_bits: u8) -> Self {
        History {
            buf: Vec::new(),
            window: 1 << window_bits.clamp(8, 15),
        }
    }

    /// Append `data`, keeping only the last `2^W` bytes.
    pub fn push(&mut self, data: &[u8]) {
        if self.buf.capacity() < self.window {
            // One exact allocation: the history never holds more than the window.
            self.buf.reserve_exact(self.window - self.buf.len());
        }
        if data.len() >= self.window {
            self.buf.clear();
            self.buf
                .extend_from_slice(&data[data.len() - self.window..]);
            return;
        }
        let excess = (self.buf.len() + data.len()).saturating_sub(self.window);
        if excess > 0 {
            self.buf.drain(..excess);
        }
        self.buf.extend_from_slice(data);
    }

    /// The kept bytes, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

/// Server context takeover for one connection (see the module docs).
#[derive(Debug)]
pub struct DedicatedDeflater {
    stream: Option<Box<Deflater>>,
    history: History,
    window_bits: u8,
    level: u8,
    /// The stream no longer matches the peer's window (a skipped message left it mid-message, or a frame compressed
    /// elsewhere reached the peer): rebuild it from `history` before the next message.
    stale: bool,
}

impl DedicatedDeflater {
    /// A connection's compressor with server context takeover over a `window_bits` window; no stream until used.
    pub fn new(window_bits: u8, level: u8) -> Self {
        let window_bits = window_bits.clamp(8, 15);
        DedicatedDeflater {
            stream: None,
            history: History::new(window_bits),
            window_bits,
            level,
            stale: false,
        }
    }

    /// Compress the next message with context takeover (appends the payload to `out`; see [`Deflater::compress`]).
    pub fn compress(&mut self, msg: &[u8], out: &mut Vec<u8>) -> Result<usize, Skip> {
        let (window_bits, level) = (self.window_bits, self.level);
        let stream = self
            .stream
            .get_or_insert_with(|| Box::new(Deflater::new(window_bits, level)));
        if self.stale {
            stream.reset();
            if !self.history.as_slice().is_empty() {
                let _ = stream.z.set_dictionary(self.history.as_slice());
            }
            self.stale = false;
        }
        match stream.compress(msg, out) {
            Ok(n) => {
                self.history.push(msg);
                Ok(n)
            }
            Err(e) => {
                self.stale = true;
                Err(e)
            }
        }
    }

    /// A message compressed without context elsewhere (a shared broadcast frame) was queued to this peer: its
    /// plaintext is now in the peer's window, so it joins the history and the stream is rebuilt on the next message.
    pub fn note_foreign(&mut self, plaintext: &[u8]) {
        self.history.push(plaintext);
        self.stale = true;
    }

    /// Release the stream (the connection is idle); only the window history stays. The next message builds and
    /// primes a new stream (costs a reset and hashing the history).
    pub fn compact(&mut self) {
        if self.stream.take().is_some() {
            self.stale = true;
        }
    }

    /// Heap bytes held by the history (the zlib-rs stream, while present, holds 250-380 KiB more: see PERF.md).
    pub fn history_bytes(&self) -> usize {
        self.history.heap_bytes()
    }

    /// Whether the zlib stream is live (dropped by [`DedicatedDeflater::compact`]).
    pub fn has_stream(&self) -> bool {
        self.stream.is_some()
    }
}

/// The worker's inflater: one stream, reset per message, with a reusable output buffer.
pub struct Inflater {
    z: Inflate,
    out: Vec<u8>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("out_capacity", &self.out.capacity())
            .finish()
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    /// A raw inflater with a 15-bit window (it inflates data compressed with any window).
    pub fn new() -> Self {
        Inflater {
            z: Inflate::new(false, 15),
            out: Vec::new(),
        }
    }

    /// Inflate one message without context (the tail is appended here). Output at most `max_len` bytes; `text`
    /// checks each output chunk as UTF-8 so bad text fails before the whole message is inflated.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        self.z.reset(false);
        self.run(payload, text, max_len)
    }

    /// A [`Decompressor`] for one connection with client context takeover: primes this stream with `history`,
    /// inflates, then adds the output to `history`.
    pub fn with_history<'a>(&'a mut self, history: &'a mut InflateHistory) -> Primed<'a> {
        Primed {
            inflater: self,
            history,
        }
    }

    /// Release a large output buffer (call when the last message's event is done).
    pub fn trim(&mut self) {
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
    }

    /// Output buffer capacity (memory bound tests and metrics).
    pub fn out_capacity(&self) -> usize {
        self.out.capacity()
    }

    fn run(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        let cap = max_len.saturating_add(1);
        let mut len = 0usize;
        // UTF-8: bytes before `checked` are valid; `checked..len` is at most an incomplete sequence.
        let mut checked = 0usize;
        let mut ended = false;
        for (i, part) in [payload, &TAIL[..]].into_iter().enumerate() {
            let mut input = part;
            while !ended {
                if len == self.out.len() {
                    if len >= cap {
                        return Err(DecompressError::TooBig);
                    }
                    let grow = self.out.len().max(CHUNK);
                    let new_len = len.saturating_add(grow).min(cap);
                    // Exact growth: the buffer never holds more than the limit + 1 bytes.
                    self.out.reserve_exact(new_len - len);
                    self.out.resize(new_len, 0);
                }
                let in0 = self.z.total_in();
                let out0 = self.z.total_out();
                let r = self
                    .z
                    .decompress(input, &mut self.out[len..], InflateFlush::SyncFlush);
                let consumed = (self.z.total_in() - in0) as usize;
                let produced = (self.z.total_out() - out0) as usize;
                input = &input[consumed..];
                len += produced;
                match r {
                    Ok(Status::StreamEnd) => ended = true,
                    Ok(Status::Ok) | Ok(Status::BufError) => {}
                    Err(_) => return Err(DecompressError::Corrupt),
                }
                if len > max_len {
                    return Err(DecompressError::TooBig);
                }
                if text && len > checked {
                    checked = check_utf8(&self.out[..len], checked)?;
                }
                if input.is_empty() && len < self.out.len() {
                    break;
                }
                if consumed == 0 && produced == 0 && len < self.out.len() {
                    // No progress with input and room left: the stream wants something it cannot have.
                    return Err(DecompressError::Corrupt);
                }
            }
            // A final block (BFINAL) may end the stream; anything but the tail after it is not deflate data.
            if ended && i == 0 && !input.is_empty() {
                return Err(DecompressError::Corrupt);
            }
        }
        Ok(&self.out[..len])
    }
}

/// Check `buf[from..]` as UTF-8, allowing an incomplete sequence at the end; returns the new valid prefix length.
fn check_utf8(buf: &[u8], from: usize) -> Result<usize, DecompressError> {
    match simdutf8::compat::from_utf8(&buf[from..]) {
        Ok(_) => Ok(buf.len()),
        Err(e) if e.error_len().is_some() => Err(DecompressError::InvalidUtf8),
        Err(e) => Ok(from + e.valid_up_to()),
    }
}

impl Decompressor for Inflater {
    fn decompress(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        self.inflate(payload, text, max_len)
    }
}

/// Client context takeover for one connection: the last `2^W` bytes of the client's messages, nothing else.
#[derive(Debug, Default, Clone)]
pub struct InflateHistory(History);

impl InflateHistory {
    /// `window_bits`: the agreed `client_max_window_bits`.
    pub fn new(window_bits: u8) -> Self {
        InflateHistory(History::new(window_bits))
    }

    /// Heap bytes held (capacity), for the memory tests.
    pub fn heap_bytes(&self) -> usize {
        self.0.heap_bytes()
    }
}

/// The worker's [`Inflater`] primed with one connection's [`InflateHistory`].
pub struct Primed<'a> {
    inflater: &'a mut Inflater,
    history: &'a mut InflateHistory,
}

impl Decompressor for Primed<'_> {
    fn decompress(
        &mut self,
        payload: &[u8],
        text: bool,
        max_len: usize,
    ) -> Result<&[u8], DecompressError> {
        let inf = &mut *self.inflater;
        inf.z.reset(false);
        if !self.history.0.as_slice().is_empty()
            && inf.z.set_dictionary(self.history.0.as_slice()).is_err()
        {
            return Err(DecompressError::Corrupt);
        }
        let out = inf.run(payload, text, max_len)?;
        self.history.0.push(out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(n: usize, seed: u64) -> Vec<u8> {
        let mut s = String::new();
        let mut x = seed;
        while s.len() < n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (x >> 33) as usize;
            s.push_str(&format!(
                "{{\"id\":{},\"user\":\"u{}\",\"ok\":{}}},",
                r % 100_000,
                r % 977,
                r.is_multiple_of(2)
            ));
        }
        s.truncate(n);
        s.into_bytes()
    }

    #[test]
    fn round_trip_shared() {
        let mut d = Deflater::new(15, DEFAULT_LEVEL);
        let mut inf = Inflater::new();
        for (i, n) in [64usize, 200, 1000, 16 << 10, 100_000]
            .into_iter()
            .enumerate()
        {
            let msg = json(n, i as u64);
            let mut out = Vec::new();
            d.reset();
            let len = d.compress(&msg, &mut out).expect("compressible");
            assert_eq!(len, out.len());
            assert!(len < msg.len());
            assert_eq!(inf.inflate(&out, true, msg.len()).unwrap(), &msg[..]);
        }
    }

    #[test]
    fn incompressible_is_skipped_and_out_untouched() {
        let mut x = 1u32;
        let msg: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        let mut d = Deflater::new(15, DEFAULT_LEVEL);
        let mut out = vec![7u8; 3];
        assert_eq!(d.compress(&msg, &mut out), Err(Skip::NoGain));
        assert_eq!(out, [7, 7, 7]);
    }

    #[test]
    fn limit_is_exact() {
        let msg = json(10_000, 3);
        let mut d = Deflater::new(15, DEFAULT_LEVEL);
        let mut z = Vec::new();
        d.compress(&msg, &mut z).unwrap();
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&z, false, 10_000).unwrap().len(), 10_000);
        let mut inf = Inflater::new();
        assert_eq!(inf.inflate(&z, false, 9_999), Err(DecompressError::TooBig));
        assert!(inf.out_capacity() <= 10_000, "{}", inf.out_capacity());
    }

    #[test]
    fn history_keeps_the_window() {
        let mut h = History::new(8);
        h.push(&[1; 200]);
        h.push(&[2; 100]);
        assert_eq!(h.as_slice().len(), 256);
        assert_eq!(&h.as_slice()[..156], &[1; 156][..]);
        assert_eq!(&h.as_slice()[156..], &[2; 100][..]);
        h.push(&[3; 1000]);
        assert_eq!(h.as_slice(), &[3; 256][..]);
    }
}

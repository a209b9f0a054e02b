//! permessage-deflate (RFC 7692), sans-IO: negotiation and per-message codecs. The server wires it in; the core
//! ([`crate::proto`]) only learns RSV1 and calls a [`crate::proto::Decompressor`] the caller supplies.
//!
//! - [`negotiate`]: parse `Sec-WebSocket-Extensions` offers, answer them for a [`Compression`] policy, and the client
//!   side (offer, validate the response).
//! - [`codec`]: [`Deflater`] / [`DedicatedDeflater`] for sending, [`Inflater`] / [`InflateHistory`] for receiving,
//!   [`encode_message`] for whole frames.
//!
//! # Where the state lives, and why (memory against attackers)
//! A zlib-family stream is big: zlib-rs 0.6 holds 250-380 KiB per compressor and 47 KiB per inflater (measured, see
//! `perf/deflate-choice.md`), so a state per connection is what made Node `ws` reach 2.9 GB with 30k concurrent
//! inflates. Here no connection ever owns a zlib stream on the receive side, and none owns one on the send side in
//! shared mode:
//!
//! - **Receiving, any mode.** A compressed message is inflated once, whole, when its last frame arrives, by the
//!   worker's one [`Inflater`]. While a fragmented message is in flight the connection holds only its compressed
//!   bytes (in the core's reassembly buffer, bounded by `max_message_size`: the attacker has to send every one of
//!   them), never an inflate state; 30k connections each in the middle of a compressed message cost their compressed
//!   bytes, not 30k inflaters. The inflated size is checked while inflating, so a bomb stops at `max_message_size`
//!   plus one output byte, and the output buffer never grows past that (it is one per worker, released by
//!   [`Inflater::trim`] when large). Text is checked as UTF-8 per output chunk (bad text fails before the rest is
//!   inflated), then once more whole by the core before delivery.
//! - **Client context takeover** (dedicated mode): the format requires keeping the last `2^W` bytes the client sent
//!   (W = the agreed `client_max_window_bits`); [`InflateHistory`] keeps exactly that and nothing else, and the
//!   worker's inflater is primed with it per message (a copy of at most 32 KiB; inflate's dictionary is a plain copy).
//! - **Sending, shared mode**: one [`SharedDeflater`] per worker and window class (9..=15), a fresh context for each
//!   message (two reset-per-message [`Deflater`]s: `memLevel` 4 up to [`codec::SMALL_MESSAGE`], 8 above). An idle
//!   connection holds nothing at all.
//! - **Sending, dedicated mode**: [`DedicatedDeflater`] keeps a stream while the connection is active (fast: no reset,
//!   context takeover) plus the last `2^W` bytes it sent compressed; [`DedicatedDeflater::compact`] drops the stream
//!   of an idle connection, leaving only that history, the floor the format allows.
//!
//! # Broadcasts
//! A publish is compressed once per window class with no context (the worker's [`SharedDeflater`]) on the publishing worker, and
//! the same frame goes to every subscriber of that class. Such a frame is valid for any connection of the class,
//! including one with server context takeover: it refers to nothing before it, and the client appends its plaintext
//! to its window as usual. The connection's own stream, however, has not seen that plaintext, so
//! [`DedicatedDeflater::note_foreign`] adds it to the history and marks the stream stale; the next direct message
//! rebuilds the stream from the history (a reset plus hashing at most `2^W` bytes, once per run of broadcasts, not
//! per broadcast). Compressing each publish per subscriber, the only other correct choice, costs CPU per subscriber.
//!
//! # Not compressed
//! Control frames never; messages under the threshold ([`DEFAULT_THRESHOLD`]); messages whose compressed form would
//! not be smaller (the compressor stops as soon as its output reaches the message's size).

pub mod codec;
pub mod negotiate;

pub use codec::{
    encode_message, Compressor, DedicatedDeflater, Deflater, InflateHistory, Inflater,
    SharedDeflater, Skip, DEFAULT_LEVEL, DEFAULT_THRESHOLD, DEFAULT_WINDOW_BITS,
};
pub use negotiate::{negotiate, Compression, DeflateParams, Negotiated};

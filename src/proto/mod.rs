//! The sans-IO RFC 6455 core: bytes in, events and bytes out, time passed in. Never touches a socket or a clock.
//!
//! - `frame`: the frame header codec (decode is resumable; encode writes into caller buffers); its functions are
//!   re-exported here ([`decode_header`], [`encode_header`], [`write_frame`], [`write_client_frame`]).
//! - [`connection`]: per-connection state machine: message assembly, UTF-8, control frames, close handshake, limits.
//! - [`compression`]: the [`Decompressor`] seam for messages with RSV1 set (permessage-deflate, in `crate::deflate`).
//!
//! Call order per read (see [`Connection`]): `handle_read(input, on_event)` -> `poll_transmit(out)` ->
//! `poll_timeout()`; `handle_timeout(now)` when the deadline passes. Shut the transport down once `state()` is
//! [`State::Closed`] and `poll_transmit` is drained.
//!
//! Cost model: a whole unfragmented frame inside `input` is unmasked in place and handed out without a copy; only
//! frames split over reads and fragmented messages are copied into the connection's reassembly buffer, which is
//! released whenever a read leaves no partial message (an idle connection owns no heap memory).
//! `size_of::<Connection>()` is 96 bytes.

pub mod compression;
pub mod connection;
mod frame;

pub use compression::{DecompressError, Decompressor};
pub use connection::{
    is_valid_close_code, CloseCode, Connection, Event, Limits, ProtocolError, Role, State,
};
pub use frame::{
    decode_header, encode_header, encode_header_rsv, write_client_frame, write_frame, FrameHeader,
    HeaderError, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN,
};

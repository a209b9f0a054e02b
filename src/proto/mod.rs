//! The sans-IO RFC 6455 core: bytes in, events and bytes out, time passed in. Never touches a socket or a clock.
//!
//! - [`frame`]: frame header codec (decode is resumable; encode writes into caller buffers).
//! - [`connection`]: per-connection state machine: message assembly, UTF-8, control frames, close handshake, limits.

pub mod connection;
pub mod frame;

pub use connection::{
    is_valid_close_code, CloseCode, Connection, Event, Limits, ProtocolError, Role, State,
};
pub use frame::{OpCode, MAX_HEADER_LEN};

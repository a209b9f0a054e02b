//! ringws: a Linux WebSocket server and library on io_uring.
//!
//! Layout (each concern in one place):
//! - [`mask`]: the XOR unmask kernel (scalar reference, word-wise, SSE2/AVX2/AVX-512, runtime dispatch).
//! - [`handshake`]: HTTP/1.1 upgrade parsing and responses (server) and the client handshake (for `loadtest`).
//! - [`proto`]: the sans-IO RFC 6455 core: frame codec, message assembly, UTF-8, close state machine, limits.
//! - [`bufring`]: an io_uring provided-buffer ring (receive buffers shared by all connections of a reactor).
//! - [`server`]: the thread-per-core io_uring runtime, handler API, pub/sub and the HTTP side.

pub mod app;
pub mod bufring;
pub mod deflate;
pub mod handshake;
pub mod mask;
pub mod proto;
pub mod server;

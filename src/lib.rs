//! ringws: a Linux WebSocket server and library on io_uring.
//!
//! Layout (each concern in one place):
//! - [`server`]: the thread-per-core io_uring server: [`server::Config`], the [`server::Handler`] API, pub/sub.
//! - [`proto`]: the sans-IO RFC 6455 core: frame codec, message assembly, UTF-8, close state machine, limits.
//! - [`deflate`]: permessage-deflate (RFC 7692), sans-IO: negotiation and per-message codecs on zlib-rs.
//! - [`door`]: what a connection passes before its `101`: Origin allowlist, JWT at upgrade, per-address limits.
//! - [`handshake`]: HTTP/1.1 upgrade parsing and responses (server) and the client handshake (for `loadtest`).
//! - [`tls`]: the sans-IO TLS layer (rustls, unbuffered API): certificates, reload, one session per connection.
//! - [`broker`]: pub/sub across nodes through Redis (one bridge thread per process, never in a worker's way; cargo
//!   feature `redis`, on by default).
//! - [`mask`]: the XOR unmask kernel (scalar reference, word-wise, SSE2/AVX2/AVX-512, runtime dispatch).
//! - `uring`: the io_uring driver, the only code that talks to the kernel's ring (public with the `internals`
//!   feature, for the load client).
//!
//! The demo application (page, echo, chat) is the `ringws` binary's, in `src/bin/ringws/`, written against this
//! public API only.
#![warn(unreachable_pub, missing_docs)]

pub mod broker;
pub mod deflate;
pub mod door;
pub mod handshake;
pub mod mask;
pub mod proto;
pub mod server;
pub mod tls;
#[cfg(feature = "internals")]
pub mod uring;
#[cfg(not(feature = "internals"))]
#[allow(dead_code, unreachable_pub, unused_imports)]
mod uring;

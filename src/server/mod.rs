//! The thread-per-core io_uring server: the handler API, the workers, pub/sub and the HTTP side.
//!
//! Where each concern lives:
//! - [`config`]: the one config struct, its documented defaults and validation.
//! - [`handler`]: the application API (`Handler`, `WebSocket`, `Message`, `Upgrade`, `Response`, `ServerContext`).
//! - `runtime`: `Server::start` (listeners, pinned worker threads) and the `ServerHandle` (shutdown, join).
//! - `worker/`: one pinned thread per core and the only server code that knows io_uring: its loop and ring glue
//!   (`mod.rs`, `io.rs`), connection lifecycle (`lifecycle.rs`), the HTTP phase (`http.rs`), the WebSocket session
//!   (`session.rs`), timers (`timers.rs`); a connection's state is `conn.rs`.
//! - `pubsub`: topics, the cross-worker hub and mailboxes, subscriber counts — the one owner of pub/sub.
//! - `backpressure`: the water marks (admit, pause, drain) — the one owner of that policy.
//! - `compress`: permessage-deflate in the server: the worker's codecs, the one-byte mark per connection, a
//!   publish compressed once per window class.
//! - `outbound`: a connection's bounded outbound queue and the send buffer pool.
//! - `error`: `StartError`. `local`: the worker state handler callbacks reach; `shared`: what all workers share; `id`: `ConnId`;
//!   `stats`: counters and the Prometheus exposition.
//!
//! Dependencies point one way: `runtime -> worker -> {handler, local, pubsub, outbound, backpressure} -> {shared,
//! stats, id, config}`; nothing below reaches up.

mod backpressure;
mod compress;
pub mod config;
mod error;
pub mod handler;
mod id;
mod local;
mod outbound;
mod pubsub;
mod runtime;
mod shared;
mod stats;
mod worker;

pub use config::{Compression, Config, ConfigError, SlowConsumerPolicy};
pub use error::StartError;
pub use handler::{
    encode_frame, ConnId, Handler, Message, Response, ServerContext, StatsSnapshot, Upgrade,
    UpgradeRequest, WebSocket,
};
pub use outbound::SendStatus;
pub use runtime::{Server, ServerHandle};

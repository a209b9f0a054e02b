//! Pub/sub across nodes through Redis: one bridge thread per process, never in a worker's way.
//!
//! ```text
//!  workers --want/unwant--> Interest (mutex, touched on topic creation/removal only) --Notify--+
//!  workers --publish------> bounded queue (full: dropped, counted) ----------------------------+--> bridge thread
//!                                                                                                 (tokio current_thread,
//!  workers <--mailboxes-- server's Sink::deliver(topic, payload, is_text) <-- bounded inbound <--  redis crate, RESP3)
//! ```
//!
//! - A node subscribes channel `{prefix}{topic}` only while some worker wants the topic, and unsubscribes after
//!   [`BrokerConfig::linger`] (default 2 s) so flapping clients do not churn Redis.
//! - Each local publish is sent once, in an envelope ([`envelope`]) with this node's origin id and a per-topic
//!   sequence; a node's own publishes coming back are recognised by origin and not delivered again, and a gap in a
//!   publisher's sequence is counted as loss ([`BrokerSnapshot::lost`]). Order per topic per publisher is Redis's
//!   order on one connection, kept by one pipeline at a time.
//! - Faults: Redis down at start or later, the bridge retries with exponential backoff and jitter
//!   ([`BackoffPolicy`]); [`Bridge::health`] is not [`Health::Up`] meanwhile. On reconnect it re-subscribes the
//!   whole wanted set in batches. Publishes during an outage are **dropped and counted** (`drop_disconnected`),
//!   not buffered: pub/sub is live data, and replaying stale messages after a reconnect, behind newer local ones,
//!   would break the order subscribers see. A subscriber connection that is open but deaf is caught by a probe
//!   published to the node's own probe channel every [`BrokerConfig::probe_interval`]; if it is not back within
//!   [`BrokerConfig::probe_timeout`] the session is rebuilt.
//!
//! The seam is narrow on purpose: the bridge knows topics, payloads and a [`Sink`]; nothing about the reactor.
//!
//! The bridge needs the `redis` cargo feature (on by default), which brings in the `redis` crate and tokio. Without
//! it, this module keeps its settings, counters and the envelope format (so `Config::broker` still exists), but
//! [`BrokerConfig::validate`] refuses every configuration and there is no `Bridge`.

#[cfg(not(feature = "redis"))]
mod absent;
mod backoff;
#[cfg(feature = "redis")]
mod bridge;
mod config;
pub mod envelope;
#[cfg(feature = "redis")]
mod handle;
#[cfg(feature = "redis")]
mod interest;
#[cfg(feature = "redis")]
mod seq;
#[cfg(feature = "redis")]
mod shared;
mod stats;

use std::fmt;

use bytes::Bytes;

pub use backoff::BackoffPolicy;
pub use config::{BrokerConfig, BrokerConfigError};
#[cfg(feature = "redis")]
pub use handle::Bridge;
pub use stats::{BrokerSnapshot, BrokerStats};

/// What the server holds for its bridge: [`Bridge`], or, in a build without the `redis` feature, a type with no
/// values (a `Config` with `broker` set never validates there).
#[cfg(not(feature = "redis"))]
pub(crate) use absent::Bridge;

/// Where remote publishes go: the server implements it by framing the payload once and handing the frame to the
/// workers that have subscribers for `topic` (through their bounded mailboxes).
///
/// Called on the bridge thread, once per remote publish, in Redis order. It must not block: anything slow here
/// delays every later remote message (the inbound queue then fills and drops, counted).
pub trait Sink: Send + Sync + 'static {
    /// `payload` is the message as published on the other node (unframed); `is_text` means it is valid UTF-8.
    /// Returns how many local queues were full and dropped it (counted as `drop_local_full`).
    fn deliver(&self, topic: &str, payload: Bytes, is_text: bool) -> usize;
}

/// The bridge's view of Redis, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The first connection attempt has not finished yet.
    Connecting,
    /// Connected, subscriptions in place.
    Up,
    /// Not connected; retrying with backoff. Local pub/sub works, other nodes are not reached.
    Down,
}

impl Health {
    /// `connecting`, `up` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Connecting => "connecting",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// Why the bridge did not start.
#[derive(Debug)]
pub enum BrokerError {
    /// The settings were refused.
    Config(BrokerConfigError),
    /// The runtime or the thread could not be created.
    Io(std::io::Error),
}

impl fmt::Display for BrokerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerError::Config(e) => e.fmt(f),
            BrokerError::Io(e) => write!(f, "starting the broker thread: {e}"),
        }
    }
}

impl std::error::Error for BrokerError {}

//! Server configuration: one struct, validated once, with documented defaults.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::broker::BrokerConfig;
pub use crate::deflate::Compression;
use crate::door::DoorConfig;
use crate::tls::TlsFiles;

/// What happens to a subscriber whose outbound buffer is over `max_backpressure` when a publish reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowConsumerPolicy {
    /// Skip this message for this subscriber (counted in `ringws_dropped_messages_total`).
    Drop,
    /// Close the subscriber with 1008 (policy violation).
    Close,
}

/// Server configuration. Construct with `Config::default()` and set fields; `Server::new` validates it.
///
/// Memory per connection is what the defaults below cost: an idle WebSocket holds no receive buffer (they
/// come from a shared per-worker pool) and no send buffer (taken from a per-worker free list when needed).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Address to listen on. Default `127.0.0.1:1338`. Port 0 picks a free port (all workers share it).
    pub bind: SocketAddr,
    /// Worker threads, one per core, each pinned and with its own ring and listener. Default: available cores.
    pub workers: usize,
    /// Pin worker `i` to core `i % cores`. Default true.
    pub pin_workers: bool,
    /// Maximum open WebSocket connections per worker; an upgrade beyond it gets `503`. Default 100_000.
    pub max_connections_per_worker: usize,
    /// Largest message (all fragments together); larger ones close the connection with 1009. Default 16 MiB.
    pub max_message_size: usize,
    /// Largest single frame payload; larger ones close with 1009. Default 16 MiB.
    pub max_frame_size: usize,
    /// Bytes a connection may have queued for sending. Past half of it the server stops reading from that
    /// connection (paused, not buffered without bound); a `send` that would exceed it is `Dropped`; `drain` fires
    /// when it falls below a quarter. A single message larger than this is still accepted into an empty queue.
    /// Bytes already received when reading pauses wait and are processed on resume, so an echo never drops a
    /// message while half of this leaves room for one receive buffer's echoes (`recv_buffer_size` plus the largest
    /// message). Default 1 MiB.
    pub max_backpressure: usize,
    /// What a publish does to a subscriber over `max_backpressure`. Default `Drop`.
    pub slow_consumer: SlowConsumerPolicy,
    /// Largest HTTP request head; larger gets `431`. Default 8 KiB.
    pub max_request_size: usize,
    /// Time allowed for the HTTP request head to arrive (slowloris guard; checked once a second). Default 10 s.
    pub handshake_timeout: Duration,
    /// A WebSocket silent for half of this gets a ping; silent for all of it (no pong, no data), it is closed with
    /// 1001. Zero disables. Checked once a second (whole seconds). Default 60 s.
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close frame after sending ours. Default 5 s.
    pub close_timeout: Duration,
    /// A connection whose queued bytes make no progress for this long is dropped. Default 30 s.
    pub send_stall_timeout: Duration,
    /// On shutdown, how long to wait for connections to finish the close handshake. Default 5 s.
    pub drain_timeout: Duration,
    /// listen(2) backlog per worker. Default 4096.
    pub backlog: u32,
    /// Receive buffers in each worker's provided-buffer ring (power of two). Default 64. A worker starts by giving
    /// the kernel 8 of them and doubles that whenever a receive runs out (`ringws_recv_buffers_provided`), so the
    /// memory of buffers it never needs is never touched; a few seconds after a burst it takes the buffers the load
    /// no longer needs out again as they come back from the kernel, and gives their memory back (a worker that
    /// goes quiet right after a burst keeps at most this ring's memory, `recv_buffers` x `recv_buffer_size`).
    pub recv_buffers: u16,
    /// Size of each receive buffer (consumed incrementally where the kernel supports it). Default 64 KiB.
    pub recv_buffer_size: u32,
    /// Submission queue entries per ring (power of two). Default 4096.
    pub ring_entries: u32,
    /// Bounded queue length for publishes from other workers (a full queue drops the publish for that worker and
    /// counts it in `ringws_cross_worker_dropped_total`). Its slots are allocated and touched up front: about 56
    /// bytes each per worker (4096: ~230 KiB). A worker drains its queue every loop turn. Default 4096.
    pub cross_worker_queue: usize,
    /// Pub/sub across nodes through Redis (`BrokerConfig::new("redis://HOST:PORT/DB")`; its limits are documented
    /// there). Default `None`: topics stay within this process. With it, one bridge thread per server subscribes
    /// the channels of the topics this node has subscribers for; Redis being down is not a start error (the
    /// server serves locally, reports `degraded`, and keeps retrying). Needs the `redis` cargo feature (on by
    /// default; it compiles the `redis` crate and tokio): in a build without it, `Some` is refused by validation
    /// (`broker: this build has no Redis support ...`).
    pub broker: Option<BrokerConfig>,
    /// What a connection must pass before its `101` (see [`crate::door`]): the `Origin` allowlist (default: the
    /// page's own origin, and clients that send no `Origin`), token authentication (default off), per-address
    /// connection and rate limits (default off; one table for the whole process, about 64 bytes per tracked
    /// address, at most `per_ip.max_tracked` of them). Strict HTTP/1.1 framing is always on. A connection the door
    /// let in with a token or a per-address slot has an entry in its worker's side table (the connection slot
    /// itself does not grow); otherwise nothing.
    pub door: DoorConfig,
    /// Serve TLS (https and wss) on the listener with this PEM certificate chain and key; `None` serves plain
    /// http/ws. Loaded when the server is built (a bad file is a `StartError::Tls` naming it); reload with
    /// `ServerHandle::tls()`. TLS 1.3 and 1.2, ALPN `http/1.1`, session resumption (tickets and a cache of 1024
    /// TLS 1.2 sessions). An idle TLS connection holds no buffer: ~0.9 KiB of state for TLS 1.3, ~3.4 KiB for TLS 1.2
    /// (perf/tls-choice.md).
    /// The handshake timeout covers the TLS handshake. Default `None`.
    pub tls: Option<TlsFiles>,
    /// TLS handshakes a worker runs at once (CPU protection: a full handshake costs a signature); connections
    /// accepted beyond it are closed and counted (`ringws_tls_handshakes_capped_total`). Default 256.
    pub max_tls_handshakes_per_worker: usize,
    /// permessage-deflate (RFC 7692), negotiated with clients that offer it (browsers always do). `Shared` (the
    /// default): no context takeover either way, so a connection holds no compression state at all, the worker's
    /// streams do the work. `Dedicated { window_bits }`: context takeover (better ratios on repetitive traffic) at
    /// the cost of `2^window_bits` bytes of history per direction and connection, plus a ~265-380 KiB zlib stream
    /// while the connection is sending (released when it goes idle). `Off`: offers are ignored. See the README's
    /// compression section.
    pub compression: Compression,
    /// Coalescing delay: a worker that is woken gathers what arrives for up to this long before it reads and
    /// answers it, so a burst costs one wake-up and its answers leave together in fewer, fuller packets (fewer
    /// wake-ups of the peer too), at the price of up to this much added latency; like Nagle's algorithm or
    /// interrupt moderation, but bounded and chosen per server. The worker still sleeps while idle, and a wait
    /// returns early once 256 completions are in. Default zero: every completion is handled at once. At most 1 s.
    /// Needs Linux 6.12+ (io_uring's minimum wait time); elsewhere a non-zero value fails `start` with
    /// `StartError::Unsupported`. Its CPU and latency curve: PERF.md.
    pub flush_delay: Duration,
    /// Messages shorter than this go uncompressed (a per-message opt-out is `WebSocket::send_uncompressed`).
    /// Default 64 bytes.
    pub compression_threshold: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 1338)),
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            pin_workers: true,
            max_connections_per_worker: 100_000,
            max_message_size: 16 << 20,
            max_frame_size: 16 << 20,
            max_backpressure: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Drop,
            max_request_size: 8192,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            close_timeout: Duration::from_secs(5),
            send_stall_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(5),
            backlog: 4096,
            recv_buffers: 64,
            recv_buffer_size: 64 << 10,
            ring_entries: 4096,
            cross_worker_queue: 4096,
            broker: None,
            door: DoorConfig::default(),
            tls: None,
            max_tls_handshakes_per_worker: 256,
            compression: Compression::Shared,
            compression_threshold: crate::deflate::DEFAULT_THRESHOLD,
            flush_delay: Duration::ZERO,
        }
    }
}

/// A configuration value out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The `Config` field at fault.
    pub field: &'static str,
    /// What is wrong with its value.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid config `{}`: {}", self.field, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Check every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, problem: &str| {
            Err(ConfigError {
                field,
                problem: problem.to_string(),
            })
        };
        if self.workers == 0 || self.workers > 1024 {
            return err("workers", "must be 1..=1024");
        }
        if self.max_connections_per_worker == 0 || self.max_connections_per_worker > (1 << 24) {
            return err("max_connections_per_worker", "must be 1..=16777216");
        }
        if self.max_message_size == 0 || self.max_message_size > u32::MAX as usize {
            return err("max_message_size", "must be 1..=4294967295");
        }
        if self.max_frame_size == 0 || self.max_frame_size > self.max_message_size {
            return err("max_frame_size", "must be 1..=max_message_size");
        }
        if self.max_backpressure < 1024 {
            return err("max_backpressure", "must be at least 1024");
        }
        if self.max_request_size < 256 || self.max_request_size > 1 << 20 {
            return err("max_request_size", "must be 256..=1048576");
        }
        if self.handshake_timeout.is_zero() {
            return err("handshake_timeout", "must be non-zero");
        }
        if self.close_timeout.is_zero() {
            return err("close_timeout", "must be non-zero");
        }
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32768 {
            return err("recv_buffers", "must be a power of two <= 32768");
        }
        if self.recv_buffer_size < 4096 || self.recv_buffer_size > 1 << 24 {
            return err("recv_buffer_size", "must be 4096..=16777216");
        }
        if !self.ring_entries.is_power_of_two() || !(64..=32768).contains(&self.ring_entries) {
            return err("ring_entries", "must be a power of two in 64..=32768");
        }
        if self.cross_worker_queue == 0 {
            return err("cross_worker_queue", "must be non-zero");
        }
        if let Some(b) = &self.broker {
            if let Err(e) = b.validate() {
                return err("broker", &e.to_string());
            }
        }
        if let Err(problem) = self.door.per_ip.validate() {
            return err("door.per_ip", &problem);
        }
        if self.max_tls_handshakes_per_worker == 0 {
            return err("max_tls_handshakes_per_worker", "must be non-zero");
        }
        if self.flush_delay > Duration::from_secs(1) {
            return err("flush_delay", "must be at most 1s");
        }
        if let Err(problem) = self.compression.validate() {
            return err("compression", problem);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn rejects_bad_values_naming_the_field() {
        let c = Config {
            recv_buffers: 100,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "recv_buffers");
        let c = Config {
            max_frame_size: (16 << 20) + 1,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "max_frame_size");
        let c = Config {
            workers: 0,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field, "workers");
    }
}

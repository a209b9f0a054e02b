//! The handle the workers hold ([`Bridge`]) and the state it shares with the bridge thread ([`Shared`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::backoff::Jitter;
use super::bridge;
use super::interest::Interest;
use super::shared::{Outgoing, Shared};
use super::stats::{self, BrokerSnapshot, BrokerStats};
use super::{BrokerConfig, BrokerConfigError, BrokerError, Health, Sink};

/// The handle to the bridge thread. `Sync`: the workers share it (`&Bridge` from every thread).
/// Dropping it (or [`Bridge::shutdown`]) stops the thread and closes the Redis connections.
pub struct Bridge {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Bridge {
    /// Validate `config` and start the bridge thread; it connects in the background (Redis may be down: the
    /// bridge keeps retrying, and this still returns `Ok`).
    pub fn start(config: BrokerConfig, sink: Arc<dyn Sink>) -> Result<Bridge, BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let info = {
            use redis::IntoConnectionInfo;
            let info = config
                .url
                .as_str()
                .into_connection_info()
                .map_err(|e| BrokerError::Config(BrokerConfigError::Url(e.to_string())))?;
            let redis = info
                .redis_settings()
                .clone()
                .set_protocol(redis::ProtocolVersion::RESP3);
            info.set_redis_settings(redis)
        };
        let client = redis::Client::open(info)
            .map_err(|e| BrokerError::Config(BrokerConfigError::Url(e.to_string())))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BrokerError::Io)?;
        let node_id = config
            .node_id
            .unwrap_or_else(|| Jitter::from_os().next_u64());
        let (publish_tx, rx) = mpsc::channel(config.publish_queue);
        let shared = Arc::new(Shared {
            interest: Mutex::new(Interest::new(config.linger)),
            config,
            node_id,
            wake: Notify::new(),
            stop: AtomicBool::new(false),
            publish_tx,
            health: AtomicU8::new(0),
            stats: BrokerStats::default(),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ringws-broker".into())
            .spawn(move || runtime.block_on(bridge::run(thread_shared, sink, rx, client)))
            .map_err(BrokerError::Io)?;
        Ok(Bridge {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// A worker has its first local subscriber for `topic`. Balanced by [`Bridge::unwant`]; the channel is
    /// subscribed while at least one want is outstanding. Takes a short mutex; never waits on Redis.
    pub fn want(&self, topic: &str) {
        if self.shared.lock_interest().want(topic) {
            self.shared.wake.notify_one();
        }
    }

    /// A worker lost its last local subscriber for `topic`. The channel is unsubscribed after the linger.
    pub fn unwant(&self, topic: &str) {
        if self.shared.lock_interest().unwant(topic) {
            self.shared.wake.notify_one();
        }
    }

    /// Send one local publish to the other nodes (call once per publish, not per worker). `payload` is the
    /// message unframed (a server frame's payload slice shares its buffer). Never blocks: false if it was
    /// dropped (Redis not connected, or the queue full), which is counted.
    pub fn publish(&self, topic: Arc<str>, payload: Bytes, is_text: bool) -> bool {
        if self.shared.health() != Health::Up {
            stats::bump(&self.shared.stats.drop_disconnected);
            return false;
        }
        match self.shared.publish_tx.try_send(Outgoing {
            topic,
            payload,
            is_text,
        }) {
            Ok(()) => true,
            Err(_) => {
                stats::bump(&self.shared.stats.drop_queue_full);
                false
            }
        }
    }

    /// Up, down (retrying) or still on the first attempt; anything but [`Health::Up`] means `/healthz` is
    /// degraded.
    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// The counters now.
    pub fn stats(&self) -> BrokerSnapshot {
        self.shared.stats.snapshot()
    }

    /// This node's origin id (in every envelope it publishes).
    pub fn node_id(&self) -> u64 {
        self.shared.node_id
    }

    /// The Redis channel that carries `topic`.
    pub fn channel_of(&self, topic: &str) -> String {
        format!("{}{}", self.shared.config.channel_prefix, topic)
    }

    /// Topics some worker wants now.
    pub fn wanted(&self) -> usize {
        self.shared.lock_interest().wanted()
    }

    /// Stop the thread and wait for it (idempotent). Queued publishes are discarded.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_one();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Bridge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bridge")
            .field("node_id", &format_args!("{:016x}", self.shared.node_id))
            .field("health", &self.health())
            .finish()
    }
}

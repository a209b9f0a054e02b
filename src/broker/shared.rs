//! The state the workers' side of the broker seam (`handle.rs`) and the bridge thread (`bridge.rs`) share, and the
//! local publish they pass between them.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::interest::Interest;
use super::stats::BrokerStats;
use super::{BrokerConfig, Health};

/// One local publish on its way to Redis.
pub(crate) struct Outgoing {
    pub(crate) topic: Arc<str>,
    pub(crate) payload: Bytes,
    pub(crate) is_text: bool,
}

/// State shared between the workers' side of the seam and the bridge thread.
pub(crate) struct Shared {
    pub(crate) config: BrokerConfig,
    pub(crate) node_id: u64,
    pub(crate) interest: Mutex<Interest>,
    /// Wakes the bridge: a topic's first want or last unwant, a lost connection, shutdown.
    pub(crate) wake: Notify,
    pub(crate) stop: AtomicBool,
    pub(crate) publish_tx: mpsc::Sender<Outgoing>,
    pub(super) health: AtomicU8,
    pub(crate) stats: BrokerStats,
}

impl Shared {
    pub(crate) fn lock_interest(&self) -> MutexGuard<'_, Interest> {
        self.interest.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub(crate) fn health(&self) -> Health {
        match self.health.load(Ordering::Acquire) {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Connecting,
        }
    }
    pub(crate) fn set_health(&self, h: Health) {
        let v = match h {
            Health::Connecting => 0,
            Health::Up => 1,
            Health::Down => 2,
        };
        self.health.store(v, Ordering::Release);
    }
}

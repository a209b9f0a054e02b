//! What every worker of one server shares: the config, the stop flag, the pub/sub hub and each worker's stats
//! slot. Nothing here is touched on the per-message path except the mailboxes (publishes crossing workers) and a
//! worker's own stats slot (one plain store per counter per loop turn).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::config::Config;
use super::pubsub::Hub;
use super::stats::{self, StatsSnapshot, WorkerStats};
use crate::door::Door;
use crate::tls::TlsConfigStore;

pub(crate) struct Shared {
    pub config: Config,
    /// Origin, token and per-address checks; its per-address table is the one all workers count in.
    pub door: Door,
    pub stop: AtomicBool,
    pub hub: Hub,
    pub stats: Vec<WorkerStats>,
    pub started: Instant,
    /// The certificate store when serving TLS (each worker keeps its own acceptor of it).
    pub tls: Option<Arc<TlsConfigStore>>,
}

impl Shared {
    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        stats::snapshot(&self.stats, self.started.elapsed().as_secs_f64())
    }
    pub(crate) fn metrics_text(&self) -> String {
        let mut s = stats::prometheus(&self.stats, self.started.elapsed().as_secs_f64());
        if let Some(b) = self.hub.broker_stats() {
            b.write_prometheus(&mut s);
        }
        s
    }
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.hub.wake_all();
    }
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

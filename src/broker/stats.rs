//! The bridge's counters: plain atomics (relaxed), written by the bridge thread except the queue-full drop that a
//! worker counts when its publish does not fit. Read with [`BrokerStats::snapshot`]; rendered for Prometheus by
//! [`BrokerSnapshot::write_prometheus`].

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters (see [`BrokerSnapshot`] for what each means).
#[derive(Debug, Default)]
pub struct BrokerStats {
    pub(crate) connected: AtomicU64,
    pub(crate) sessions: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    pub(crate) session_failures: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) own_echoes: AtomicU64,
    pub(crate) drop_queue_full: AtomicU64,
    pub(crate) drop_disconnected: AtomicU64,
    pub(crate) drop_publish_failed: AtomicU64,
    pub(crate) drop_inbound_full: AtomicU64,
    pub(crate) drop_local_full: AtomicU64,
    pub(crate) drop_malformed: AtomicU64,
    pub(crate) drop_oversize: AtomicU64,
    pub(crate) drop_repeat: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) subscribes: AtomicU64,
    pub(crate) unsubscribes: AtomicU64,
    pub(crate) resubscribed: AtomicU64,
    pub(crate) channels: AtomicU64,
    pub(crate) probes_sent: AtomicU64,
    pub(crate) probe_failures: AtomicU64,
    pub(crate) probe_rtt_us: AtomicU64,
}

#[cfg(any(test, feature = "redis"))]
pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

#[cfg(any(test, feature = "redis"))]
pub(crate) fn add(c: &AtomicU64, n: u64) {
    if n != 0 {
        c.fetch_add(n, Relaxed);
    }
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerSnapshot {
    /// 1 while a session to Redis is up and its subscriptions are in place, else 0.
    pub connected: u64,
    /// Sessions established (the first connect and every reconnect).
    pub sessions: u64,
    /// Connect attempts that failed (Redis down, refused, timed out).
    pub connect_failures: u64,
    /// Established sessions that ended in an error (connection lost, command timeout, probe failure).
    pub session_failures: u64,
    /// Local publishes sent to Redis.
    pub published: u64,
    /// Data messages received from Redis from other nodes.
    pub received: u64,
    /// Remote publishes handed to the server for local delivery.
    pub delivered: u64,
    /// This node's own publishes that came back from Redis and were not delivered again.
    pub own_echoes: u64,
    /// Local publishes dropped because the bridge's queue was full.
    pub drop_queue_full: u64,
    /// Local publishes dropped because Redis was not connected.
    pub drop_disconnected: u64,
    /// Local publishes in a pipeline that failed (they may or may not have reached Redis).
    pub drop_publish_failed: u64,
    /// Messages from Redis dropped because the inbound queue was full.
    pub drop_inbound_full: u64,
    /// Remote publishes a local worker queue (mailbox) had no room for, per worker that dropped it.
    pub drop_local_full: u64,
    /// Messages from Redis that were not an envelope (foreign publisher, bad UTF-8 text, bad channel name).
    pub drop_malformed: u64,
    /// Messages from Redis over `max_payload`.
    pub drop_oversize: u64,
    /// Messages from Redis already delivered (by sequence); expected to stay 0.
    pub drop_repeat: u64,
    /// Remote publishes known lost: gaps in a publisher's sequence (an outage, a full queue on either side).
    pub lost: u64,
    /// Channels subscribed because a topic became wanted.
    pub subscribes: u64,
    /// Channels unsubscribed after their linger.
    pub unsubscribes: u64,
    /// Channels re-subscribed after a reconnect.
    pub resubscribed: u64,
    /// Channels subscribed now (topics; the probe channel not included).
    pub channels: u64,
    /// Liveness probes sent.
    pub probes_sent: u64,
    /// Probes that did not come back in time (the session was rebuilt).
    pub probe_failures: u64,
    /// Round trip of the last probe that came back, microseconds.
    pub probe_rtt_us: u64,
}

impl BrokerStats {
    /// Read every counter (relaxed loads: each value is exact, the set is not one instant).
    pub fn snapshot(&self) -> BrokerSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        BrokerSnapshot {
            connected: g(&self.connected),
            sessions: g(&self.sessions),
            connect_failures: g(&self.connect_failures),
            session_failures: g(&self.session_failures),
            published: g(&self.published),
            received: g(&self.received),
            delivered: g(&self.delivered),
            own_echoes: g(&self.own_echoes),
            drop_queue_full: g(&self.drop_queue_full),
            drop_disconnected: g(&self.drop_disconnected),
            drop_publish_failed: g(&self.drop_publish_failed),
            drop_inbound_full: g(&self.drop_inbound_full),
            drop_local_full: g(&self.drop_local_full),
            drop_malformed: g(&self.drop_malformed),
            drop_oversize: g(&self.drop_oversize),
            drop_repeat: g(&self.drop_repeat),
            lost: g(&self.lost),
            subscribes: g(&self.subscribes),
            unsubscribes: g(&self.unsubscribes),
            resubscribed: g(&self.resubscribed),
            channels: g(&self.channels),
            probes_sent: g(&self.probes_sent),
            probe_failures: g(&self.probe_failures),
            probe_rtt_us: g(&self.probe_rtt_us),
        }
    }
}

impl BrokerSnapshot {
    /// Local publishes that did not reach Redis, all reasons.
    pub fn publish_drops(&self) -> u64 {
        self.drop_queue_full + self.drop_disconnected + self.drop_publish_failed
    }

    /// Append the Prometheus text exposition (`ringws_broker_*`).
    pub fn write_prometheus(&self, out: &mut String) {
        let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP ringws_broker_{name} {help}");
            let _ = writeln!(out, "# TYPE ringws_broker_{name} {kind}");
            let _ = writeln!(out, "ringws_broker_{name} {v}");
        };
        metric(
            "connected",
            "gauge",
            "1 while the Redis session is up.",
            self.connected,
        );
        metric(
            "sessions_total",
            "counter",
            "Redis sessions established.",
            self.sessions,
        );
        metric(
            "connect_failures_total",
            "counter",
            "Failed connect attempts.",
            self.connect_failures,
        );
        metric(
            "session_failures_total",
            "counter",
            "Sessions that ended in an error.",
            self.session_failures,
        );
        metric(
            "published_total",
            "counter",
            "Local publishes sent to Redis.",
            self.published,
        );
        metric(
            "received_total",
            "counter",
            "Messages received from other nodes.",
            self.received,
        );
        metric(
            "delivered_total",
            "counter",
            "Remote publishes delivered locally.",
            self.delivered,
        );
        metric(
            "own_echoes_total",
            "counter",
            "Own publishes recognised and skipped.",
            self.own_echoes,
        );
        metric(
            "lost_total",
            "counter",
            "Remote publishes known lost (sequence gaps).",
            self.lost,
        );
        metric(
            "channels",
            "gauge",
            "Topic channels subscribed.",
            self.channels,
        );
        metric(
            "subscribes_total",
            "counter",
            "Channels subscribed.",
            self.subscribes,
        );
        metric(
            "unsubscribes_total",
            "counter",
            "Channels unsubscribed after the linger.",
            self.unsubscribes,
        );
        metric(
            "resubscribed_total",
            "counter",
            "Channels re-subscribed after reconnects.",
            self.resubscribed,
        );
        metric(
            "probes_total",
            "counter",
            "Liveness probes sent.",
            self.probes_sent,
        );
        metric(
            "probe_failures_total",
            "counter",
            "Probes not back in time.",
            self.probe_failures,
        );
        let _ = writeln!(
            out,
            "# HELP ringws_broker_probe_rtt_seconds Round trip of the last probe."
        );
        let _ = writeln!(out, "# TYPE ringws_broker_probe_rtt_seconds gauge");
        let rtt = self.probe_rtt_us as f64 / 1e6;
        let _ = writeln!(out, "ringws_broker_probe_rtt_seconds {rtt:.6}");
        let _ = writeln!(
            out,
            "# HELP ringws_broker_drops_total Messages dropped by the bridge, by reason."
        );
        let _ = writeln!(out, "# TYPE ringws_broker_drops_total counter");
        for (reason, v) in [
            ("queue_full", self.drop_queue_full),
            ("disconnected", self.drop_disconnected),
            ("publish_failed", self.drop_publish_failed),
            ("inbound_full", self.drop_inbound_full),
            ("local_full", self.drop_local_full),
            ("malformed", self.drop_malformed),
            ("oversize", self.drop_oversize),
            ("repeat", self.drop_repeat),
        ] {
            let _ = writeln!(out, "ringws_broker_drops_total{{reason=\"{reason}\"}} {v}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_every_family_once() {
        let s = BrokerStats::default();
        bump(&s.drop_queue_full);
        add(&s.published, 5);
        let snap = s.snapshot();
        assert_eq!(snap.published, 5);
        assert_eq!(snap.publish_drops(), 1);
        let mut out = String::new();
        snap.write_prometheus(&mut out);
        assert!(out.contains("ringws_broker_published_total 5\n"));
        assert!(out.contains("ringws_broker_drops_total{reason=\"queue_full\"} 1\n"));
        let types = out.lines().filter(|l| l.starts_with("# TYPE")).count();
        let helps = out.lines().filter(|l| l.starts_with("# HELP")).count();
        assert_eq!(types, helps);
        assert_eq!(types, 17);
    }
}

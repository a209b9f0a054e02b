//! Counters. Each worker counts in plain integers on its hot path and stores them into its own atomics once per
//! loop turn (a single writer: plain stores, no read-modify-write); readers sum the workers.
//!
//! A metric name may carry fixed labels (`name{reason="x"}`): consecutive counters of one family share its `HELP`
//! and `TYPE` lines, and each line gets the `worker` label first.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::door::RefusalReason;

macro_rules! counters {
    ($( $field:ident : $kind:literal, $metric:literal, $help:literal; )*) => {
        /// One worker's counters, as plain integers (owned by the worker thread).
        #[derive(Debug, Default, Clone, Copy)]
        pub(crate) struct Counters { $( pub $field: u64, )* }

        /// One worker's counters as seen by other threads.
        #[derive(Debug, Default)]
        pub(crate) struct WorkerStats { $( $field: AtomicU64, )* }

        impl WorkerStats {
            pub(crate) fn store(&self, c: &Counters) {
                $( self.$field.store(c.$field, Ordering::Relaxed); )*
            }
            pub(crate) fn load(&self) -> Counters {
                Counters { $( $field: self.$field.load(Ordering::Relaxed), )* }
            }
        }

        impl Counters {
            fn add(&mut self, o: &Counters) {
                $( self.$field += o.$field; )*
            }
            /// (field, kind, metric name, help) for the Prometheus exposition.
            const META: &'static [(&'static str, &'static str, &'static str, &'static str)] =
                &[ $( (stringify!($field), $kind, $metric, $help), )* ];
            fn values(&self) -> Vec<u64> { vec![ $( self.$field, )* ] }
        }
    };
}

counters! {
    connections: "gauge", "ringws_connections", "Open connections (HTTP and WebSocket).";
    websockets: "gauge", "ringws_websockets", "Open WebSocket connections.";
    outbound_bytes: "gauge", "ringws_outbound_queued_bytes", "Bytes queued for sending over all connections (sampled once a second).";
    accepted: "counter", "ringws_accepted_total", "TCP connections accepted.";
    upgraded: "counter", "ringws_upgrades_total", "Successful WebSocket upgrades.";
    rejected_capacity: "counter", "ringws_rejected_capacity_total", "Connections refused: max connections reached (503 or closed).";
    rejected_upgrade: "counter", "ringws_rejected_upgrade_total", "Upgrades refused by the handler's upgrade hook.";
    rejected_bad_request: "counter", "ringws_rejected_bad_request_total", "Malformed, oversized or invalid handshakes (4xx).";
    handshake_timeouts: "counter", "ringws_handshake_timeouts_total", "Connections closed because the request head did not arrive in time.";
    http_requests: "counter", "ringws_http_requests_total", "Plain HTTP requests served.";
    messages_in: "counter", "ringws_messages_in_total", "WebSocket messages received.";
    messages_out: "counter", "ringws_messages_out_total", "WebSocket messages queued for sending (including publishes).";
    bytes_in: "counter", "ringws_bytes_in_total", "Bytes received from sockets.";
    bytes_out: "counter", "ringws_bytes_out_total", "Bytes written to sockets.";
    protocol_errors: "counter", "ringws_protocol_errors_total", "Connections failed for a protocol violation (1002/1007/1009).";
    backpressure_pauses: "counter", "ringws_backpressure_pauses_total", "Times a connection's reads were paused because its outbound queue was over half of max_backpressure.";
    dropped_messages: "counter", "ringws_dropped_messages_total", "Messages not queued because a connection's outbound queue was full.";
    slow_consumer_closes: "counter", "ringws_slow_consumer_closes_total", "Subscribers closed by the slow-consumer policy.";
    send_stalls: "counter", "ringws_send_stalls_total", "Connections dropped because their queued bytes made no progress.";
    idle_closes: "counter", "ringws_idle_closes_total", "Connections closed by the idle timeout.";
    publishes: "counter", "ringws_publishes_total", "Publishes made on this worker.";
    cross_worker_dropped: "counter", "ringws_cross_worker_dropped_total", "Publishes not delivered to another worker because its queue was full.";
    loop_turns: "counter", "ringws_loop_turns_total", "Event loop turns (one io_uring_enter each).";
    sends: "counter", "ringws_sends_total", "Send operations submitted to the kernel (send or sendmsg; one carries every frame a connection queued until then).";
    enobufs: "counter", "ringws_recv_enobufs_total", "Multishot receives ended because the buffer ring was empty.";
    paused_input_bytes: "gauge", "ringws_paused_input_bytes", "Bytes received by connections whose reads backpressure paused, waiting for them to resume (sampled once a second).";
    recv_buffers_provided: "gauge", "ringws_recv_buffers_provided", "Receive buffers in the cycle (grows from 8 up to recv_buffers when receives run out, shrinks back a few seconds after the burst; sampled once a second).";
    recv_buffers_held: "gauge", "ringws_recv_buffers_held", "Receive buffers held by bytes queued for sending straight from them (sampled once a second).";
    send_buffers_pooled: "gauge", "ringws_send_buffers_pooled_bytes", "Capacity of the send buffers a worker keeps for reuse (at most 10 MiB: 4096 x 512 B, 1024 x 4 KiB, 64 x 64 KiB; sampled once a second).";
    zero_copy_sends: "counter", "ringws_zero_copy_sends_total", "Messages sent straight from the receive buffer they arrived in (no copy; large echoes).";
    ring_spills: "counter", "ringws_ring_spills_total", "Queued bytes copied out of a receive buffer after a short send, so the buffer could go back.";
    door_bad_request: "counter", "ringws_door_refusals_total{reason=\"bad_request\"}", "Requests refused at the door, by reason: bad_request (ambiguous framing: Host, Content-Length, Transfer-Encoding), origin, auth_* (token), per_ip_* (per-address limits).";
    door_origin: "counter", "ringws_door_refusals_total{reason=\"origin\"}", "";
    door_auth_missing: "counter", "ringws_door_refusals_total{reason=\"auth_missing\"}", "";
    door_auth_expired: "counter", "ringws_door_refusals_total{reason=\"auth_expired\"}", "";
    door_auth_not_yet_valid: "counter", "ringws_door_refusals_total{reason=\"auth_not_yet_valid\"}", "";
    door_auth_invalid: "counter", "ringws_door_refusals_total{reason=\"auth_invalid\"}", "";
    door_per_ip_connections: "counter", "ringws_door_refusals_total{reason=\"per_ip_connections\"}", "";
    door_per_ip_rate: "counter", "ringws_door_refusals_total{reason=\"per_ip_rate\"}", "";
    token_expired_closes: "counter", "ringws_token_expired_closes_total", "WebSockets closed with 1008 because their token expired.";
    tls_handshakes: "counter", "ringws_tls_handshakes_total", "TLS handshakes completed (full and resumed).";
    tls_resumed: "counter", "ringws_tls_resumed_total", "TLS handshakes that resumed a session (ticket or session id).";
    tls_handshaking: "gauge", "ringws_tls_handshakes_in_progress", "TLS handshakes under way.";
    tls_capped: "counter", "ringws_tls_handshakes_capped_total", "Connections closed at accept because max_tls_handshakes_per_worker handshakes were under way.";
    tls_plain_http: "counter", "ringws_tls_plain_http_total", "Plain HTTP requests on the TLS port (answered 400, closed).";
    tls_not_tls: "counter", "ringws_tls_not_tls_total", "Connections on the TLS port whose first bytes were neither TLS nor HTTP (closed).";
    tls_peer_alerts: "counter", "ringws_tls_peer_alerts_total", "TLS connections the peer aborted with a fatal alert.";
    deflate_messages: "counter", "ringws_deflate_messages_total", "Messages sent compressed (permessage-deflate); a publish counts once per class, not per subscriber.";
    deflate_bytes_in: "counter", "ringws_deflate_bytes_in_total", "Bytes of those messages before compression.";
    deflate_bytes_out: "counter", "ringws_deflate_bytes_out_total", "Bytes of those messages after compression (payloads, without frame headers).";
    deflate_skipped_threshold: "counter", "ringws_deflate_skipped_total{reason=\"threshold\"}", "Messages to compressing peers sent plain, by reason: threshold (shorter than compression_threshold), no_gain (compressing would not make them smaller), opt_out (sent with send_uncompressed).";
    deflate_skipped_no_gain: "counter", "ringws_deflate_skipped_total{reason=\"no_gain\"}", "";
    deflate_skipped_opt_out: "counter", "ringws_deflate_skipped_total{reason=\"opt_out\"}", "";
    deflate_publish_compressions: "counter", "ringws_deflate_publish_compressions_total", "Compressions of publishes (at most one per publish and window class, whatever the number of subscribers; compare with ringws_publishes_total).";
    deflate_nanos: "counter", "ringws_deflate_seconds_total", "Time spent compressing and inflating (monotonic clock around each codec call, on the worker threads; counted in nanoseconds).";
    deflate_streams: "gauge", "ringws_deflate_dedicated_streams", "Dedicated-mode connections holding a live compressor (dropped after a second without sending; sampled once a second).";
    inflate_messages: "counter", "ringws_inflate_messages_total", "Compressed messages received and inflated.";
    inflate_bytes_in: "counter", "ringws_inflate_bytes_in_total", "Compressed bytes of those messages.";
    inflate_bytes_out: "counter", "ringws_inflate_bytes_out_total", "Bytes of those messages once inflated.";
    inflate_too_big: "counter", "ringws_inflate_errors_total{kind=\"too_big\"}", "Compressed messages that failed the connection, by kind: too_big (inflated past max_message_size, 1009), corrupt (invalid deflate data, 1007), utf8 (text not UTF-8 once inflated, 1007).";
    inflate_corrupt: "counter", "ringws_inflate_errors_total{kind=\"corrupt\"}", "";
    inflate_bad_utf8: "counter", "ringws_inflate_errors_total{kind=\"utf8\"}", "";
    tls_errors: "counter", "ringws_tls_errors_total", "TLS connections failed for a protocol error, an offer we do not support, or too much incomplete input.";
}

impl Counters {
    /// Count a refusal of the door under its reason.
    pub(crate) fn count_refusal(&mut self, r: RefusalReason) {
        let c = match r {
            RefusalReason::BadRequest => &mut self.door_bad_request,
            RefusalReason::Origin => &mut self.door_origin,
            RefusalReason::AuthMissing => &mut self.door_auth_missing,
            RefusalReason::AuthExpired => &mut self.door_auth_expired,
            RefusalReason::AuthNotYetValid => &mut self.door_auth_not_yet_valid,
            RefusalReason::AuthInvalid => &mut self.door_auth_invalid,
            RefusalReason::PerIpConnections => &mut self.door_per_ip_connections,
            RefusalReason::PerIpRate => &mut self.door_per_ip_rate,
        };
        *c += 1;
    }

    fn door_refusals(&self) -> u64 {
        self.door_bad_request
            + self.door_origin
            + self.door_auth_missing
            + self.door_auth_expired
            + self.door_auth_not_yet_valid
            + self.door_auth_invalid
            + self.door_per_ip_connections
            + self.door_per_ip_rate
    }
}

/// Counters summed over every worker, plus facts about the server.
#[derive(Debug, Clone)]
pub struct StatsSnapshot {
    /// Worker threads.
    pub workers: usize,
    /// Seconds since the server started.
    pub uptime_s: f64,
    /// Open connections (HTTP and WebSocket).
    pub connections: u64,
    /// Open WebSocket connections.
    pub websockets: u64,
    /// TCP connections accepted.
    pub accepted: u64,
    /// WebSocket messages received.
    pub messages_in: u64,
    /// WebSocket messages queued for sending (publishes included).
    pub messages_out: u64,
    /// Bytes received from sockets.
    pub bytes_in: u64,
    /// Bytes written to sockets.
    pub bytes_out: u64,
    /// Messages not queued because an outbound queue was full.
    pub dropped: u64,
    /// Connections failed for a protocol violation.
    pub protocol_errors: u64,
    /// Connections and upgrades refused (capacity, bad requests, the door, the upgrade hook).
    pub rejected: u64,
}

pub(crate) fn snapshot(workers: &[WorkerStats], uptime_s: f64) -> StatsSnapshot {
    let mut t = Counters::default();
    for w in workers {
        t.add(&w.load());
    }
    StatsSnapshot {
        workers: workers.len(),
        uptime_s,
        connections: t.connections,
        websockets: t.websockets,
        accepted: t.accepted,
        messages_in: t.messages_in,
        messages_out: t.messages_out,
        bytes_in: t.bytes_in,
        bytes_out: t.bytes_out,
        dropped: t.dropped_messages + t.cross_worker_dropped,
        protocol_errors: t.protocol_errors,
        rejected: t.rejected_capacity
            + t.rejected_upgrade
            + t.rejected_bad_request
            + t.handshake_timeouts
            + t.door_refusals(),
    }
}

/// Prometheus text format (0.0.4): every counter per worker (`worker` label).
pub(crate) fn prometheus(workers: &[WorkerStats], uptime_s: f64) -> String {
    let per: Vec<Vec<u64>> = workers.iter().map(|w| w.load().values()).collect();
    let mut s = String::with_capacity(8192);
    let mut family = "";
    for (i, (_, kind, metric, help)) in Counters::META.iter().enumerate() {
        let (name, labels) = match metric.split_once('{') {
            Some((n, l)) => (n, format!(",{}", l.trim_end_matches('}'))),
            None => (*metric, String::new()),
        };
        if name != family {
            family = name;
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        }
        for (w, vals) in per.iter().enumerate() {
            let v = vals[i];
            // A `_seconds_total` metric is counted in nanoseconds and exposed in seconds (the base unit).
            if name.ends_with("_seconds_total") {
                let (sec, ns) = (v / 1_000_000_000, v % 1_000_000_000);
                let _ = writeln!(s, "{name}{{worker=\"{w}\"{labels}}} {sec}.{ns:09}");
            } else {
                let _ = writeln!(s, "{name}{{worker=\"{w}\"{labels}}} {v}");
            }
        }
    }
    let _ = writeln!(
        s,
        "# HELP ringws_uptime_seconds Seconds since the server started."
    );
    let _ = writeln!(s, "# TYPE ringws_uptime_seconds gauge");
    let _ = writeln!(s, "ringws_uptime_seconds {uptime_s:.3}");
    let _ = writeln!(s, "# HELP ringws_workers Worker threads.");
    let _ = writeln!(s, "# TYPE ringws_workers gauge");
    let _ = writeln!(s, "ringws_workers {}", workers.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_sums_workers_and_prometheus_lists_each() {
        let ws = [WorkerStats::default(), WorkerStats::default()];
        ws[0].store(&Counters {
            messages_in: 3,
            connections: 1,
            ..Default::default()
        });
        ws[1].store(&Counters {
            messages_in: 4,
            connections: 2,
            ..Default::default()
        });
        let s = snapshot(&ws, 1.0);
        assert_eq!((s.messages_in, s.connections), (7, 3));
        let text = prometheus(&ws, 1.0);
        assert!(text.contains("ringws_messages_in_total{worker=\"0\"} 3\n"));
        assert!(text.contains("ringws_messages_in_total{worker=\"1\"} 4\n"));
        assert!(text.contains("# TYPE ringws_connections gauge\n"));
    }

    #[test]
    fn refusals_are_one_family_with_a_reason_label() {
        let ws = [WorkerStats::default()];
        let mut c = Counters::default();
        c.count_refusal(RefusalReason::Origin);
        c.count_refusal(RefusalReason::Origin);
        c.count_refusal(RefusalReason::PerIpRate);
        ws[0].store(&c);
        let text = prometheus(&ws, 1.0);
        assert_eq!(
            text.matches("# TYPE ringws_door_refusals_total counter\n")
                .count(),
            1
        );
        assert!(text.contains("ringws_door_refusals_total{worker=\"0\",reason=\"origin\"} 2\n"));
        assert!(
            text.contains("ringws_door_refusals_total{worker=\"0\",reason=\"per_ip_rate\"} 1\n")
        );
        for r in RefusalReason::ALL {
            assert!(
                text.contains(&format!("reason=\"{}\"}}", r.label())),
                "{}",
                r.label()
            );
        }
        assert_eq!(snapshot(&ws, 1.0).rejected, 3);
    }
}

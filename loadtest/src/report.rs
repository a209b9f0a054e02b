//! The final report: the [`Summary`] of a run, printed as text or as JSON (`--json`).

use serde::Serialize;

use crate::stats::Percentiles;

#[derive(Debug, Clone, Serialize)]
pub struct ErrorCount {
    pub kind: &'static str,
    pub count: u64,
}

/// The final report (printed as text, or as JSON with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub url: String,
    pub mode: String,
    pub conns: usize,
    pub publishers: usize,
    pub size: usize,
    pub threads: usize,
    pub inflight: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connected: u64,
    pub connect_failed: u64,
    pub ramp_s: f64,
    pub connect_us: Percentiles,
    pub sent: u64,
    pub received: u64,
    pub msgs_per_s: f64,
    pub sent_per_s: f64,
    pub mb_per_s: f64,
    pub latency_us: Percentiles,
    pub errors: Vec<ErrorCount>,
    pub errors_total: u64,
    pub mismatches: u64,
    pub closed_clean: u64,
    pub recv_enobufs: u64,
    pub client_cpu_pct: f64,
    pub client_cpu_us_per_msg: f64,
    /// Pubsub: deliveries per publish (the room's fan-out as measured).
    pub fanout: Option<f64>,
    /// This process's VmRSS at the end of the measurement, with every connection open.
    pub client_rss_kib: Option<u64>,
    pub server_pid: Option<i32>,
    pub server_cpu_pct: Option<f64>,
    pub server_cpu_us_per_msg: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

impl Summary {
    pub fn print_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "loadtest {} {}: {} conns{} x {} B, {} thread(s), inflight {}, {:.1} s measured after {:.1} s warm-up",
            self.mode,
            self.url,
            self.conns,
            if self.publishers > 0 {
                format!(" + {} publishers", self.publishers)
            } else {
                String::new()
            },
            self.size,
            self.threads,
            self.inflight,
            self.duration_s,
            self.warmup_s
        );
        let c = &self.connect_us;
        let _ = writeln!(
            s,
            "connect:  {} ok, {} failed, ramp {:.2} s; connect+handshake µs p50 {} p99 {} max {}",
            self.connected, self.connect_failed, self.ramp_s, c.p50, c.p99, c.max
        );
        let _ = writeln!(
            s,
            "rate:     {:.0} msg/s received ({} msgs), {:.0} msg/s sent, {:.2} MB/s payload received",
            self.msgs_per_s, self.received, self.sent_per_s, self.mb_per_s
        );
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "latency:  µs p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.1}, n {})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean, l.count
        );
        let _ = write!(s, "errors:   {}", self.errors_total);
        for e in &self.errors {
            if e.count > 0 {
                let _ = write!(s, " {}={}", e.kind, e.count);
            }
        }
        let _ = writeln!(
            s,
            " (clean closes {}, receive buffer ring ran dry {}x)",
            self.closed_clean, self.recv_enobufs
        );
        if let Some(f) = self.fanout {
            let _ = writeln!(s, "pubsub:   {f:.1} deliveries per publish");
        }
        let _ = writeln!(
            s,
            "client:   CPU {:.1}% of one core, {:.2} CPU-µs/msg, RSS {}",
            self.client_cpu_pct,
            self.client_cpu_us_per_msg,
            self.client_rss_kib
                .map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0)),
        );
        if let Some(pid) = self.server_pid {
            let _ = writeln!(
                s,
                "server:   pid {pid} CPU {}% , {} CPU-µs/msg, RSS {}",
                self.server_cpu_pct
                    .map_or("?".into(), |v| format!("{v:.1}")),
                self.server_cpu_us_per_msg
                    .map_or("?".into(), |v| format!("{v:.2}")),
                self.server_rss_kib
                    .map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0)),
            );
        }
        s
    }
}

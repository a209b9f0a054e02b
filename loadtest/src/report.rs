//! The final report: the [`Summary`] of a run built from what the reactors counted and the main thread measured,
//! printed as text or as JSON (`--json`), and the exit status it implies.

use std::time::Duration;

use serde::Serialize;

use crate::cli::{Args, Mode};
use crate::phases::Measurement;
use crate::plan::Plan;
use crate::stats::{percentiles, rate, ErrKind, Percentiles};

/// One `--server-pid`'s share of the measured window.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    pub pid: i32,
    /// CPU seconds (user + system) in the window.
    pub cpu_s: Option<f64>,
    pub cpu_pct: Option<f64>,
    /// CPU-µs per message received by the client (per delivery in pubsub).
    pub cpu_us_per_msg: Option<f64>,
    /// CPU-µs per message sent by the client (per publish in pubsub).
    pub cpu_us_per_sent: Option<f64>,
    pub rss_kib: Option<u64>,
}

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
    /// Every `--server-pid` (the first is also in the `server_*` fields).
    pub servers: Vec<ServerUsage>,
    /// `--deflate`: what was offered, negotiated, and how well it compressed (absent without --deflate).
    pub deflate: Option<crate::deflate::DeflateSummary>,
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
        if let Some(d) = &self.deflate {
            s.push_str(&d.text());
        }
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
        for u in &self.servers {
            let _ = writeln!(
                s,
                "server:   pid {} CPU {}% , {} CPU-µs/msg, {} CPU-µs/sent, RSS {}",
                u.pid,
                u.cpu_pct.map_or("?".into(), |v| format!("{v:.1}")),
                u.cpu_us_per_msg.map_or("?".into(), |v| format!("{v:.2}")),
                u.cpu_us_per_sent.map_or("?".into(), |v| format!("{v:.2}")),
                u.rss_kib
                    .map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1024.0)),
            );
        }
        s
    }
}

/// Print the summary (JSON with `--json`, text otherwise) and return the exit status: 0 ok, 1 mismatched echoes or
/// nothing received in the measured window.
pub fn report(args: &Args, plan: &Plan, m: &Measurement) -> i32 {
    let summary = Summary::new(args, plan, m);
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).expect("summary serializes")
        );
    } else {
        print!("{}", summary.print_text());
    }
    if summary.mismatches > 0 {
        eprintln!("loadtest: {} mismatched echoes", summary.mismatches);
        return 1;
    }
    if m.stats.received == 0 {
        eprintln!("loadtest: no message was received in the measurement window");
        return 1;
    }
    0
}

impl Summary {
    /// The summary of a run: the arguments it ran with, the reactors' merged counters, the main thread's timings.
    pub fn new(args: &Args, plan: &Plan, m: &Measurement) -> Self {
        let all = &m.stats;
        let per_msg = |cpu: Duration| {
            if all.received > 0 {
                cpu.as_secs_f64() * 1e6 / all.received as f64
            } else {
                0.0
            }
        };
        let wall = m.wall;
        let measured = m.measured;
        let per_sent =
            |cpu: Duration| (all.sent > 0).then(|| cpu.as_secs_f64() * 1e6 / all.sent as f64);
        let servers: Vec<ServerUsage> = args
            .server_pid
            .iter()
            .enumerate()
            .map(|(i, &pid)| {
                let cpu = m.server_cpu.get(i).copied().flatten();
                ServerUsage {
                    pid,
                    cpu_s: cpu.map(|d| d.as_secs_f64()),
                    cpu_pct: cpu.map(|d| d.as_secs_f64() / wall.as_secs_f64() * 100.0),
                    cpu_us_per_msg: cpu.map(per_msg),
                    cpu_us_per_sent: cpu.and_then(per_sent),
                    rss_kib: m.server_rss_kib.get(i).copied().flatten(),
                }
            })
            .collect();
        Summary {
            url: args.url.join(" "),
            mode: args.mode.name().into(),
            conns: args.conns,
            publishers: args.publishers(),
            size: args.size,
            threads: plan.threads,
            inflight: plan.inflight,
            duration_s: measured.as_secs_f64(),
            warmup_s: args.warmup.as_secs_f64(),
            connected: all.connected,
            connect_failed: all.connect_failed,
            ramp_s: m.ramp_ns as f64 / 1e9,
            connect_us: percentiles(&all.connect),
            sent: all.sent,
            received: all.received,
            msgs_per_s: rate(all.received, measured),
            sent_per_s: rate(all.sent, measured),
            mb_per_s: rate(all.bytes_received, measured) / 1e6,
            latency_us: percentiles(&all.latency),
            errors: ErrKind::ALL
                .iter()
                .map(|k| ErrorCount {
                    kind: k.name(),
                    count: all.errors[*k as usize],
                })
                .collect(),
            errors_total: all.error_total(),
            mismatches: all.errors[ErrKind::Mismatch as usize],
            closed_clean: all.closed_clean,
            recv_enobufs: all.recv_enobufs,
            client_cpu_pct: m.client_cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            client_cpu_us_per_msg: per_msg(m.client_cpu),
            fanout: (args.mode == Mode::Pubsub && all.sent > 0)
                .then(|| all.received as f64 / all.sent as f64),
            client_rss_kib: m.client_rss_kib,
            server_pid: servers.first().map(|u| u.pid),
            server_cpu_pct: servers.first().and_then(|u| u.cpu_pct),
            server_cpu_us_per_msg: servers.first().and_then(|u| u.cpu_us_per_msg),
            server_rss_kib: servers.first().and_then(|u| u.rss_kib),
            servers,
            deflate: plan
                .deflate
                .as_ref()
                .map(|o| crate::deflate::DeflateSummary::new(o, &all.deflate)),
        }
    }
}

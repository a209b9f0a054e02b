//! Counters, latency histograms and CPU and memory readings (the summary built from them is in `report.rs`).
//!
//! Each reactor thread owns its `ThreadStats` (plain integers and an hdrhistogram, no sharing) and publishes a few
//! totals to its `Live` slot with relaxed stores (no read-modify-write) for the once-a-second progress line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Kinds of error the client counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum ErrKind {
    ConnectRefused = 0,
    ConnectTimeout,
    ConnectOther,
    Handshake,
    Send,
    Recv,
    /// The server closed (close frame or EOF) before the run ended.
    ServerClosed,
    /// The server sent something that is not valid WebSocket.
    Protocol,
    /// An echo whose content, order or type is not the one sent.
    Mismatch,
    /// Rate mode: a connection fell too far behind its schedule; the message was not sent.
    RateBacklog,
    /// wss://: the TLS handshake failed (certificate not trusted, alert, bad record) or a TLS error later.
    Tls,
}

pub const ERR_KINDS: usize = 11;

impl ErrKind {
    pub const ALL: [ErrKind; ERR_KINDS] = [
        ErrKind::ConnectRefused,
        ErrKind::ConnectTimeout,
        ErrKind::ConnectOther,
        ErrKind::Handshake,
        ErrKind::Send,
        ErrKind::Recv,
        ErrKind::ServerClosed,
        ErrKind::Protocol,
        ErrKind::Mismatch,
        ErrKind::RateBacklog,
        ErrKind::Tls,
    ];
    pub fn name(self) -> &'static str {
        match self {
            ErrKind::ConnectRefused => "connect_refused",
            ErrKind::ConnectTimeout => "connect_timeout",
            ErrKind::ConnectOther => "connect_other",
            ErrKind::Handshake => "handshake",
            ErrKind::Send => "send",
            ErrKind::Recv => "recv",
            ErrKind::ServerClosed => "server_closed",
            ErrKind::Protocol => "protocol",
            ErrKind::Mismatch => "mismatch",
            ErrKind::RateBacklog => "rate_backlog",
            ErrKind::Tls => "tls",
        }
    }
}

/// Latency histogram in microseconds, 1 µs .. 100 s, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("histogram bounds")
}

/// Record a latency given in nanoseconds (clamped into the histogram's range).
#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    let us = (ns / 1000).clamp(1, 100_000_000);
    let _ = h.record(us);
}

/// Messages (or bytes) per second.
pub fn rate(count: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        count as f64 / s
    }
}

/// What one reactor thread measured.
#[derive(Debug, Clone)]
pub struct ThreadStats {
    /// Round-trip (or delivery) latency of messages received in the measurement window, µs.
    pub latency: Histogram<u64>,
    /// Connect + handshake time per successful connection, µs.
    pub connect: Histogram<u64>,
    /// Messages sent / received (echoes or deliveries) in the measurement window.
    pub sent: u64,
    pub received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Whole run (warm-up included).
    pub received_total: u64,
    pub bytes_received_total: u64,
    pub errors: [u64; ERR_KINDS],
    pub connected: u64,
    pub connect_failed: u64,
    /// Connections that ended the close handshake cleanly (server's close frame or EOF after ours).
    pub closed_clean: u64,
    /// Time from the first connect to the last handshake of this thread.
    pub ramp: Duration,
    /// Multishot receives ended by an empty buffer ring (re-armed after buffers came back).
    pub recv_enobufs: u64,
    /// `--deflate`: negotiation and compression counters.
    pub deflate: crate::deflate::DeflateStats,
}

impl Default for ThreadStats {
    fn default() -> Self {
        ThreadStats {
            latency: new_histogram(),
            connect: new_histogram(),
            sent: 0,
            received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            received_total: 0,
            bytes_received_total: 0,
            errors: [0; ERR_KINDS],
            connected: 0,
            connect_failed: 0,
            closed_clean: 0,
            ramp: Duration::ZERO,
            recv_enobufs: 0,
            deflate: Default::default(),
        }
    }
}

impl ThreadStats {
    #[inline]
    pub fn err(&mut self, k: ErrKind) {
        self.errors[k as usize] += 1;
    }
    pub fn error_total(&self) -> u64 {
        self.errors.iter().sum()
    }
    pub fn merge(&mut self, o: &ThreadStats) {
        self.latency.add(&o.latency).expect("same bounds");
        self.connect.add(&o.connect).expect("same bounds");
        self.sent += o.sent;
        self.received += o.received;
        self.bytes_sent += o.bytes_sent;
        self.bytes_received += o.bytes_received;
        self.received_total += o.received_total;
        self.bytes_received_total += o.bytes_received_total;
        for i in 0..ERR_KINDS {
            self.errors[i] += o.errors[i];
        }
        self.connected += o.connected;
        self.connect_failed += o.connect_failed;
        self.closed_clean += o.closed_clean;
        self.ramp = self.ramp.max(o.ramp);
        self.recv_enobufs += o.recv_enobufs;
        self.deflate.merge(&o.deflate);
    }
}

/// Totals a reactor publishes for the progress line (stores only, by the owning thread).
#[derive(Debug, Default)]
pub struct Live {
    pub open: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub errors: AtomicU64,
}

/// Sum of all threads' live counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct LiveTotals {
    pub open: u64,
    pub connected: u64,
    pub failed: u64,
    pub received: u64,
    pub bytes_received: u64,
    pub errors: u64,
}

pub fn sum_live(l: &[Live]) -> LiveTotals {
    let mut t = LiveTotals::default();
    for x in l {
        t.open += x.open.load(Relaxed);
        t.connected += x.connected.load(Relaxed);
        t.failed += x.failed.load(Relaxed);
        t.received += x.received.load(Relaxed);
        t.bytes_received += x.bytes_received.load(Relaxed);
        t.errors += x.errors.load(Relaxed);
    }
    t
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles {
            count: 0,
            min: 0,
            mean: 0.0,
            p50: 0,
            p90: 0,
            p99: 0,
            p999: 0,
            max: 0,
        };
    }
    Percentiles {
        count: h.len(),
        min: h.min(),
        mean: h.mean(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
    }
}

/// CPU time of a process: user + system.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// This process's CPU time (all threads).
pub fn self_cpu() -> CpuTime {
    // SAFETY: getrusage fills the zeroed struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    CpuTime {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
    }
}

/// Another process's CPU time (utime + stime from /proc/PID/stat, all threads).
pub fn proc_cpu(pid: i32) -> Option<CpuTime> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&s)
}

/// Parse utime and stime (fields 14 and 15) of a /proc/PID/stat line.
pub fn parse_proc_stat(s: &str) -> Option<CpuTime> {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14 -> index 11, stime index 12.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let tick = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    Some(CpuTime {
        user: tick(utime),
        system: tick(stime),
    })
}

/// VmRSS of a process, in KiB.
pub fn proc_rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_uniform() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v).unwrap();
        }
        let p = percentiles(&h);
        assert_eq!(p.count, 1000);
        assert_eq!(p.min, 1);
        assert_eq!(p.max, 1000);
        assert_eq!(p.p50, 500);
        assert_eq!(p.p90, 900);
        assert_eq!(p.p99, 990);
        assert_eq!(p.p999, 999);
        assert!((p.mean - 500.5).abs() < 0.5);
    }

    #[test]
    fn percentiles_empty_and_ns_clamp() {
        let h = new_histogram();
        assert_eq!(percentiles(&h).count, 0);
        let mut h = new_histogram();
        record_ns(&mut h, 10); // < 1 µs -> 1
        record_ns(&mut h, 2_500_000); // 2.5 ms
        assert_eq!(h.min(), 1);
        assert!((2495..=2505).contains(&h.max()));
    }

    #[test]
    fn merge_adds() {
        let mut a = ThreadStats::default();
        let mut b = ThreadStats::default();
        a.received = 3;
        b.received = 4;
        b.err(ErrKind::Mismatch);
        record_ns(&mut b.latency, 5_000);
        a.merge(&b);
        assert_eq!(a.received, 7);
        assert_eq!(a.errors[ErrKind::Mismatch as usize], 1);
        assert_eq!(a.latency.len(), 1);
    }

    #[test]
    fn rate_calc() {
        assert_eq!(rate(1000, Duration::from_secs(2)), 500.0);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
        assert!((rate(1, Duration::from_millis(250)) - 4.0).abs() < 1e-9);
    }

    #[test]
    fn proc_stat_parse() {
        let line =
            "1234 (my (odd) proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 100 0 0";
        let c = parse_proc_stat(line).unwrap();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(c.user, Duration::from_nanos(250 * 1_000_000_000 / hz));
        assert_eq!(c.system, Duration::from_nanos(50 * 1_000_000_000 / hz));
        assert!(self_cpu().total() < Duration::from_secs(3600));
        assert!(proc_cpu(std::process::id() as i32).is_some());
        assert!(proc_rss_kib(std::process::id() as i32).unwrap() > 0);
    }
}

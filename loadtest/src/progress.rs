//! The progress line on stderr: once a second, the phase, connections open / connected / failed, the receive rate
//! since the previous line and the error count, summed over every reactor's [`Live`] totals.

use crate::stats::{self, Live, LiveTotals};

const SECOND_NS: u64 = 1_000_000_000;

/// The once-a-second progress line (silent with `--quiet`).
pub struct Progress<'a> {
    live: &'a [Live],
    /// Connections to open in all (the `connected` column's denominator).
    total: usize,
    enabled: bool,
    /// When the run began (the line's time column counts from here).
    t_begin: u64,
    last: LiveTotals,
    last_t: u64,
    next_print: u64,
}

impl<'a> Progress<'a> {
    pub fn new(live: &'a [Live], total: usize, enabled: bool, t_begin: u64) -> Self {
        Progress {
            live,
            total,
            enabled,
            t_begin,
            last: LiveTotals::default(),
            last_t: t_begin,
            next_print: t_begin + SECOND_NS,
        }
    }

    /// Print the line if its second has come.
    pub fn tick(&mut self, phase: &str, now: u64) {
        if self.enabled && now >= self.next_print {
            self.print(phase, now);
            self.next_print += SECOND_NS;
        }
    }

    /// When to wake up at the latest to print on time, for a sleep that ends at `deadline`.
    pub fn wake(&self, deadline: u64) -> u64 {
        if self.enabled {
            deadline.min(self.next_print)
        } else {
            deadline
        }
    }

    /// The ramp-up is over at `t0`: say how it went and count the rates from `t0` on.
    pub fn ramp_done(&mut self, t0: u64) {
        if self.enabled {
            let cur = stats::sum_live(self.live);
            eprintln!(
                "ramp-up done in {:.2} s: {} connected, {} failed",
                (t0 - self.t_begin) as f64 / 1e9,
                cur.connected,
                cur.failed
            );
        }
        self.last = stats::sum_live(self.live);
        self.last_t = t0;
        self.next_print = t0 + SECOND_NS;
    }

    fn print(&mut self, phase: &str, now: u64) {
        let cur = stats::sum_live(self.live);
        let dt = (now - self.last_t) as f64 / 1e9;
        let msgs = (cur.received - self.last.received) as f64 / dt.max(1e-9);
        let mb = (cur.bytes_received - self.last.bytes_received) as f64 / dt.max(1e-9) / 1e6;
        eprintln!(
            "[{:6.1}s] {:6} open {:6}/{} connected {:5} failed | {:>10.0} msg/s {:8.2} MB/s | errors {}",
            (now - self.t_begin) as f64 / 1e9,
            phase,
            cur.open,
            self.total,
            cur.failed,
            msgs,
            mb,
            cur.errors,
        );
        self.last = cur;
        self.last_t = now;
    }
}

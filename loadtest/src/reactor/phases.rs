//! One reactor's walk through the run's phases: ramp-up (open every connection, paced), wait for the main thread's
//! clock, warm-up + measured window (the workload runs; rate and pubsub follow their schedule), close (a close frame
//! on every open connection, then a bounded wait for the server's close and EOF, so TIME_WAIT lands on the server),
//! and a short drain of whatever is still in flight. The main thread's side is in `src/phases.rs`.

use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::time::Duration;

use super::conn::St;
use super::state::{Phase, Reactor};
use super::workload::Schedule;
use crate::plan::{now_ns, Sync};
use crate::stats::Live;

/// How often handshakes are checked against the connect timeout during the ramp-up.
const HANDSHAKE_SWEEP_NS: u64 = 50_000_000;

impl Reactor {
    /// Run every phase; returns when every connection is closed (or given up on).
    pub(super) fn run(&mut self, live: &Live, sync: &Sync) -> std::io::Result<()> {
        self.arm_tick();
        self.ramp_up(live)?;
        sync.ready.fetch_add(1, Relaxed);
        let t0 = wait_for_start(sync);
        let end = self.measure(t0, live, sync)?;
        self.close_all(end, live)?;
        self.drain()?;
        self.publish(live);
        Ok(())
    }

    /// Open every connection before any load: at most `--connect-concurrency` at once, paced by `--connect-rate`.
    fn ramp_up(&mut self, live: &Live) -> std::io::Result<()> {
        let n = self.conns.len();
        let plan = self.ctx.plan.clone();
        let ramp_start = now_ns();
        let mut next = 0usize;
        let mut last_sweep = ramp_start;
        while self.ctx.resolved < n {
            let now = now_ns();
            let allowed = if plan.connect_rate > 0.0 {
                (((now - ramp_start) as f64 / 1e9) * plan.connect_rate) as usize + 1
            } else {
                n
            };
            while next < n && next < allowed && self.ctx.connecting < plan.connect_concurrency {
                self.start_connect(next, now);
                next += 1;
            }
            if now - last_sweep > HANDSHAKE_SWEEP_NS {
                last_sweep = now;
                self.sweep_handshakes(now);
            }
            let wait = if plan.connect_rate > 0.0 && next < n {
                Duration::from_micros(((1e6 / plan.connect_rate) as u64).clamp(50, 10_000))
            } else {
                Duration::from_millis(10)
            };
            self.turn(now, live, Some(wait))?;
        }
        self.ctx.stats.ramp = Duration::from_nanos(now_ns() - ramp_start);
        self.publish(live);
        Ok(())
    }

    /// Warm-up and measured window from `t0` on: fill every echo/flood window, follow the rate/pubsub schedule,
    /// until the end (or the main thread's early stop). Returns the end.
    fn measure(&mut self, t0: u64, live: &Live, sync: &Sync) -> std::io::Result<u64> {
        let plan = self.ctx.plan.clone();
        self.ctx.warm_end = t0 + plan.warmup.as_nanos() as u64;
        self.ctx.end = self.ctx.warm_end + plan.duration.as_nanos() as u64;
        self.ctx.phase = Phase::Run;
        let mut schedule = Schedule::new(&plan, &self.conns, t0);
        // Echo/flood: fill every connection's window.
        for i in 0..self.conns.len() {
            self.mark_dirty(i);
        }
        let mut end = self.ctx.end;
        loop {
            let now = now_ns();
            let stop = sync.stop_ns.load(Relaxed);
            if stop != 0 && stop < end {
                end = stop;
                self.ctx.end = stop;
            }
            if now >= end {
                break;
            }
            // Closed loop (echo, flood): completions only, the tick bounds how late the end is seen. A schedule
            // (rate, pubsub) wakes for its next send.
            let wait = if schedule.is_active() || !self.ctx.tick_armed {
                let wait = Duration::from_nanos((end - now).min(100_000_000));
                Some(self.assign_due(&mut schedule, now, end, wait))
            } else {
                None
            };
            self.turn(now, live, wait)?;
        }
        Ok(end)
    }

    /// Send a close frame on every open connection and wait, until `end + --close-timeout`, for the server's close
    /// and EOF; then shut down whatever is left.
    fn close_all(&mut self, end: u64, live: &Live) -> std::io::Result<()> {
        self.ctx.phase = Phase::Close;
        let n = self.conns.len();
        let deadline = end + self.ctx.plan.close_timeout.as_nanos() as u64;
        for i in 0..n {
            let c = &mut self.conns[i];
            if c.st == St::Open {
                c.st = St::Closing;
                self.ctx.open -= 1;
                if let Some(p) = c.proto.as_mut() {
                    p.close(1000, "", std::time::Instant::now());
                    p.poll_transmit(&mut c.ctrl);
                }
                self.mark_dirty(i);
            }
        }
        loop {
            let now = now_ns();
            let busy = self
                .conns
                .iter()
                .any(|c| c.st != St::Dead && c.st != St::Idle);
            if !busy || now >= deadline {
                break;
            }
            self.turn(
                now,
                live,
                Some(Duration::from_nanos((deadline - now).min(10_000_000))),
            )?;
        }
        // Whatever is left: shut the sockets down so their operations complete.
        for i in 0..n {
            if self.conns[i].st != St::Dead && self.conns[i].st != St::Idle {
                self.kill(i);
            }
        }
        Ok(())
    }

    /// Reap, for at most 200 ms, the completions of operations still in flight.
    fn drain(&mut self) -> std::io::Result<()> {
        let stop = now_ns() + 200_000_000;
        while self
            .conns
            .iter()
            .any(|c| c.connecting || c.recv_armed || c.send_busy)
            && now_ns() < stop
        {
            self.wait(Duration::from_millis(10))?;
            self.reap(now_ns());
        }
        Ok(())
    }
}

/// Wait until the main thread starts the clock (every reactor has finished its ramp-up); returns the start.
fn wait_for_start(sync: &Sync) -> u64 {
    loop {
        let s = sync.start_ns.load(Acquire);
        if s != 0 {
            break s;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
}

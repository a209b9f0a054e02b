//! One worker: a pinned thread that owns an io_uring (with its provided-buffer ring), a connection slab, its own
//! `SO_REUSEPORT` listener, timers and the outbound batching. Completion-driven:
//!
//! 1. one `io_uring_enter` submits every queued SQE and waits for completions (or the next timer check);
//! 2. every completion is handled: accept -> new slot + multishot recv; recv -> bytes into the connection's phase
//!    (HTTP head, or the protocol core, unmasked in place in the ring buffer), events to the handler, the buffer
//!    back to the ring; send -> advance the queue;
//! 3. flush: each connection that queued bytes this turn gets ONE send (or sendmsg) — frames are corked per turn.
//!
//! Files: this one holds the loop and the completion handlers; `io.rs` every submission (the ring glue);
//! `lifecycle.rs` accept, teardown and shutdown; `http.rs` the HTTP phase; `session.rs` the WebSocket session;
//! `timers.rs` the once-a-second sweep; `tls.rs` TLS between recv and the phases; `conn.rs` a connection's state;
//! `paused.rs` the bytes that arrive after backpressure paused a connection's reads.
//! Only this file and `io.rs` know io_uring.
//!
//! Slots are freed only when no recv is armed and no send is in flight; `user_data` carries a generation so a
//! completion for a previous occupant of a slot is recognised (its buffer still goes back to the ring).

mod conn;
mod http;
mod io;
mod lifecycle;
mod paused;
mod session;
mod timers;
mod tls;

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::Socket;

use super::config::SlowConsumerPolicy;
use super::error::StartError;
use super::handler::Handler;
use super::local::{Local, RxSpan};
use super::outbound::{IoVecs, SendStatus};
use super::pubsub::Publish;
use super::shared::Shared;
use crate::proto::Limits;
use crate::uring::{cqueue, Cqe, Ring};
use conn::{Conn, Phase, ABOVE_LOW, DEAD, PAUSED, PING_SENT};
pub(crate) use io::listen;
use io::{ud_parts, K_ACCEPT, K_EVENTFD, K_RECV, K_SEND, K_TICK};

/// Extra slots beyond `max_connections_per_worker` for connections still in the HTTP phase (so an upgrade over
/// the limit can be answered with 503 instead of a reset).
const HTTP_RESERVE: usize = 1024;

/// With `flush_delay`, a wait returns early once this many completions are in.
const COALESCE_MAX: usize = 256;
/// With `flush_delay`, a turn that read this much is followed by a wait that does not gather (see `run`).
const COALESCE_BYTES: u64 = 256 << 10;

/// The timers' period (see `timers.rs`).
const TICK: Duration = Duration::from_secs(1);

/// The index of the worker's receive buffer ring in its `Ring`.
const BUFS: usize = 0;
/// Receive buffers a worker gives the kernel at start; it doubles them (up to `Config::recv_buffers`) each time a
/// receive runs out, so a worker that never needs the whole ring never touches its memory.
const RECV_BUFFERS_INITIAL: u16 = 8;
/// Sweeps in a row in which the receive ring had more buffers than its recent need (and ran out of none) before it
/// is shrunk to that need (see `Worker::trim_recv_ring`).
const RECV_TRIM_AFTER: u8 = 3;

/// The worker's clock: read once per loop turn.
struct Clock {
    start: Instant,
    now: Instant,
    /// Whole seconds since the worker started (the unit of the per-connection timers).
    secs: u32,
}

pub(crate) struct Worker<H: Handler> {
    ring: Ring,
    id: usize,
    handler: Arc<H>,
    listener: Option<Socket>,
    mailbox_rx: Receiver<Publish>,
    efd_buf: Box<u64>,
    /// The tick's period (boxed: the kernel reads it by address while the multishot timeout is armed).
    tick_ts: Box<crate::uring::uring_types::Timespec>,
    /// A multishot tick is armed: the loop waits without a timeout.
    tick_armed: bool,
    /// The tick fired since the last sweep.
    tick_due: bool,
    /// `Config::flush_delay`: how long a wait may gather completions before the turn runs (zero: none).
    coalesce: Duration,
    conns: Slab<Conn<H::Data>>,
    local: Local,
    limits: Limits,
    starved: Vec<u32>,
    cqes: Vec<Cqe>,
    /// Boxed: a connection holds its iovecs by pointer while a sendmsg is in flight (stable address, small slot).
    #[allow(clippy::vec_box)]
    iov_pool: Vec<Box<IoVecs>>,
    clock: Clock,
    next_sweep: Instant,
    /// The most bytes one turn read since the last sweep; how many sweeps in a row the receive ring has been larger
    /// than it needed, and the largest need in those; `enobufs` at the last sweep (see `trim_recv_ring`).
    recv_peak_turn: u64,
    recv_calm: u8,
    recv_calm_need: u16,
    enobufs_seen: u64,
    accept_armed: bool,
    accept_retry_at: Option<Instant>,
    stopping: Option<Instant>,
    /// Present when the server speaks TLS.
    tls: Option<tls::TlsWorker>,
    /// Bytes received by paused connections, fed to them when they resume.
    paused: paused::PausedInput,
}

impl<H: Handler> Worker<H> {
    /// Build the worker's ring (on the worker's own thread) and its buffer ring.
    pub(super) fn new(
        id: usize,
        shared: Arc<Shared>,
        handler: Arc<H>,
        listener: Socket,
        mailbox_rx: Receiver<Publish>,
    ) -> Result<Self, StartError> {
        let cfg = &shared.config;
        let mut ring = Ring::new(cfg.ring_entries, cfg.ring_entries * 4)
            .map_err(|e| StartError::IoUringUnavailable(e.advice))?;
        if !cfg.flush_delay.is_zero() && !ring.can_coalesce() {
            return Err(StartError::Unsupported(
                "flush_delay needs Linux 6.12 or later (io_uring's minimum wait time); set it to 0 here",
            ));
        }
        let bufs = ring
            .add_buf_ring(
                cfg.recv_buffers,
                cfg.recv_buffer_size,
                0,
                RECV_BUFFERS_INITIAL,
            )
            .map_err(StartError::Io)?;
        debug_assert_eq!(bufs, BUFS);
        let mut local = Local::new(shared.clone(), id);
        // Sends straight from receive buffers may hold at most a quarter of the ring (see `BufPool`).
        local.pool.ring_cap = (cfg.recv_buffers as usize / 4).max(1);
        let limits = Limits {
            max_message_size: cfg.max_message_size,
            max_frame_size: cfg.max_frame_size,
            close_timeout: cfg.close_timeout,
        };
        let now = Instant::now();
        let tls = shared
            .tls
            .as_ref()
            .map(|store| tls::TlsWorker::new(store, cfg.max_tls_handshakes_per_worker));
        Ok(Worker {
            ring,
            id,
            handler,
            listener: Some(listener),
            mailbox_rx,
            efd_buf: Box::new(0),
            tick_ts: Box::new(crate::uring::uring_types::Timespec::from(TICK)),
            tick_armed: false,
            tick_due: false,
            coalesce: cfg.flush_delay,
            // Reserved up front (virtual memory: pages become resident only as slots are used), so growing to many
            // connections never copies the slab or leaves the old copy's pages resident.
            conns: Slab::with_capacity(
                (cfg.max_connections_per_worker + HTTP_RESERVE).min(1 << 20),
            ),
            local,
            limits,
            starved: Vec::new(),
            cqes: Vec::with_capacity(4096),
            iov_pool: Vec::new(),
            clock: Clock {
                start: now,
                now,
                secs: 0,
            },
            next_sweep: now + Duration::from_secs(1),
            recv_peak_turn: 0,
            recv_calm: 0,
            recv_calm_need: 0,
            enobufs_seen: 0,
            accept_armed: false,
            accept_retry_at: None,
            stopping: None,
            tls,
            paused: paused::PausedInput::default(),
        })
    }

    fn shared(&self) -> &Shared {
        &self.local.shared
    }

    pub(super) fn run(mut self) -> std::io::Result<()> {
        self.arm_accept();
        self.arm_eventfd();
        self.arm_tick();
        let mut bytes_in_before = self.local.c.bytes_in;
        loop {
            self.flush_dirty();
            self.local.c.loop_turns += 1;
            self.shared().stats[self.id].store(&self.local.c);
            // With the tick armed, wait for completions only (no hrtimer armed per wait); while shutting down (a
            // 100 ms sweep) or without multishot timeouts, wait until the next sweep.
            let wait = (!self.tick_armed || self.stopping.is_some()).then(|| {
                self.next_sweep
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1))
            });
            // Coalescing (`flush_delay`): the wait returns once COALESCE_MAX completions are in, or once the delay
            // has passed since it began and at least one is, so what arrives within the delay is read and answered
            // in one wake-up and its answers leave together. An idle worker still sleeps until its first
            // completion, which then returns at once. Not while shutting down.
            // After a turn that read COALESCE_BYTES or more, the next wait does not gather: at that volume a
            // wake-up already carries many messages, and gathering more only grows the queues past what one send
            // takes (short sends, paused reads).
            let turn_in = self.local.c.bytes_in
                - std::mem::replace(&mut bytes_in_before, self.local.c.bytes_in);
            self.recv_peak_turn = self.recv_peak_turn.max(turn_in);
            let batch =
                (!self.coalesce.is_zero() && self.stopping.is_none() && turn_in < COALESCE_BYTES)
                    .then_some((COALESCE_MAX, self.coalesce));
            self.ring.submit_and_wait_batched(wait, batch)?;
            self.clock.now = Instant::now();
            self.clock.secs = (self.clock.now - self.clock.start).as_secs() as u32;
            self.reap();
            self.rearm_starved();
            if self.shared().stopping() && self.stopping.is_none() {
                self.begin_shutdown();
            }
            if self.tick_due || self.clock.now >= self.next_sweep {
                self.tick_due = false;
                self.sweep();
                self.apply_ring_holds();
                self.trim_recv_ring();
                let bufs = self.ring.bufs(BUFS);
                self.local.c.recv_buffers_held = bufs.held() as u64;
                self.local.c.send_buffers_pooled = self.local.pool.pooled_bytes() as u64;
                self.local.c.recv_buffers_provided = u64::from(bufs.provided());
                self.local.c.paused_input_bytes = self.paused.bytes() as u64;
            }
            if self.shutdown_done() {
                break;
            }
        }
        self.flush_dirty();
        self.shared().stats[self.id].store(&self.local.c);
        Ok(())
    }

    /// Once a sweep: after a burst grew the receive ring, give the memory of the buffers the load no longer needs
    /// back to the system. A sweep's need is what its busiest turn read, in buffers, plus the held ones and the one
    /// the kernel is filling, twice over (at least the initial 8). Once the ring has been larger than the need for
    /// `RECV_TRIM_AFTER` sweeps in a row without running out, it shrinks to the largest need of those sweeps
    /// (`BufRing::shrink_to`). A receive that runs out grows it again at once, so a steady load keeps its size.
    fn trim_recv_ring(&mut self) {
        let ran_out =
            std::mem::replace(&mut self.enobufs_seen, self.local.c.enobufs) != self.local.c.enobufs;
        let size = u64::from(self.shared().config.recv_buffer_size);
        let peak = std::mem::take(&mut self.recv_peak_turn);
        let bufs = self.ring.bufs(BUFS);
        let need = (peak.div_ceil(size) as usize + bufs.held() + 1) * 2;
        let need = need
            .max(usize::from(RECV_BUFFERS_INITIAL))
            .next_power_of_two()
            .min(usize::from(u16::MAX)) as u16;
        if ran_out || bufs.provided() <= need {
            self.recv_calm = 0;
            self.recv_calm_need = 0;
            return;
        }
        self.recv_calm += 1;
        self.recv_calm_need = self.recv_calm_need.max(need);
        if self.recv_calm >= RECV_TRIM_AFTER {
            bufs.shrink_to(self.recv_calm_need);
            self.recv_calm = 0;
            self.recv_calm_need = 0;
        }
    }

    fn reap(&mut self) {
        let mut cqes = std::mem::take(&mut self.cqes);
        while self.ring.reap(&mut cqes) {
            for c in &cqes {
                let (kind, gen, slot) = ud_parts(c.user_data);
                match kind {
                    K_RECV => self.on_recv(slot, gen, c.result, c.flags),
                    K_SEND => self.on_send(slot, gen, c.result),
                    K_ACCEPT => self.on_accept(c.result, c.flags),
                    K_EVENTFD => self.on_eventfd(),
                    K_TICK => self.on_tick(c.result, c.flags),
                    _ => {}
                }
            }
            // Receive buffers whose last hold ended go back before the kernel needs them.
            self.apply_ring_holds();
        }
        self.cqes = cqes;
    }

    fn on_tick(&mut self, res: i32, flags: u32) {
        if res == -libc::ETIME {
            self.tick_due = true;
        }
        if !cqueue::more(flags) {
            // The kernel refused multishot timeouts (EINVAL before 6.4) or ended it: timed waits from now on.
            self.tick_armed = false;
            if res != -libc::ETIME && res != -libc::ECANCELED {
                tracing::debug!(worker = self.id, res, "no multishot timeout; timed waits");
            }
        }
    }

    fn on_eventfd(&mut self) {
        self.shared().hub.clear_notified(self.id);
        while let Ok(p) = self.mailbox_rx.try_recv() {
            self.deliver(&p);
        }
        self.arm_eventfd();
    }

    fn on_recv(&mut self, slot: u32, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let buf_more = cqueue::buffer_more(flags);
        let live = matches!(self.conns.get(slot as usize), Some(c) if c.gen == gen);
        if live && !more {
            self.conns[slot as usize].flags &= !conn::RECV_ARMED;
        }
        if res > 0 {
            let n = res as usize;
            let mut peer_closed = false;
            if let Some(b) = bid {
                let bufs = self.ring.bufs(BUFS);
                // Split borrows: the data lives in the buffer ring, the state in the slab.
                match bufs.take(b, n) {
                    Some(data) if live && !self.conns[slot as usize].is(DEAD) => {
                        self.local.c.bytes_in += n as u64;
                        let conn = &mut self.conns[slot as usize];
                        conn.last_rx = self.clock.secs;
                        conn.flags &= !PING_SENT;
                        if conn.is(PAUSED) || self.paused.has(slot) {
                            // Posted before the pause's cancel took effect: kept for when it resumes.
                            self.paused.hold(slot, data);
                        } else {
                            // Large payloads of this read can be sent straight from its buffer.
                            let rx = RxSpan::of(data, b);
                            peer_closed = feed(
                                &*self.handler,
                                &mut self.local,
                                &self.limits,
                                self.tls.as_mut(),
                                slot,
                                conn,
                                data,
                                Some(rx),
                                self.clock.now,
                            );
                        }
                    }
                    _ => {}
                }
                // Holds this read took on its buffer count before the buffer's own release.
                self.apply_ring_holds();
                self.ring.bufs(BUFS).release(b, buf_more);
            }
            if peer_closed {
                self.kill(slot, 1006);
            }
            self.after_io(slot, gen);
            if live && !more {
                self.arm_recv(slot);
            }
            return;
        }
        if let Some(b) = bid {
            self.ring.bufs(BUFS).release(b, buf_more);
        }
        if !live {
            return;
        }
        match -res {
            libc::ENOBUFS => {
                self.local.c.enobufs += 1;
                // The kernel used up the buffers it has: give it more (untouched ones), if any are left.
                self.ring.bufs(BUFS).grow();
                if !more {
                    self.starved.push(slot);
                }
            }
            libc::ECANCELED => {
                // Cancelled to pause reading; if the pause already ended (the send completion was reaped first,
                // while this recv still counted as armed), reading resumes here.
                if !more {
                    self.arm_recv(slot);
                }
            }
            _ => {
                // EOF (0) or a reset: the peer is gone.
                self.kill(slot, 1006);
            }
        }
        self.try_free(slot);
    }

    fn on_send(&mut self, slot: u32, gen: u32, res: i32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.gen != gen {
            return;
        }
        if let Some(b) = conn.iov.take() {
            self.iov_pool.push(b);
        }
        if res < 0 {
            conn.out.abandon(&mut self.local.pool);
            if !conn.is(DEAD) {
                self.kill(slot, 1006);
            }
            self.try_free(slot);
            return;
        }
        conn.out.complete_send(res as usize, &mut self.local.pool);
        self.local.c.bytes_out += res as u64;
        conn.last_tx = self.clock.secs;
        if conn.is(DEAD) {
            conn.out.abandon(&mut self.local.pool);
            self.try_free(slot);
            return;
        }
        if conn.out.has_unsent() {
            self.submit_send(slot);
        }
        let conn = &mut self.conns[slot as usize];
        if !self.local.backpressure.above_low(conn.out.queued()) {
            if conn.is(PAUSED) {
                conn.flags &= !PAUSED;
                self.resume_reading(slot);
            }
            let conn = &mut self.conns[slot as usize];
            if conn.is(ABOVE_LOW) {
                conn.flags &= !ABOVE_LOW;
                session::drain(&*self.handler, &mut self.local, slot, conn);
                self.apply_close_request(slot);
            }
        }
        let conn = &self.conns[slot as usize];
        if conn.finished() {
            let code = conn.close_code;
            self.kill(slot, code);
        }
        self.after_io(slot, gen);
    }

    /// Give a publish to this worker's subscribers of its topic.
    fn deliver(&mut self, p: &Publish) {
        let policy = self.shared().config.slow_consumer;
        let mut to_close = Vec::new();
        let local = &mut self.local;
        for &slot in local.topics.subscribers(&p.topic) {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            match session::offer_publish(
                &local.backpressure,
                &mut local.deflate,
                &mut local.c,
                local.worker,
                slot,
                conn,
                p,
            ) {
                None => {}
                Some(SendStatus::Sent) => {
                    local.c.messages_out += 1;
                    local.dirty.push(slot);
                }
                Some(SendStatus::Buffered) => local.c.messages_out += 1,
                Some(SendStatus::Dropped) => match policy {
                    SlowConsumerPolicy::Drop => local.c.dropped_messages += 1,
                    SlowConsumerPolicy::Close => to_close.push(slot),
                },
            }
        }
        for slot in to_close {
            self.local.c.slow_consumer_closes += 1;
            self.close_ws(slot, 1008, "slow consumer");
        }
    }

    /// Deliver the publishes handler callbacks made, here and on the other workers (in call order).
    fn publish_pending(&mut self) {
        while self.local.topics.has_pending() {
            for p in self.local.topics.take_pending() {
                self.local.c.cross_worker_dropped += self.shared().hub.forward(self.id, &p);
                self.deliver(&p);
            }
        }
    }
}

/// Hand received bytes to a connection: through its TLS session if it has one, then to its phase (the HTTP head or
/// the WebSocket session). `rx`: where the bytes lie in the receive ring, so large payloads can be sent from there
/// (None for bytes copied out of it). Returns whether the peer closed (a TLS close_notify).
#[allow(clippy::too_many_arguments)]
fn feed<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    tls: Option<&mut tls::TlsWorker>,
    slot: u32,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
    rx: Option<RxSpan>,
    now: Instant,
) -> bool {
    if conn.tls.is_some() {
        let tw = tls.expect("TLS sessions only on a TLS worker");
        return tls::read(h, local, limits, tw, slot, conn, data, rx, now);
    }
    match conn.phase {
        Phase::Ws { .. } => {
            local.rx = rx;
            session::read(h, local, slot, conn, data, now);
            local.rx = None;
        }
        Phase::Http { .. } => http::read(h, local, limits, slot, conn, data, now),
        Phase::Done => {}
    }
    false
}

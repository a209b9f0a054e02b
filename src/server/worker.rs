//! One worker: a pinned thread that owns an io_uring, a connection slab, a provided-buffer ring, its own
//! `SO_REUSEPORT` listener, timers and the outbound batching. Completion-driven:
//!
//! 1. one `io_uring_enter` submits every queued SQE and waits for completions (or the next timer check);
//! 2. every completion is handled: accept -> new slot + multishot recv; recv -> bytes into the protocol core
//!    (unmasked in place in the ring buffer), events to the handler, the buffer back to the ring; send -> advance
//!    the queue;
//! 3. flush: each connection that queued bytes this turn gets ONE send (or sendmsg) — frames are corked per turn.
//!
//! Slots are freed only when no recv is armed and no send is in flight; `user_data` carries a generation so a
//! completion for a previous occupant of a slot is recognised (its buffer still goes back to the ring).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use super::config::SlowConsumerPolicy;
use super::handler::{
    ConnId, Handler, Message, Response, ServerContext, Upgrade, UpgradeRequest, WebSocket,
};
use super::outbound::{BufPool, IoVecs, Outbound, Prepared, SendStatus, MAX_IOV};
use super::pubsub::{Publish, TopicTable};
use super::stats::Counters;
use super::Shared;
use crate::bufring::BufRing;
use crate::handshake::{self, Request};
use crate::proto::{Connection, Event, Limits, OpCode, Role, State};

// user_data layout: kind (8 bits) | generation (24 bits) | slot (32 bits).
const K_ACCEPT: u64 = 1;
const K_RECV: u64 = 2;
const K_SEND: u64 = 3;
const K_EVENTFD: u64 = 4;
const K_IGNORE: u64 = 5;
const GEN_MASK: u32 = 0xff_ffff;

#[inline]
fn ud(kind: u64, slot: u32, gen: u32) -> u64 {
    (kind << 56) | (((gen & GEN_MASK) as u64) << 32) | slot as u64
}
#[inline]
fn ud_parts(u: u64) -> (u64, u32, u32) {
    (u >> 56, ((u >> 32) as u32) & GEN_MASK, u as u32)
}

// Connection flags.
const RECV_ARMED: u8 = 1;
const PAUSED: u8 = 2;
const DEAD: u8 = 4;
const CLOSE_AFTER_FLUSH: u8 = 8;
const PING_SENT: u8 = 16;
const ABOVE_LOW: u8 = 32;

/// Extra slots beyond `max_connections_per_worker` for connections still in the HTTP phase (so an upgrade over
/// the limit can be answered with 503 instead of a reset).
const HTTP_RESERVE: usize = 1024;

enum Phase<D> {
    /// Reading the request head.
    Http { buf: Vec<u8>, since: u32 },
    /// An open (or closing) WebSocket.
    Ws { proto: Connection, data: D },
    /// Answering HTTP, or torn down.
    Done,
}

struct Conn<D> {
    fd: i32,
    gen: u32,
    flags: u8,
    /// Coarse seconds (worker clock) of the last byte received / the last send progress.
    last_rx: u32,
    last_tx: u32,
    /// Close code reported to the handler (peer's code, ours on failure, 1006 on transport loss).
    close_code: u16,
    out: Outbound,
    iov: Option<Box<IoVecs>>,
    topics: Vec<Arc<str>>,
    phase: Phase<D>,
}

/// Worker state that handler callbacks can reach through `WebSocket` (everything but the slab and the ring).
pub(crate) struct Local {
    pub shared: Arc<Shared>,
    pub worker: usize,
    pub max_backpressure: usize,
    pub pool: BufPool,
    pub topics: TopicTable,
    pub publishes: Vec<Publish>,
    pub close_request: Option<(u16, String)>,
    pub c: Counters,
    /// Slots that queued bytes on an empty queue this turn: each gets one send at the end of the turn.
    pub dirty: Vec<u32>,
    /// Scratch space for the protocol core's control frames.
    scratch: Vec<u8>,
}

impl Local {
    #[inline]
    pub fn note_send(&mut self, slot: u32, st: SendStatus) {
        match st {
            SendStatus::Sent => {
                self.c.messages_out += 1;
                self.dirty.push(slot);
            }
            SendStatus::Buffered => self.c.messages_out += 1,
            SendStatus::Dropped => self.c.dropped_messages += 1,
        }
    }
    pub fn publish(&mut self, topic: &str, frame: bytes::Bytes, exclude: Option<ConnId>) {
        self.c.publishes += 1;
        self.publishes.push(Publish {
            topic: Arc::from(topic),
            frame,
            exclude,
        });
    }
}

pub(crate) struct Worker<H: Handler> {
    // Field order matters for drop: the ring (and the buffer registration) goes before the buffer memory.
    ring: IoUring,
    bufs: BufRing,
    id: usize,
    handler: Arc<H>,
    listener: Option<Socket>,
    mailbox_rx: Receiver<Publish>,
    efd_buf: Box<u64>,
    conns: Slab<Conn<H::Data>>,
    local: Local,
    limits: Limits,
    starved: Vec<u32>,
    cqes: Vec<(u64, i32, u32)>,
    /// Boxed: a connection holds its iovecs by pointer while a sendmsg is in flight (stable address, small slot).
    #[allow(clippy::vec_box)]
    iov_pool: Vec<Box<IoVecs>>,
    start: Instant,
    now: Instant,
    secs: u32,
    next_sweep: Instant,
    accept_armed: bool,
    accept_retry_at: Option<Instant>,
    stopping: Option<Instant>,
}

/// Why io_uring cannot be used here, and how to fix it, from the error of a failed ring setup.
///
/// There is no separate probe: a ring created and dropped on the caller's thread would make the kernel's ring-exit
/// work signal that thread later (task work with `TWA_SIGNAL`), failing its timed blocking calls with `EINTR`. Each
/// worker builds its own ring and explains a failure with this.
pub(crate) fn explain_ring_error(e: &io::Error) -> String {
    let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (needs Linux 6.1+), or a seccomp filter blocks \
                               io_uring_setup (containers: run with a seccomp profile that allows io_uring)"
            .to_string(),
        Some(libc::EPERM) => match sysctl.as_deref().map(str::trim) {
            Some(v) if v != "0" => format!(
                "kernel.io_uring_disabled = {v}; allow it with `sysctl -w kernel.io_uring_disabled=0` \
                 (or 1 plus membership in kernel.io_uring_group)"
            ),
            _ => "permission denied by a seccomp filter or LSM; allow io_uring_setup for this process".into(),
        },
        Some(libc::ENOMEM) => "not enough locked memory (RLIMIT_MEMLOCK); raise it with `ulimit -l unlimited` or in \
                               /etc/security/limits.conf"
            .into(),
        _ => format!("io_uring_setup failed: {e}"),
    }
}

pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

fn build_ring(entries: u32) -> io::Result<IoUring> {
    // Best first: single issuer + deferred task work (completions run only when we enter the ring).
    let attempts: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer()
                .setup_coop_taskrun()
                .setup_defer_taskrun();
        },
        |b| {
            b.setup_coop_taskrun();
        },
        |_| {},
    ];
    let mut last = None;
    for f in attempts {
        let mut b = IoUring::builder();
        b.setup_cqsize(entries * 4);
        f(&mut b);
        match b.build(entries) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no ring")))
}

macro_rules! ws_ctx {
    ($slot:expr, $conn:expr, $data:expr, $local:expr, $can_send:expr) => {
        WebSocket {
            id: conn_id($local.worker, $slot, $conn.gen),
            slot: $slot,
            data: $data,
            out: &mut $conn.out,
            topics: &mut $conn.topics,
            local: &mut $local,
            can_send: $can_send,
        }
    };
}

#[inline]
fn conn_id(worker: usize, slot: u32, gen: u32) -> ConnId {
    ConnId(((worker as u64) << 56) | ((gen as u64 & GEN_MASK as u64) << 32) | slot as u64)
}

impl<H: Handler> Worker<H> {
    pub fn new(
        id: usize,
        shared: Arc<Shared>,
        handler: Arc<H>,
        listener: Socket,
        mailbox_rx: Receiver<Publish>,
    ) -> Result<Self, super::StartError> {
        let cfg = &shared.config;
        let ring = build_ring(cfg.ring_entries)
            .map_err(|e| super::StartError::IoUringUnavailable(explain_ring_error(&e)))?;
        let bufs = BufRing::new(&ring.submitter(), cfg.recv_buffers, cfg.recv_buffer_size, 0)
            .map_err(super::StartError::Io)?;
        let limits = Limits {
            max_message_size: cfg.max_message_size,
            max_frame_size: cfg.max_frame_size,
            close_timeout: cfg.close_timeout,
        };
        let now = Instant::now();
        Ok(Worker {
            ring,
            bufs,
            id,
            handler,
            listener: Some(listener),
            mailbox_rx,
            efd_buf: Box::new(0),
            // Reserved up front (virtual memory: pages become resident only as slots are used), so growing to many
            // connections never copies the slab or leaves the old copy's pages resident.
            conns: Slab::with_capacity(
                (cfg.max_connections_per_worker + HTTP_RESERVE).min(1 << 20),
            ),
            local: Local {
                max_backpressure: cfg.max_backpressure,
                shared: shared.clone(),
                worker: id,
                pool: BufPool::default(),
                topics: TopicTable::default(),
                publishes: Vec::new(),
                close_request: None,
                c: Counters::default(),
                dirty: Vec::with_capacity(1024),
                scratch: Vec::with_capacity(256),
            },
            limits,
            starved: Vec::new(),
            cqes: Vec::with_capacity(4096),
            iov_pool: Vec::new(),
            start: now,
            now,
            secs: 0,
            next_sweep: now + Duration::from_secs(1),
            accept_armed: false,
            accept_retry_at: None,
            stopping: None,
        })
    }

    fn shared(&self) -> &Shared {
        &self.local.shared
    }

    /// Queue an SQE, submitting what is queued if the submission queue is full.
    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every SQE we build points only at memory that outlives the operation: ring buffers (owned
            // by `self.bufs`), outbound segments (kept in the queue until the send completes), boxed iovecs (kept
            // in the connection until completion), the boxed eventfd buffer (lives as long as the worker).
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                if err.raw_os_error() != Some(libc::EBUSY) {
                    tracing::error!(worker = self.id, "io_uring submit failed: {err}");
                }
            }
        }
    }

    fn arm_accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let e = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
            .build()
            .user_data(ud(K_ACCEPT, 0, 0));
        self.push(e);
        self.accept_armed = true;
    }

    fn arm_eventfd(&mut self) {
        let fd = self.shared().mailboxes[self.id].eventfd();
        let p = (&mut *self.efd_buf) as *mut u64 as *mut u8;
        let e = opcode::Read::new(types::Fd(fd), p, 8)
            .build()
            .user_data(ud(K_EVENTFD, 0, 0));
        self.push(e);
    }

    fn arm_recv(&mut self, slot: u32) {
        let Some(c) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if c.flags & (RECV_ARMED | DEAD | PAUSED) != 0 {
            return;
        }
        c.flags |= RECV_ARMED;
        let e = opcode::RecvMulti::new(types::Fd(c.fd), self.bufs.bgid)
            .build()
            .user_data(ud(K_RECV, slot, c.gen));
        self.push(e);
    }

    pub fn run(mut self) -> io::Result<()> {
        self.arm_accept();
        self.arm_eventfd();
        loop {
            self.flush_dirty();
            self.bufs.publish();
            self.local.c.loop_turns += 1;
            self.shared().stats[self.id].store(&self.local.c);
            let wait = self
                .next_sweep
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let ts = types::Timespec::from(wait);
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                    ) => {}
                Err(e) => return Err(e),
            }
            self.now = Instant::now();
            self.secs = (self.now - self.start).as_secs() as u32;
            self.reap();
            self.rearm_starved();
            if self.shared().stop.load(Ordering::Acquire) && self.stopping.is_none() {
                self.begin_shutdown();
            }
            if self.now >= self.next_sweep {
                self.sweep();
            }
            if let Some(deadline) = self.stopping {
                if self.conns.is_empty() {
                    break;
                }
                if self.now >= deadline {
                    let slots: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
                    for s in slots {
                        self.kill(s, 1006);
                    }
                    if self.now >= deadline + Duration::from_secs(2) {
                        tracing::warn!(
                            worker = self.id,
                            left = self.conns.len(),
                            "giving up on in-flight operations"
                        );
                        break;
                    }
                }
            }
        }
        self.flush_dirty();
        self.shared().stats[self.id].store(&self.local.c);
        Ok(())
    }

    fn reap(&mut self) {
        loop {
            self.cqes.clear();
            self.cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            if self.cqes.is_empty() {
                return;
            }
            for i in 0..self.cqes.len() {
                let (u, res, flags) = self.cqes[i];
                let (kind, gen, slot) = ud_parts(u);
                match kind {
                    K_RECV => self.on_recv(slot, gen, res, flags),
                    K_SEND => self.on_send(slot, gen, res),
                    K_ACCEPT => self.on_accept(res, flags),
                    K_EVENTFD => self.on_eventfd(res),
                    _ => {}
                }
            }
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res < 0 {
            if self.stopping.is_none() && !self.accept_armed {
                // EMFILE and friends: retry at the next sweep, never in a hot loop.
                tracing::warn!(
                    worker = self.id,
                    "accept failed: {}",
                    io::Error::from_raw_os_error(-res)
                );
                self.accept_retry_at = Some(self.now + Duration::from_millis(500));
            }
            return;
        }
        if !self.accept_armed && self.stopping.is_none() {
            self.arm_accept();
        }
        let fd = res;
        if self.stopping.is_some()
            || self.conns.len() >= self.shared().config.max_connections_per_worker + HTTP_RESERVE
        {
            self.local.c.rejected_capacity += 1;
            // SAFETY: `fd` was just returned by accept and is owned by nobody else.
            unsafe { libc::close(fd) };
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a live local; failure is harmless (Nagle stays on).
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        let entry = self.conns.vacant_entry();
        let slot = entry.key() as u32;
        // A generation per slot occupant: derived from a worker-wide counter so reuse is detected.
        let gen = (self.local.c.accepted as u32) & GEN_MASK;
        entry.insert(Conn {
            fd,
            gen,
            flags: 0,
            last_rx: self.secs,
            last_tx: self.secs,
            close_code: 1006,
            out: Outbound::default(),
            iov: None,
            topics: Vec::new(),
            phase: Phase::Http {
                buf: Vec::new(),
                since: self.secs,
            },
        });
        self.local.c.accepted += 1;
        self.local.c.connections += 1;
        self.arm_recv(slot);
    }

    fn on_eventfd(&mut self, _res: i32) {
        self.shared().mailboxes[self.id].clear_notified();
        while let Ok(p) = self.mailbox_rx.try_recv() {
            self.deliver(p);
        }
        self.arm_eventfd();
    }

    fn on_recv(&mut self, slot: u32, gen: u32, res: i32, flags: u32) {
        let bid = cqueue::buffer_select(flags);
        let more = cqueue::more(flags);
        let buf_more = cqueue::buffer_more(flags);
        let live = matches!(self.conns.get(slot as usize), Some(c) if c.gen == gen);
        if live && !more {
            self.conns[slot as usize].flags &= !RECV_ARMED;
        }
        if res > 0 {
            let n = res as usize;
            if let Some(b) = bid {
                if live && self.conns[slot as usize].flags & DEAD == 0 {
                    self.local.c.bytes_in += n as u64;
                    // Split borrows: the data lives in the buffer ring, the state in the slab.
                    if let Some(data) = self.bufs.take(b, n) {
                        let conn = &mut self.conns[slot as usize];
                        conn.last_rx = self.secs;
                        conn.flags &= !PING_SENT;
                        let h = &*self.handler;
                        on_data(h, &mut self.local, &self.limits, slot, conn, data, self.now);
                    }
                } else {
                    let _ = self.bufs.take(b, n);
                }
                self.bufs.release(b, buf_more);
            }
            self.after_io(slot, gen);
            if live && !more {
                self.arm_recv(slot);
            }
            return;
        }
        if let Some(b) = bid {
            self.bufs.release(b, buf_more);
        }
        if !live {
            return;
        }
        match -res {
            libc::ENOBUFS => {
                self.local.c.enobufs += 1;
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

    /// After a connection's bytes were processed: deliver publishes, apply pauses and deferred closes.
    fn after_io(&mut self, slot: u32, gen: u32) {
        while !self.local.publishes.is_empty() {
            let ps = std::mem::take(&mut self.local.publishes);
            for p in ps {
                self.forward(&p);
                self.deliver(p);
            }
        }
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.gen != gen || conn.flags & DEAD != 0 {
            return;
        }
        if conn.flags & CLOSE_AFTER_FLUSH != 0 && conn.out.queued() == 0 {
            let code = conn.close_code;
            self.kill(slot, code);
            return;
        }
        let q = conn.out.queued();
        if q > self.local.max_backpressure / 4 {
            conn.flags |= ABOVE_LOW;
        }
        if q > self.local.max_backpressure / 2 && conn.flags & PAUSED == 0 {
            conn.flags |= PAUSED;
            self.local.c.backpressure_pauses += 1;
            if conn.flags & RECV_ARMED != 0 {
                let e = opcode::AsyncCancel::new(ud(K_RECV, slot, conn.gen))
                    .build()
                    .user_data(ud(K_IGNORE, 0, 0));
                self.push(e);
            }
        }
    }

    fn forward(&mut self, p: &Publish) {
        let shared = self.local.shared.clone();
        for (i, m) in shared.mailboxes.iter().enumerate() {
            if i != self.id && !m.send(p.clone()) {
                self.local.c.cross_worker_dropped += 1;
            }
        }
    }

    /// Give a publish to this worker's subscribers of its topic.
    fn deliver(&mut self, p: Publish) {
        let mut to_close = Vec::new();
        let policy = self.shared().config.slow_consumer;
        for &slot in self.local.topics.subscribers(&p.topic) {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            if conn.flags & (DEAD | CLOSE_AFTER_FLUSH) != 0 {
                continue;
            }
            if p.exclude == Some(conn_id(self.id, slot, conn.gen)) {
                continue;
            }
            if let Phase::Ws { proto, .. } = &conn.phase {
                if !proto.can_send() {
                    continue;
                }
            }
            match conn
                .out
                .push_shared(p.frame.clone(), self.local.max_backpressure)
            {
                SendStatus::Sent => {
                    self.local.c.messages_out += 1;
                    self.local.dirty.push(slot);
                }
                SendStatus::Buffered => self.local.c.messages_out += 1,
                SendStatus::Dropped => match policy {
                    SlowConsumerPolicy::Drop => self.local.c.dropped_messages += 1,
                    SlowConsumerPolicy::Close => to_close.push(slot),
                },
            }
        }
        for slot in to_close {
            self.local.c.slow_consumer_closes += 1;
            self.close_ws(slot, 1008, "slow consumer");
        }
    }

    /// Start the closing handshake on a WebSocket (close frame after what is queued; killed after flush/timeout).
    fn close_ws(&mut self, slot: u32, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if matches!(conn.phase, Phase::Ws { .. }) {
            ws_close(&mut self.local, slot, conn, code, reason, self.now);
        } else {
            conn.flags |= CLOSE_AFTER_FLUSH;
            if conn.out.queued() == 0 {
                self.kill(slot, 1006);
            }
        }
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
            if conn.flags & DEAD == 0 {
                self.kill(slot, 1006);
            }
            self.try_free(slot);
            return;
        }
        conn.out.complete_send(res as usize, &mut self.local.pool);
        self.local.c.bytes_out += res as u64;
        conn.last_tx = self.secs;
        if conn.flags & DEAD != 0 {
            conn.out.abandon(&mut self.local.pool);
            self.try_free(slot);
            return;
        }
        if conn.out.has_unsent() {
            self.submit_send(slot);
        }
        let conn = &mut self.conns[slot as usize];
        let q = conn.out.queued();
        let low = self.local.max_backpressure / 4;
        if q <= low {
            if conn.flags & PAUSED != 0 {
                conn.flags &= !PAUSED;
                self.arm_recv(slot);
            }
            let conn = &mut self.conns[slot as usize];
            if conn.flags & ABOVE_LOW != 0 {
                conn.flags &= !ABOVE_LOW;
                if let Phase::Ws { proto, data } = &mut conn.phase {
                    let can_send = proto.can_send();
                    let mut ws = ws_ctx!(slot, conn, data, self.local, can_send);
                    self.handler.drain(&mut ws);
                }
                self.apply_close_request(slot);
            }
        }
        let conn = &mut self.conns[slot as usize];
        let done = match &conn.phase {
            Phase::Ws { proto, .. } => proto.state() == State::Closed,
            _ => conn.flags & CLOSE_AFTER_FLUSH != 0,
        };
        if done && conn.out.queued() == 0 {
            let code = conn.close_code;
            self.kill(slot, code);
        }
        self.after_io(slot, gen);
    }

    fn apply_close_request(&mut self, slot: u32) {
        if let Some((code, reason)) = self.local.close_request.take() {
            self.close_ws(slot, code, &reason);
        }
    }

    fn submit_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        let mut iov = conn
            .iov
            .take()
            .or_else(|| self.iov_pool.pop())
            .unwrap_or_else(|| {
                Box::new(IoVecs {
                    // SAFETY: msghdr is a plain C struct for which all-zeroes is a valid (empty) value.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; MAX_IOV],
                })
            });
        let fd = types::Fd(conn.fd);
        let e = match conn.out.prepare_send(&mut iov.iov) {
            Prepared::Single(p, n) => {
                self.iov_pool.push(iov);
                opcode::Send::new(fd, p, n as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Prepared::Vectored(n) => {
                iov.hdr.msg_iov = iov.iov.as_mut_ptr();
                iov.hdr.msg_iovlen = n as _;
                let hdr = &iov.hdr as *const libc::msghdr;
                conn.iov = Some(iov);
                opcode::SendMsg::new(fd, hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
        };
        conn.last_tx = self.secs;
        let e = e.user_data(ud(K_SEND, slot, conn.gen));
        self.push(e);
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.local.dirty);
        for &slot in &dirty {
            if let Some(c) = self.conns.get(slot as usize) {
                if c.flags & DEAD == 0 && c.out.has_unsent() {
                    self.submit_send(slot);
                }
            }
        }
        dirty.clear();
        // Keep the allocation; anything pushed meanwhile (none expected) is kept too.
        dirty.append(&mut self.local.dirty);
        self.local.dirty = dirty;
    }

    fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        // Buffers went back to the ring while this turn's completions were processed.
        let s = std::mem::take(&mut self.starved);
        for &slot in &s {
            self.arm_recv(slot);
        }
        self.starved = s;
        self.starved.clear();
    }

    /// Tear a connection down: report it to the handler, stop its I/O; the slot is freed once nothing is in flight.
    fn kill(&mut self, slot: u32, code: u16) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.flags & DEAD != 0 {
            return;
        }
        conn.flags |= DEAD;
        for t in conn.topics.drain(..) {
            self.local.topics.unsubscribe(&t, slot);
            self.local.shared.counts.add(&t, -1);
        }
        let gen = conn.gen;
        let id = conn_id(self.id, slot, gen);
        if let Phase::Ws { data, .. } = std::mem::replace(&mut conn.phase, Phase::Done) {
            self.local.c.websockets -= 1;
            let shared = self.local.shared.clone();
            self.handler
                .close(&ServerContext { shared: &shared }, id, data, code);
        }
        let conn = &mut self.conns[slot as usize];
        if !conn.out.in_flight() {
            conn.out.abandon(&mut self.local.pool);
        }
        // SAFETY: shutting down our own socket; it wakes an armed recv (which then completes) and fails sends.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        if conn.flags & RECV_ARMED != 0 {
            let e = opcode::AsyncCancel::new(ud(K_RECV, slot, gen))
                .build()
                .user_data(ud(K_IGNORE, 0, 0));
            self.push(e);
        }
        self.try_free(slot);
    }

    fn try_free(&mut self, slot: u32) {
        let Some(conn) = self.conns.get(slot as usize) else {
            return;
        };
        if conn.flags & DEAD == 0 || conn.flags & RECV_ARMED != 0 || conn.out.in_flight() {
            return;
        }
        let conn = self.conns.remove(slot as usize);
        if let Some(b) = conn.iov {
            self.iov_pool.push(b);
        }
        // SAFETY: the fd is ours and no operation references it any more.
        unsafe { libc::close(conn.fd) };
        self.local.c.connections -= 1;
    }

    /// Periodic checks (once a second): handshake, close and idle timeouts, stalled sends, idle memory.
    fn sweep(&mut self) {
        let period = if self.stopping.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        self.next_sweep = self.now + period;
        if let Some(t) = self.accept_retry_at {
            if self.now >= t && self.stopping.is_none() {
                self.accept_retry_at = None;
                if !self.accept_armed {
                    self.arm_accept();
                }
            }
        }
        let cfg = &self.local.shared.config;
        let hs = cfg.handshake_timeout.as_secs().max(1) as u32;
        let idle = cfg.idle_timeout.as_secs() as u32;
        let stall = cfg.send_stall_timeout.as_secs().max(1) as u32;
        let (secs, now) = (self.secs, self.now);
        enum Act {
            Kill(u16),
            HandshakeTimeout,
            Ping,
            IdleClose,
            Stall,
        }
        let mut acts = Vec::new();
        let mut queued = 0u64;
        for (k, c) in self.conns.iter_mut() {
            queued += c.out.queued() as u64;
            if c.flags & DEAD != 0 {
                continue;
            }
            let k = k as u32;
            if c.out.queued() > 0 && secs.wrapping_sub(c.last_tx) >= stall {
                acts.push((k, Act::Stall));
                continue;
            }
            match &mut c.phase {
                Phase::Http { since, .. } => {
                    if secs.wrapping_sub(*since) >= hs {
                        acts.push((k, Act::HandshakeTimeout));
                    }
                }
                Phase::Ws { proto, .. } => {
                    if let Some(t) = proto.poll_timeout() {
                        if t <= now {
                            proto.handle_timeout(now);
                            if proto.state() == State::Closed {
                                acts.push((k, Act::Kill(c.close_code)));
                                continue;
                            }
                        }
                    }
                    if idle > 0 && proto.state() == State::Open {
                        let silent = secs.wrapping_sub(c.last_rx);
                        if silent >= idle {
                            acts.push((k, Act::IdleClose));
                        } else if silent >= idle.div_ceil(2) && c.flags & PING_SENT == 0 {
                            acts.push((k, Act::Ping));
                        }
                    }
                }
                Phase::Done => {}
            }
            c.out.shrink_if_idle();
        }
        self.local.c.outbound_bytes = queued;
        for (slot, a) in acts {
            match a {
                Act::Kill(code) => self.kill(slot, code),
                Act::HandshakeTimeout => {
                    self.local.c.handshake_timeouts += 1;
                    self.kill(slot, 1006);
                }
                Act::Stall => {
                    self.local.c.send_stalls += 1;
                    self.kill(slot, 1006);
                }
                Act::IdleClose => {
                    self.local.c.idle_closes += 1;
                    self.close_ws(slot, 1001, "idle timeout");
                }
                Act::Ping => {
                    let c = &mut self.conns[slot as usize];
                    c.flags |= PING_SENT;
                    let before = c.out.queued();
                    c.out
                        .push_control(OpCode::Ping, b"ringws", &mut self.local.pool);
                    if before == 0 {
                        self.local.dirty.push(slot);
                    }
                }
            }
        }
    }

    fn begin_shutdown(&mut self) {
        let drain = self.shared().config.drain_timeout;
        self.stopping = Some(self.now + drain);
        self.next_sweep = self.now;
        if let Some(l) = self.listener.take() {
            if self.accept_armed {
                let e = opcode::AsyncCancel::new(ud(K_ACCEPT, 0, 0))
                    .build()
                    .user_data(ud(K_IGNORE, 0, 0));
                self.push(e);
            }
            // The kernel holds its own reference while the accept is being cancelled.
            let fd = l.into_raw_fd();
            // SAFETY: we own `fd` (taken from the socket above).
            unsafe { libc::close(fd) };
        }
        let slots: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        for slot in slots {
            let is_ws = matches!(self.conns[slot as usize].phase, Phase::Ws { .. });
            if is_ws {
                self.close_ws(slot, 1001, "server shutting down");
            } else {
                self.kill(slot, 1006);
            }
        }
    }
}

/// Bytes arrived for a live connection.
fn on_data<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    slot: u32,
    conn: &mut Conn<H::Data>,
    data: &mut [u8],
    now: Instant,
) {
    match &mut conn.phase {
        Phase::Ws { .. } => ws_read(h, local, slot, conn, data, now),
        Phase::Http { buf, .. } => {
            buf.extend_from_slice(data);
            let max = local.shared.config.max_request_size;
            match handshake::parse_request(buf, max) {
                Ok(None) => {}
                Err(e) => {
                    local.c.rejected_bad_request += 1;
                    respond(
                        local,
                        slot,
                        conn,
                        &Response::text(e.status, format!("{}\n", e.reason)),
                    );
                }
                Ok(Some((req, consumed))) => {
                    let rest = buf.split_off(consumed);
                    on_request(h, local, limits, slot, conn, req, rest, now);
                }
            }
        }
        Phase::Done => {}
    }
}

/// Queue an HTTP response and close after it is written.
fn respond<D>(local: &mut Local, slot: u32, conn: &mut Conn<D>, r: &Response) {
    let headers: Vec<(&str, &str)> = std::iter::once(("Content-Type", r.content_type))
        .chain(r.headers.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
    let before = conn.out.queued();
    conn.out
        .push_with(r.body.len() + 256, &mut local.pool, |v| {
            handshake::write_response(v, r.status, &headers, &r.body)
        });
    if before == 0 {
        local.dirty.push(slot);
    }
    conn.phase = Phase::Done;
    conn.flags |= CLOSE_AFTER_FLUSH;
}

#[allow(clippy::too_many_arguments)]
fn on_request<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    slot: u32,
    conn: &mut Conn<H::Data>,
    req: Request,
    mut rest: Vec<u8>,
    now: Instant,
) {
    if !req.is_upgrade() {
        let path = req.path.split('?').next().unwrap_or("");
        let r = if h.is_websocket_route(path) && req.method == "GET" {
            Response::text(
                426,
                "this is a WebSocket endpoint: connect with a WebSocket client\n",
            )
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
        } else {
            local.c.http_requests += 1;
            let shared = local.shared.clone();
            h.http(&req, &ServerContext { shared: &shared })
        };
        respond(local, slot, conn, &r);
        return;
    }
    let up = match handshake::validate_upgrade(&req) {
        Ok(u) => u,
        Err(rej) => {
            local.c.rejected_bad_request += 1;
            let mut r = Response::text(rej.status, format!("{}\n", rej.reason));
            r.headers.extend(rej.headers);
            respond(local, slot, conn, &r);
            return;
        }
    };
    if local.c.websockets as usize >= local.shared.config.max_connections_per_worker {
        local.c.rejected_capacity += 1;
        respond(
            local,
            slot,
            conn,
            &Response::text(503, "server at capacity\n").header("Retry-After", "1"),
        );
        return;
    }
    let ureq = UpgradeRequest {
        path: &req.path,
        request: &req,
        origin: up.origin.as_deref(),
        protocols: &up.protocols,
        extensions: &up.extensions,
    };
    match h.upgrade(&ureq) {
        Upgrade::Reject { status, body } => {
            local.c.rejected_upgrade += 1;
            respond(
                local,
                slot,
                conn,
                &Response::text(status, body.into_owned()),
            );
        }
        Upgrade::Accept { data, protocol } => {
            let before = conn.out.queued();
            conn.out.push_with(256, &mut local.pool, |v| {
                handshake::write_accept_response(v, &up.accept, protocol.as_deref(), None)
            });
            if before == 0 {
                local.dirty.push(slot);
            }
            let mut proto = Connection::new(Role::Server, *limits);
            // Pongs are written by `ws_read` in order with the replies of the same read.
            proto.set_auto_pong(false);
            conn.phase = Phase::Ws { proto, data };
            local.c.upgraded += 1;
            local.c.websockets += 1;
            if let Phase::Ws { data, .. } = &mut conn.phase {
                let mut ws = ws_ctx!(slot, conn, data, *local, true);
                h.open(&mut ws);
            }
            if let Some((code, reason)) = local.close_request.take() {
                ws_close(local, slot, conn, code, &reason, now);
            }
            if !rest.is_empty() {
                ws_read(h, local, slot, conn, &mut rest, now);
            }
        }
    }
}

fn ws_close<D>(
    local: &mut Local,
    slot: u32,
    conn: &mut Conn<D>,
    code: u16,
    reason: &str,
    now: Instant,
) {
    if let Phase::Ws { proto, .. } = &mut conn.phase {
        if proto.state() == State::Open {
            proto.close(code, reason, now);
            conn.close_code = code;
            transmit_control(local, slot, &mut conn.out, proto);
        }
    }
}

/// Move the core's pending control frames (pongs, close) into the outbound queue.
#[inline]
fn transmit_control(local: &mut Local, slot: u32, out: &mut Outbound, proto: &mut Connection) {
    let mut scratch = std::mem::take(&mut local.scratch);
    scratch.clear();
    if proto.poll_transmit(&mut scratch) {
        let before = out.queued();
        let s = &scratch;
        out.push_with(s.len(), &mut local.pool, |v| v.extend_from_slice(s));
        if before == 0 {
            local.dirty.push(slot);
        }
    }
    local.scratch = scratch;
}

fn ws_read<H: Handler>(
    h: &H,
    local: &mut Local,
    slot: u32,
    conn: &mut Conn<H::Data>,
    input: &mut [u8],
    now: Instant,
) {
    let Phase::Ws { proto, data } = &mut conn.phase else {
        return;
    };
    let gen = conn.gen;
    let out = &mut conn.out;
    let topics = &mut conn.topics;
    let mut can_send = proto.can_send();
    let mut peer_close: Option<u16> = None;
    let result = proto.handle_read(input, &mut |ev| {
        let msg = match ev {
            Event::Text(s) => Message::Text(s),
            Event::Binary(b) => Message::Binary(b),
            Event::Ping(p) => {
                // Answered here so the pong keeps its place among this read's replies.
                if out.queued() == 0 {
                    local.dirty.push(slot);
                }
                out.push_control(OpCode::Pong, p, &mut local.pool);
                return;
            }
            Event::Pong(_) => return,
            Event::Close { code, .. } => {
                peer_close = Some(code.unwrap_or(1005));
                return;
            }
        };
        local.c.messages_in += 1;
        if local.close_request.is_none() {
            let mut ws = WebSocket {
                id: conn_id(local.worker, slot, gen),
                slot,
                data: &mut *data,
                out: &mut *out,
                topics: &mut *topics,
                local: &mut *local,
                can_send,
            };
            h.message(&mut ws, msg);
            can_send = ws.can_send;
        }
    });
    if let Err(e) = result {
        local.c.protocol_errors += 1;
        conn.close_code = e.code;
        tracing::debug!(
            worker = local.worker,
            slot,
            code = e.code,
            reason = e.reason,
            "protocol error"
        );
    }
    if let Some(code) = peer_close {
        conn.close_code = code;
    }
    if let Some((code, reason)) = local.close_request.take() {
        if proto.state() == State::Open {
            proto.close(code, &reason, now);
            conn.close_code = code;
        }
    }
    transmit_control(local, slot, out, proto);
    if proto.state() == State::Closed || result.is_err() {
        conn.flags |= CLOSE_AFTER_FLUSH;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slot_is_small() {
        // Reported in PERF.md: the whole per-connection footprint of an idle WebSocket in the slab (protocol state,
        // outbound queue header, flags, timers); no heap allocation is held while idle.
        let slot = std::mem::size_of::<Conn<crate::app::Route>>();
        println!(
            "slab slot for the demo app: {slot} bytes (proto::Connection {} bytes)",
            std::mem::size_of::<Connection>()
        );
        assert!(slot <= 256, "{slot}");
    }
}

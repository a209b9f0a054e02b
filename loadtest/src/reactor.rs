//! One io_uring reactor per thread: opens its share of the connections, drives the load, closes, reports.
//!
//! Per connection: one recv in flight into the connection's own small buffer, at most one send in flight (everything
//! that became ready during a loop turn goes out in that one send), precomputed masked frames. All SQEs of a turn are
//! submitted with the single `io_uring_enter` that also waits for the next completions (SINGLE_ISSUER + DEFER_TASKRUN +
//! COOP_TASKRUN when the kernel has them). Connection slots are never reused, so `user_data` is just index + op.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use ringws::uring::{cqueue, opcode, uring_types as types, Cqe, Ring, Sqe, SqeFlags};

use crate::cli::{Mode, Target};
use crate::frames::{self, FrameTemplate};
use crate::stats::{record_ns, ErrKind, Live, ThreadStats};
use crate::wsframe::OpCode;
use crate::wshs::ClientHandshake;
use ringws::proto::{Connection, Event, Limits, Role};

/// Monotonic clock in ns (CLOCK_MONOTONIC: the same clock in every thread, so pubsub timestamps compare).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the local struct (vDSO, no syscall).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Everything the threads share (read-only) about the run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub target: Target,
    pub size: usize,
    pub opcode: OpCode,
    /// Echo/flood: messages outstanding per connection; rate: maximum backlog per connection.
    pub inflight: usize,
    /// Total rate (rate: msg/s over all connections; pubsub: publishes/s over all publishers).
    pub rate: f64,
    pub total_conns: usize,
    pub total_pubs: usize,
    /// Per-thread connect rate (0 = unlimited).
    pub connect_rate: f64,
    pub connect_concurrency: usize,
    pub connect_timeout: Duration,
    pub warmup: Duration,
    pub duration: Duration,
    pub close_timeout: Duration,
    pub sub_msg: Vec<u8>,
    pub pub_prefix: Vec<u8>,
    pub pub_suffix: Vec<u8>,
}

/// Coordination between the main thread and the reactors.
#[derive(Debug, Default)]
pub struct Sync {
    /// Reactors that finished their ramp-up.
    pub ready: AtomicUsize,
    /// Start of the warm-up (now_ns), set by the main thread once every reactor is ready.
    pub start_ns: AtomicU64,
    /// Early end of the measurement (Ctrl-C), set by the main thread; 0 = none.
    pub stop_ns: AtomicU64,
}

const OP_CONNECT: u64 = 1;
const OP_LINK_TIMEOUT: u64 = 2;
const OP_SEND: u64 = 3;
const OP_RECV: u64 = 4;
const OP_RECV_MULTI: u64 = 5;
const BGID: u16 = 7;

#[inline]
fn ud(i: usize, op: u64) -> u64 {
    ((i as u64) << 8) | op
}

/// Pubsub payload marker: `@LT` + 16 hex digits of the intended send time (ns) + `#`.
const MARK: &[u8; 3] = b"@LT";

/// `IORING_RECVSEND_POLL_FIRST`: a receive is armed right after the socket was drained, so skip the attempt that
/// would fail with EAGAIN and wait for readiness directly.
const RECVSEND_POLL_FIRST: u16 = 1;

fn poll_first() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("LOADTEST_NO_POLL_FIRST").is_none())
}

/// Bytes written per send at most (the rest waits for the next turn).
const MAX_SEND_BYTES: usize = 256 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Idle,
    Connecting,
    Handshaking,
    Open,
    /// Our close frame is queued or sent; waiting for the server's close and EOF.
    Closing,
    Dead,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Run,
    Close,
}

struct Conn {
    fd: i32,
    st: St,
    connecting: bool,
    recv_armed: bool,
    send_busy: bool,
    dirty: bool,
    publisher: bool,
    got_close: bool,
    key: [u8; 4],
    rlen: u32,
    soff: u32,
    /// Messages sent and not yet echoed (echo/flood/rate).
    outstanding: u32,
    /// Messages scheduled and not yet written (rate/pubsub).
    due: u32,
    send_seq: u64,
    recv_seq: u64,
    t_start: u64,
    rbuf: Box<[u8]>,
    sbuf: Vec<u8>,
    /// Pending control frames / join message.
    ctrl: Vec<u8>,
    /// Send time (ns) of each outstanding message, oldest first (echo/rate; pubsub publishers: intended times).
    stamps: VecDeque<u64>,
    tmpl: Option<FrameTemplate>,
    hs: Option<Box<ClientHandshake>>,
    /// The ringws protocol core for this connection (decodes the server's frames).
    proto: Option<Connection>,
}

impl Conn {
    fn new(key: [u8; 4], publisher: bool) -> Self {
        Conn {
            fd: -1,
            st: St::Idle,
            connecting: false,
            recv_armed: false,
            send_busy: false,
            dirty: false,
            publisher,
            got_close: false,
            key,
            rlen: 0,
            soff: 0,
            outstanding: 0,
            due: 0,
            send_seq: 0,
            recv_seq: 0,
            t_start: 0,
            rbuf: Box::default(),
            sbuf: Vec::new(),
            ctrl: Vec::new(),
            stamps: VecDeque::new(),
            tmpl: None,
            hs: None,
            proto: None,
        }
    }
}

/// Thread state other than the ring and the connections.
struct Ctx {
    plan: std::sync::Arc<Plan>,
    stats: ThreadStats,
    phase: Phase,
    pattern: Vec<u8>,
    rbuf_size: usize,
    open: u64,
    connecting: usize,
    resolved: usize,
    warm_end: u64,
    end: u64,
    dirty: Vec<u32>,
    scratch: Vec<u8>,
    /// Target address for connect (stable for the kernel).
    addr: Box<libc::sockaddr_storage>,
    addr_len: libc::socklen_t,
    connect_ts: Box<types::Timespec>,
    /// Provided buffers for multishot receives (None: plain recv into per-connection buffers).
    /// Index of the provided-buffer ring in the reactor's `Ring` (None: plain receives into per-connection buffers).
    bufring: Option<usize>,
    /// Connections whose multishot receive ended for lack of buffers; re-armed at the next turn.
    starved: Vec<u32>,
}

struct Reactor {
    ring: Ring,
    conns: Vec<Conn>,
    ctx: Ctx,
    cqes: Vec<Cqe>,
}

/// Push an SQE (the ring submits first if its queue is full).
fn push(ring: &mut Ring, e: &Sqe) {
    // SAFETY: every buffer and address referenced by our SQEs lives in a `Conn` or `Ctx` that outlives the ring's use
    // of it: buffers are not moved or freed while their operation is in flight (send_busy / recv_armed), and the ring
    // is dropped (cancelling everything) before the connections.
    unsafe { ring.push(e) };
}

/// Push a linked pair (an operation and its timeout) into one submission.
fn push2(ring: &mut Ring, a: &Sqe, b: &Sqe) {
    // SAFETY: as in `push`, for both entries.
    unsafe { ring.push_pair(a, b) };
}

fn sockaddr(addr: std::net::SocketAddr) -> (Box<libc::sockaddr_storage>, libc::socklen_t) {
    // SAFETY: zeroed sockaddr_storage is valid; we fill the matching family struct within its bounds.
    let mut ss: Box<libc::sockaddr_storage> = Box::new(unsafe { std::mem::zeroed() });
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            let sin = unsafe { &mut *(ss.as_mut() as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            let sin6 = unsafe { &mut *(ss.as_mut() as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// Run one reactor thread with `subs` plain connections (subscribers in pubsub) and `pubs` publishers.
pub fn run_thread(
    plan: std::sync::Arc<Plan>,
    subs: usize,
    pubs: usize,
    live: &Live,
    sync: &Sync,
) -> std::io::Result<ThreadStats> {
    let n = subs + pubs;
    let entries = 4096u32;
    let cq = ((2 * n + 256).next_power_of_two() as u32).clamp(8192, 65536);
    let mut ring = Ring::new(entries, cq).map_err(|e| std::io::Error::other(e.to_string()))?;

    let mut keys = vec![0u8; 4 * n.max(1) + 16 * n.max(1)];
    getrandom::getrandom(&mut keys).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (mask_keys, hs_keys) = keys.split_at(4 * n.max(1));
    let pattern = frames::make_payload(plan.size);
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let key = [
            mask_keys[4 * i],
            mask_keys[4 * i + 1],
            mask_keys[4 * i + 2],
            mask_keys[4 * i + 3],
        ];
        let mut c = Conn::new(key, i >= subs);
        let mut hk = [0u8; 16];
        hk.copy_from_slice(&hs_keys[16 * i..16 * i + 16]);
        c.hs = Some(Box::new(ClientHandshake::new(hk)));
        conns.push(c);
    }
    // Receive buffer: room for a few echoes (all outstanding ones for small messages), at least 512 B, at most 64 KiB;
    // grown per connection when a larger frame arrives.
    let frame_len = plan.size + 10;
    let rbuf_size = match plan.mode {
        Mode::Pubsub => 4096,
        Mode::Flood => 16 << 10,
        Mode::Echo => (frame_len * plan.inflight).clamp(512, 64 << 10),
        Mode::Rate => (frame_len * 4).clamp(512, 64 << 10),
    };
    let (addr, addr_len) = sockaddr(plan.target.addr);
    // Multishot receives into a shared ring of provided buffers, unless LOADTEST_RECV=plain (or registration fails).
    let bufring = if std::env::var("LOADTEST_RECV").as_deref() == Ok("plain") {
        None
    } else {
        let size = if plan.size >= 1024 || plan.mode == Mode::Flood {
            16 << 10
        } else {
            4 << 10
        };
        ring.add_buf_ring(512, size as u32, BGID).ok()
    };
    let ct = plan.connect_timeout;
    let ctx = Ctx {
        stats: ThreadStats::default(),
        phase: Phase::Ramp,
        pattern,
        rbuf_size,
        open: 0,
        connecting: 0,
        resolved: 0,
        warm_end: u64::MAX,
        end: u64::MAX,
        dirty: Vec::with_capacity(n),
        scratch: Vec::new(),
        addr,
        addr_len,
        connect_ts: Box::new(
            types::Timespec::new()
                .sec(ct.as_secs())
                .nsec(ct.subsec_nanos()),
        ),
        bufring,
        starved: Vec::new(),
        plan,
    };
    let mut r = Reactor {
        ring,
        conns,
        ctx,
        cqes: Vec::with_capacity(cq as usize),
    };
    let res = r.run(live, sync);
    // Tear down: the ring first (cancels and waits for every operation), then the sockets.
    let Reactor {
        ring, conns, ctx, ..
    } = r;
    drop(ring);
    for c in &conns {
        if c.fd >= 0 {
            // SAFETY: we own the fd; no operation references it any more (the ring is gone).
            unsafe { libc::close(c.fd) };
        }
    }
    res.map(|_| ctx.stats)
}

impl Reactor {
    fn run(&mut self, live: &Live, sync: &Sync) -> std::io::Result<()> {
        let n = self.conns.len();
        let plan = self.ctx.plan.clone();

        // ---- Ramp-up: open every connection before any load. ----
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
            if now - last_sweep > 50_000_000 {
                last_sweep = now;
                self.sweep_handshakes(now);
            }
            self.flush_dirty(now);
            self.publish(live);
            let wait = if plan.connect_rate > 0.0 && next < n {
                Duration::from_micros(((1e6 / plan.connect_rate) as u64).clamp(50, 10_000))
            } else {
                Duration::from_millis(10)
            };
            self.wait(wait)?;
            self.reap(now_ns());
        }
        self.ctx.stats.ramp = Duration::from_nanos(now_ns() - ramp_start);
        self.publish(live);

        // ---- Wait for every thread, then warm-up + measurement. ----
        sync.ready.fetch_add(1, Relaxed);
        let t0 = loop {
            let s = sync.start_ns.load(std::sync::atomic::Ordering::Acquire);
            if s != 0 {
                break s;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        self.ctx.warm_end = t0 + plan.warmup.as_nanos() as u64;
        self.ctx.end = self.ctx.warm_end + plan.duration.as_nanos() as u64;
        self.ctx.phase = Phase::Run;
        let end = self.ctx.end;
        let scheduled = matches!(plan.mode, Mode::Rate | Mode::Pubsub);
        let senders = match plan.mode {
            Mode::Pubsub => plan.total_pubs,
            _ => plan.total_conns,
        };
        let my_senders = self
            .conns
            .iter()
            .filter(|c| plan.mode != Mode::Pubsub || c.publisher)
            .count();
        let my_rate = if senders > 0 {
            plan.rate * my_senders as f64 / senders as f64
        } else {
            0.0
        };
        let interval = if my_rate > 0.0 { 1e9 / my_rate } else { 0.0 };
        let mut k: u64 = 0;
        let mut rr = 0usize;
        // Echo/flood: fill every connection's window.
        for i in 0..n {
            self.mark_dirty(i);
        }
        let mut end = end;
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
            let mut wait = Duration::from_nanos((end - now).min(100_000_000));
            if scheduled && interval > 0.0 && my_senders > 0 {
                // Assign every message whose intended time has come, round robin over the open senders.
                loop {
                    let t = t0 + (k as f64 * interval) as u64;
                    if t > now || t >= end {
                        if t < end {
                            wait = wait.min(Duration::from_nanos((t - now).max(50_000)));
                        }
                        break;
                    }
                    k += 1;
                    let mut tries = 0;
                    loop {
                        rr = (rr + 1) % n;
                        tries += 1;
                        let c = &self.conns[rr];
                        let sender = plan.mode != Mode::Pubsub || c.publisher;
                        if (sender && c.st == St::Open) || tries > n {
                            break;
                        }
                    }
                    if tries > n {
                        break;
                    }
                    let c = &mut self.conns[rr];
                    if c.stamps.len() >= plan.inflight.max(1) && plan.mode == Mode::Rate {
                        self.ctx.stats.err(ErrKind::RateBacklog);
                        continue;
                    }
                    c.stamps.push_back(t);
                    c.due += 1;
                    self.mark_dirty(rr);
                }
            }
            self.flush_dirty(now);
            self.publish(live);
            self.wait(wait)?;
            self.reap(now_ns());
        }

        // ---- Close: close frame on every open connection, wait for the server's close / EOF, bounded. ----
        self.ctx.phase = Phase::Close;
        let deadline = end + plan.close_timeout.as_nanos() as u64;
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
            self.flush_dirty(now);
            self.publish(live);
            self.wait(Duration::from_nanos((deadline - now).min(10_000_000)))?;
            self.reap(now_ns());
        }
        // Whatever is left: shut the sockets down so their operations complete, reap briefly.
        for i in 0..n {
            if self.conns[i].st != St::Dead && self.conns[i].st != St::Idle {
                self.kill(i);
            }
        }
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
        self.publish(live);
        Ok(())
    }

    fn publish(&self, live: &Live) {
        let s = &self.ctx.stats;
        live.open.store(self.ctx.open, Relaxed);
        live.connected.store(s.connected, Relaxed);
        live.failed.store(s.connect_failed, Relaxed);
        live.received.store(s.received_total, Relaxed);
        live.bytes_received.store(s.bytes_received_total, Relaxed);
        live.errors.store(s.error_total(), Relaxed);
    }

    /// Submit everything queued and wait for at least one completion or `timeout` (EINTR-safe: see `Ring`).
    fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.ring.submit_and_wait(timeout)
    }

    fn reap(&mut self, now: u64) {
        let mut cqes = std::mem::take(&mut self.cqes);
        loop {
            if !self.ring.reap(&mut cqes) {
                break;
            }
            for &Cqe {
                user_data: u,
                result: res,
                flags,
            } in &cqes
            {
                let i = (u >> 8) as usize;
                match u & 0xff {
                    OP_CONNECT => self.on_connect(i, res, now),
                    OP_SEND => self.on_send(i, res, now),
                    OP_RECV => self.on_recv(i, res, now),
                    OP_RECV_MULTI => self.on_recv_multi(i, res, flags, now),
                    _ => {} // link timeouts
                }
            }
            self.ring.publish_bufs();
        }
        self.cqes = cqes;
        // Buffers came back: re-arm the receives that ran out of them.
        if !self.ctx.starved.is_empty() {
            let starved = std::mem::take(&mut self.ctx.starved);
            for &i in &starved {
                self.arm_recv(i as usize);
            }
        }
    }

    #[inline]
    fn mark_dirty(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if !c.dirty {
            c.dirty = true;
            self.ctx.dirty.push(i as u32);
        }
    }

    // ---------------------------------------------------------------- connect + handshake

    fn start_connect(&mut self, i: usize, now: u64) {
        let family = if self.ctx.plan.target.addr.is_ipv4() {
            libc::AF_INET
        } else {
            libc::AF_INET6
        };
        // SAFETY: plain socket syscalls on an fd we own.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        let c = &mut self.conns[i];
        c.t_start = now;
        if fd < 0 {
            c.st = St::Dead;
            self.ctx.stats.err(ErrKind::ConnectOther);
            self.ctx.stats.connect_failed += 1;
            self.ctx.resolved += 1;
            return;
        }
        let one: libc::c_int = 1;
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        c.fd = fd;
        c.st = St::Connecting;
        c.connecting = true;
        self.ctx.connecting += 1;
        let conn = opcode::Connect::new(
            types::Fd(fd),
            self.ctx.addr.as_ref() as *const _ as *const libc::sockaddr,
            self.ctx.addr_len,
        )
        .build()
        .flags(SqeFlags::IO_LINK)
        .user_data(ud(i, OP_CONNECT));
        let lt = opcode::LinkTimeout::new(self.ctx.connect_ts.as_ref() as *const _)
            .build()
            .user_data(ud(i, OP_LINK_TIMEOUT));
        push2(&mut self.ring, &conn, &lt);
    }

    fn connect_failed(&mut self, i: usize, kind: ErrKind) {
        let c = &mut self.conns[i];
        if matches!(c.st, St::Connecting | St::Handshaking) {
            self.ctx.connecting -= 1;
            self.ctx.resolved += 1;
            self.ctx.stats.connect_failed += 1;
            self.ctx.stats.err(kind);
        }
        self.kill(i);
    }

    fn on_connect(&mut self, i: usize, res: i32, now: u64) {
        self.conns[i].connecting = false;
        if self.conns[i].st != St::Connecting {
            self.maybe_close(i);
            return;
        }
        if res < 0 {
            let kind = match -res {
                libc::ECONNREFUSED => ErrKind::ConnectRefused,
                libc::ECANCELED | libc::ETIMEDOUT | libc::ETIME => ErrKind::ConnectTimeout,
                _ => ErrKind::ConnectOther,
            };
            self.connect_failed(i, kind);
            return;
        }
        let plan = &self.ctx.plan;
        let c = &mut self.conns[i];
        c.st = St::Handshaking;
        c.rbuf = vec![0u8; self.ctx.rbuf_size.max(1024)].into_boxed_slice();
        c.sbuf.clear();
        c.hs.as_ref().expect("handshake").write_request(
            &mut c.sbuf,
            &plan.target.host,
            &plan.target.path,
            &[],
        );
        self.submit_send(i);
        self.arm_recv(i);
        let _ = now;
    }

    fn sweep_handshakes(&mut self, now: u64) {
        let limit = self.ctx.plan.connect_timeout.as_nanos() as u64;
        for i in 0..self.conns.len() {
            let c = &self.conns[i];
            if c.st == St::Handshaking && now.saturating_sub(c.t_start) > limit {
                self.connect_failed(i, ErrKind::ConnectTimeout);
            }
        }
    }

    fn handshake_read(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        let res =
            c.hs.as_ref()
                .expect("handshake")
                .parse_response(&c.rbuf[..c.rlen as usize]);
        match res {
            Ok(None) => {
                if c.rlen as usize == c.rbuf.len() {
                    self.connect_failed(i, ErrKind::Handshake);
                } else {
                    self.arm_recv(i);
                }
            }
            Err(_) => self.connect_failed(i, ErrKind::Handshake),
            Ok(Some(consumed)) => {
                let len = c.rlen as usize;
                c.rbuf.copy_within(consumed..len, 0);
                c.rlen = (len - consumed) as u32;
                c.hs = None;
                c.st = St::Open;
                c.proto = Some(Connection::new(Role::Client, Limits::default()));
                let plan = &self.ctx.plan;
                let rb = self.ctx.rbuf_size;
                if self.ctx.bufring.is_none() && c.rbuf.len() != rb && (c.rlen as usize) <= rb {
                    let mut b = vec![0u8; rb].into_boxed_slice();
                    b[..c.rlen as usize].copy_from_slice(&c.rbuf[..c.rlen as usize]);
                    c.rbuf = b;
                }
                if plan.mode == Mode::Pubsub {
                    if !plan.sub_msg.is_empty() {
                        frames::write_client_frame_text(&mut c.ctrl, &plan.sub_msg, c.key);
                    }
                } else {
                    c.tmpl = Some(FrameTemplate::new(&self.ctx.pattern, plan.opcode, c.key));
                }
                self.ctx.connecting -= 1;
                self.ctx.resolved += 1;
                self.ctx.open += 1;
                self.ctx.stats.connected += 1;
                record_ns(&mut self.ctx.stats.connect, now - c.t_start);
                self.mark_dirty(i);
                self.process(i, now);
                if self.ctx.bufring.is_some() {
                    // Multishot receives from here on: the connection needs no buffer of its own.
                    self.conns[i].rbuf = Box::default();
                }
            }
        }
    }

    // ---------------------------------------------------------------- send

    fn submit_send(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let off = c.soff as usize;
        let len = c.sbuf.len() - off;
        debug_assert!(len > 0 && !c.send_busy);
        c.send_busy = true;
        let e = opcode::Send::new(types::Fd(c.fd), c.sbuf[off..].as_ptr(), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(i, OP_SEND));
        push(&mut self.ring, &e);
    }

    fn on_send(&mut self, i: usize, res: i32, now: u64) {
        let c = &mut self.conns[i];
        c.send_busy = false;
        if matches!(c.st, St::Dead | St::Idle) {
            self.maybe_close(i);
            return;
        }
        if res <= 0 {
            if c.st == St::Handshaking {
                self.connect_failed(i, ErrKind::Handshake);
            } else {
                if c.st == St::Open {
                    self.ctx.stats.err(ErrKind::Send);
                }
                self.kill(i);
            }
            return;
        }
        c.soff += res as u32;
        if (c.soff as usize) < c.sbuf.len() {
            self.submit_send(i);
            return;
        }
        c.sbuf.clear();
        c.soff = 0;
        let _ = now;
        // Anything that became ready while this send was in flight goes out now.
        self.mark_dirty(i);
    }

    fn flush_dirty(&mut self, now: u64) {
        let mut dirty = std::mem::take(&mut self.ctx.dirty);
        for &i in &dirty {
            self.conns[i as usize].dirty = false;
            self.flush(i as usize, now);
        }
        dirty.clear();
        // flush() does not mark anything dirty; keep the allocation.
        if self.ctx.dirty.is_empty() {
            self.ctx.dirty = dirty;
        }
    }

    /// Write everything this connection may send now into one buffer and submit one send.
    fn flush(&mut self, i: usize, now: u64) {
        let ctx = &mut self.ctx;
        let c = &mut self.conns[i];
        if c.send_busy || !matches!(c.st, St::Open | St::Closing) {
            return;
        }
        c.sbuf.clear();
        c.soff = 0;
        if !c.ctrl.is_empty() {
            c.sbuf.extend_from_slice(&c.ctrl);
            c.ctrl.clear();
        }
        if ctx.phase == Phase::Run && c.st == St::Open {
            let in_window = now >= ctx.warm_end && now < ctx.end;
            match ctx.plan.mode {
                Mode::Echo | Mode::Flood => {
                    let tmpl = c.tmpl.as_ref().expect("template");
                    let room = ctx.plan.inflight.saturating_sub(c.outstanding as usize);
                    let cap = (MAX_SEND_BYTES / tmpl.len().max(1)).max(1);
                    let k = room.min(cap);
                    for _ in 0..k {
                        tmpl.write(&mut c.sbuf, c.send_seq);
                        c.send_seq += 1;
                    }
                    c.outstanding += k as u32;
                    if ctx.plan.mode == Mode::Echo {
                        for _ in 0..k {
                            c.stamps.push_back(now);
                        }
                    }
                    if in_window {
                        ctx.stats.sent += k as u64;
                        ctx.stats.bytes_sent += (k * ctx.plan.size) as u64;
                    }
                }
                Mode::Rate => {
                    let tmpl = c.tmpl.as_ref().expect("template");
                    let cap = (MAX_SEND_BYTES / tmpl.len().max(1)).max(1);
                    let k = (c.due as usize).min(cap);
                    for _ in 0..k {
                        tmpl.write(&mut c.sbuf, c.send_seq);
                        c.send_seq += 1;
                    }
                    c.due -= k as u32;
                    c.outstanding += k as u32;
                    if in_window {
                        ctx.stats.sent += k as u64;
                        ctx.stats.bytes_sent += (k * ctx.plan.size) as u64;
                    }
                }
                Mode::Pubsub => {
                    let k = c.due as usize;
                    for _ in 0..k {
                        let t = c.stamps.pop_front().expect("stamp per due message");
                        let s = &mut ctx.scratch;
                        s.clear();
                        s.extend_from_slice(&ctx.plan.pub_prefix);
                        let text_start = s.len();
                        s.extend_from_slice(MARK);
                        let d = s.len();
                        s.extend_from_slice(&[b'0'; 16]);
                        frames::write_seq(&mut s[d..d + 16], t);
                        s.push(b'#');
                        while s.len() - text_start < ctx.plan.size {
                            s.push(b'a' + ((s.len() - text_start) % 26) as u8);
                        }
                        s.extend_from_slice(&ctx.plan.pub_suffix);
                        frames::write_client_frame_text(&mut c.sbuf, s, c.key);
                    }
                    c.due = 0;
                    if in_window {
                        ctx.stats.sent += k as u64;
                        ctx.stats.bytes_sent += (k * ctx.plan.size) as u64;
                    }
                }
            }
        }
        if !c.sbuf.is_empty() {
            self.submit_send(i);
        }
    }

    // ---------------------------------------------------------------- receive

    fn arm_recv(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.recv_armed || c.fd < 0 || !matches!(c.st, St::Handshaking | St::Open | St::Closing) {
            return;
        }
        if let (Some(br), St::Open | St::Closing) = (self.ctx.bufring, c.st) {
            c.recv_armed = true;
            let e = opcode::RecvMulti::new(types::Fd(c.fd), self.ring.bufs(br).bgid)
                .build()
                .user_data(ud(i, OP_RECV_MULTI));
            push(&mut self.ring, &e);
            return;
        }
        let off = c.rlen as usize;
        if off == c.rbuf.len() {
            let mut b = vec![0u8; (c.rbuf.len() * 2).max(1024)].into_boxed_slice();
            b[..off].copy_from_slice(&c.rbuf[..off]);
            c.rbuf = b;
        }
        c.recv_armed = true;
        let len = c.rbuf.len() - off;
        let e = opcode::Recv::new(types::Fd(c.fd), c.rbuf[off..].as_mut_ptr(), len as u32)
            .ioprio(if poll_first() { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .user_data(ud(i, OP_RECV));
        push(&mut self.ring, &e);
    }

    fn on_recv(&mut self, i: usize, res: i32, now: u64) {
        let c = &mut self.conns[i];
        c.recv_armed = false;
        match c.st {
            St::Dead | St::Idle | St::Connecting => {
                self.maybe_close(i);
                return;
            }
            _ => {}
        }
        if res <= 0 {
            self.recv_end(i, res);
            return;
        }
        c.rlen += res as u32;
        if c.st == St::Handshaking {
            self.handshake_read(i, now);
            return;
        }
        self.process(i, now);
    }

    /// A multishot receive completion: data in a provided buffer, or the end of the multishot.
    fn on_recv_multi(&mut self, i: usize, res: i32, flags: u32, now: u64) {
        let more = cqueue::more(flags);
        if !more {
            self.conns[i].recv_armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            let br = self.ring.bufs(self.ctx.bufring.expect("buffer ring"));
            // Taken for every completion that carries bytes (it advances an incrementally consumed buffer).
            let data = if res > 0 {
                br.take(bid, res as usize).map(|d| d as *mut [u8])
            } else {
                None
            };
            if let (Some(data), St::Open | St::Closing) = (data, self.conns[i].st) {
                // SAFETY: the bytes stay valid and untouched by the kernel until the buffer is released below; the
                // slice is not used after that (the raw pointer only ends the borrow of `self.ring`).
                self.feed(i, unsafe { &mut *data }, now);
            }
            self.ring
                .bufs(self.ctx.bufring.expect("buffer ring"))
                .release(bid, cqueue::buffer_more(flags));
        }
        let c = &self.conns[i];
        if !matches!(c.st, St::Open | St::Closing) {
            self.maybe_close(i);
            return;
        }
        if res == -libc::ENOBUFS {
            self.ctx.stats.recv_enobufs += 1;
            if !more {
                self.ctx.starved.push(i as u32);
            }
            return;
        }
        if res <= 0 {
            self.recv_end(i, res);
            return;
        }
        if !more {
            self.arm_recv(i);
        }
    }

    /// EOF (`res` 0) or a receive error.
    fn recv_end(&mut self, i: usize, res: i32) {
        let c = &mut self.conns[i];
        {
            match c.st {
                St::Handshaking => self.connect_failed(i, ErrKind::Handshake),
                St::Closing => {
                    if res == 0 {
                        if !c.got_close {
                            c.got_close = true;
                        }
                        self.ctx.stats.closed_clean += 1;
                    }
                    self.kill(i);
                }
                _ => {
                    self.ctx.stats.err(if res == 0 {
                        ErrKind::ServerClosed
                    } else {
                        ErrKind::Recv
                    });
                    self.kill(i);
                }
            }
        }
    }

    /// Feed the received bytes to the connection's `ringws::proto::Connection` (Role::Client: it checks every frame,
    /// validates UTF-8, assembles fragments, answers pings and closes), queue what it wants to send, re-arm the receive.
    fn process(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let len = c.rlen as usize;
        c.rlen = 0;
        self.feed(i, &mut rbuf[..len], now);
        let c = &mut self.conns[i];
        c.rbuf = rbuf;
        if matches!(c.st, St::Open | St::Closing) {
            self.arm_recv(i);
        } else {
            self.maybe_close(i);
        }
    }

    fn feed(&mut self, i: usize, data: &mut [u8], now: u64) {
        let c = &mut self.conns[i];
        let Some(mut proto) = c.proto.take() else {
            return;
        };
        let res = proto.handle_read(data, &mut |ev| self.on_event(i, ev, now));
        let c = &mut self.conns[i];
        if res.is_err() {
            self.ctx.stats.err(ErrKind::Protocol);
            if c.st == St::Open {
                self.ctx.open -= 1;
                c.st = St::Closing;
            }
        }
        if proto.poll_transmit(&mut c.ctrl) {
            c.proto = Some(proto);
            self.mark_dirty(i);
        } else {
            c.proto = Some(proto);
        }
    }

    fn on_event(&mut self, i: usize, ev: Event<'_>, now: u64) {
        match ev {
            Event::Text(t) => self.on_message(i, 0x1, t.as_bytes(), now),
            Event::Binary(b) => self.on_message(i, 0x2, b, now),
            // The pong is queued by the core; sent with the next flush.
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Close { .. } => {
                let c = &mut self.conns[i];
                c.got_close = true;
                if c.st == St::Open {
                    // The server closed in the middle of the run (our answer is queued by the core).
                    self.ctx.stats.err(ErrKind::ServerClosed);
                    self.ctx.open -= 1;
                    c.st = St::Closing;
                }
                // Keep reading until the server's EOF, so TIME_WAIT stays on the server side.
            }
        }
    }

    fn on_message(&mut self, i: usize, op: u8, payload: &[u8], now: u64) {
        let ctx = &mut self.ctx;
        let c = &mut self.conns[i];
        let in_window = now >= ctx.warm_end && now < ctx.end;
        ctx.stats.received_total += 1;
        ctx.stats.bytes_received_total += payload.len() as u64;
        match ctx.plan.mode {
            Mode::Pubsub => {
                let Some(p) = payload.windows(MARK.len()).position(|w| w == MARK) else {
                    return; // join confirmations, welcome messages, ...
                };
                let ts = payload.get(p + 3..p + 19).and_then(frames::read_hex);
                let Some(ts) = ts else {
                    ctx.stats.err(ErrKind::Mismatch);
                    return;
                };
                if in_window {
                    ctx.stats.received += 1;
                    ctx.stats.bytes_received += payload.len() as u64;
                    record_ns(&mut ctx.stats.latency, now.saturating_sub(ts));
                }
            }
            mode => {
                if c.outstanding == 0 {
                    ctx.stats.err(ErrKind::Mismatch);
                    return;
                }
                c.outstanding -= 1;
                let ok = op == ctx.plan.opcode as u8
                    && frames::verify_payload(payload, &ctx.pattern, c.recv_seq);
                c.recv_seq += 1;
                if !ok {
                    ctx.stats.err(ErrKind::Mismatch);
                }
                let stamp = if mode == Mode::Flood {
                    None
                } else {
                    c.stamps.pop_front()
                };
                if in_window {
                    ctx.stats.received += 1;
                    ctx.stats.bytes_received += payload.len() as u64;
                    if let Some(t) = stamp {
                        record_ns(&mut ctx.stats.latency, now.saturating_sub(t));
                    }
                }
                if matches!(mode, Mode::Echo | Mode::Flood) && ctx.phase == Phase::Run && !c.dirty {
                    c.dirty = true;
                    ctx.dirty.push(i as u32);
                }
            }
        }
    }

    // ---------------------------------------------------------------- teardown

    /// Drop a connection: shut the socket down (completing its operations), close it once none is in flight.
    fn kill(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Open {
            self.ctx.open -= 1;
        }
        if c.st != St::Dead && c.fd >= 0 {
            // SAFETY: our fd; shutdown makes pending recv/send complete.
            unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        }
        c.st = St::Dead;
        self.maybe_close(i);
    }

    fn maybe_close(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.st == St::Dead && c.fd >= 0 && !c.connecting && !c.recv_armed && !c.send_busy {
            // SAFETY: no operation references this fd or its buffers any more.
            unsafe { libc::close(c.fd) };
            c.fd = -1;
            c.rbuf = Box::default();
            c.sbuf = Vec::new();
            c.stamps = VecDeque::new();
            c.tmpl = None;
            c.hs = None;
            c.proto = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_slot_is_small() {
        let n = std::mem::size_of::<Conn>();
        eprintln!("size_of::<Conn>() = {n}");
        assert!(n <= 320, "Conn grew to {n} bytes");
    }

    #[test]
    fn user_data_roundtrip() {
        let u = ud(12345, OP_RECV);
        assert_eq!((u >> 8) as usize, 12345);
        assert_eq!(u & 0xff, OP_RECV);
    }
}

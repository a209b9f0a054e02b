//! One io_uring reactor per thread: opens its share of the connections, drives the load, closes, reports.
//!
//! Per connection: one multishot receive on a shared ring of provided buffers (or, with `LOADTEST_RECV=plain`, one
//! plain receive into the connection's own small buffer), at most one send in flight (everything that became ready
//! during a loop turn goes out in that one send), precomputed masked frames. All SQEs of a turn are submitted with the
//! single `io_uring_enter` that also waits for the next completions (SINGLE_ISSUER + DEFER_TASKRUN + COOP_TASKRUN
//! when the kernel has them, through the shared driver `ringws::uring`).
//!
//! Files, one concern each:
//! - this one: [`run_thread`], the reactor's setup (ring, buffer ring, keys, slots) and teardown;
//! - `state.rs`: the reactor's data (`Reactor`, its thread context `Ctx`, the `Phase`);
//! - `conn.rs`: one connection's slot and state;
//! - `ring.rs`: the ring glue, the only file that builds submissions: `user_data`, connect + timeout, send, receive
//!   arms, the loop turn, completion dispatch;
//! - `phases.rs`: ramp-up, wait for the clock, warm-up + measurement, close, drain;
//! - `connect.rs`: socket, TCP connect with its timeout, WebSocket handshake, teardown of a connection;
//! - `send.rs` / `recv.rs`: one send per dirty connection per turn / receive completions and frame decoding;
//! - `workload.rs`: per mode (echo, flood, rate, pubsub), what to send when and what a received message means.

mod conn;
mod connect;
mod phases;
mod recv;
mod ring;
mod send;
mod state;
mod tls;
mod workload;

use std::sync::Arc;

use ringws::handshake::ClientHandshake;
use ringws::uring::{uring_types as types, Ring};

use crate::cli::Mode;
use crate::frames;
use crate::plan::{Plan, Sync};
use crate::stats::{Live, ThreadStats};
use conn::Conn;
use state::{Ctx, Phase, Reactor};

/// Run one reactor thread with `subs` plain connections (subscribers in pubsub) and `pubs` publishers.
pub fn run_thread(
    plan: Arc<Plan>,
    subs: usize,
    pubs: usize,
    live: &Live,
    sync: &Sync,
) -> std::io::Result<ThreadStats> {
    let n = subs + pubs;
    let entries = 4096u32;
    let cq = ((2 * n + 256).next_power_of_two() as u32).clamp(8192, 65536);
    let mut ring = Ring::new(entries, cq).map_err(|e| std::io::Error::other(e.to_string()))?;
    let conns = new_slots(subs, n)?;
    let addrs = plan
        .targets
        .iter()
        .map(|t| connect::sockaddr(t.addr))
        .collect();
    // Multishot receives into a shared ring of provided buffers, unless LOADTEST_RECV=plain (or registration fails).
    let bufring = if std::env::var("LOADTEST_RECV").as_deref() == Ok("plain") {
        None
    } else {
        ring.add_buf_ring(512, provided_buf_size(&plan) as u32, ring::BGID, 512)
            .ok()
    };
    let ct = plan.connect_timeout;
    let ctx = Ctx {
        stats: ThreadStats::default(),
        phase: Phase::Ramp,
        pattern: if plan.json_payload {
            crate::deflate::json_like_payload(plan.size)
        } else {
            frames::make_payload(plan.size)
        },
        rbuf_size: own_recv_buf_size(&plan),
        open: 0,
        connecting: 0,
        resolved: 0,
        warm_end: u64::MAX,
        end: u64::MAX,
        dirty: Vec::with_capacity(n),
        scratch: Vec::new(),
        addrs,
        tick_ts: Box::new(types::Timespec::from(ring::TICK)),
        tick_armed: false,
        connect_ts: Box::new(
            types::Timespec::new()
                .sec(ct.as_secs())
                .nsec(ct.subsec_nanos()),
        ),
        bufring,
        starved: Vec::new(),
        tls_plain: Vec::new(),
        deflate: plan.deflate.is_some().then(Box::default),
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

/// `n` connection slots, the first `subs` plain (or subscribers), the rest publishers, each with its own random
/// masking key and handshake key.
fn new_slots(subs: usize, n: usize) -> std::io::Result<Vec<Conn>> {
    let mut keys = vec![0u8; 4 * n.max(1) + 16 * n.max(1)];
    getrandom::getrandom(&mut keys).map_err(|e| std::io::Error::other(e.to_string()))?;
    let (mask_keys, hs_keys) = keys.split_at(4 * n.max(1));
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
    Ok(conns)
}

/// A connection's own receive buffer (the handshake, plain receives): room for a few echoes (all outstanding ones
/// for small messages), at least 512 B, at most 64 KiB; grown per connection when a larger frame arrives.
fn own_recv_buf_size(plan: &Plan) -> usize {
    let frame_len = plan.size + 10;
    match plan.mode {
        Mode::Pubsub | Mode::Handshake => 4096,
        Mode::Flood => 16 << 10,
        Mode::Echo => (frame_len * plan.inflight).clamp(512, 64 << 10),
        Mode::Rate => (frame_len * 4).clamp(512, 64 << 10),
    }
}

/// Size of each of the 512 provided buffers: 16 KiB for large messages and flood, 4 KiB otherwise.
fn provided_buf_size(plan: &Plan) -> usize {
    if plan.size >= 1024 || plan.mode == Mode::Flood {
        16 << 10
    } else {
        4 << 10
    }
}

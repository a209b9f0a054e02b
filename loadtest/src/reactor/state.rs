//! The reactor's data: the ring, the connection slots and [`Ctx`] (everything else a thread keeps), plus the two
//! helpers every concern uses: [`Reactor::mark_dirty`] (flush this connection at the end of the turn) and
//! [`Reactor::publish`] (totals for the progress line).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use ringws::uring::{uring_types as types, Cqe, Ring};

use super::conn::Conn;
use crate::deflate::ThreadDeflate;
use crate::plan::Plan;
use crate::stats::{Live, ThreadStats};

/// The reactor's phase (the main thread's clock decides when `Run` starts and ends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Ramp,
    Run,
    Close,
}

/// Thread state other than the ring and the connections.
pub(super) struct Ctx {
    pub(super) plan: Arc<Plan>,
    pub(super) stats: ThreadStats,
    pub(super) phase: Phase,
    /// The payload every echo/rate/flood message carries (with the sequence number written into it).
    pub(super) pattern: Vec<u8>,
    /// Size of a connection's own receive buffer (handshake, plain receives).
    pub(super) rbuf_size: usize,
    /// Connections open (handshake done, not closing).
    pub(super) open: u64,
    /// Connections whose connect or handshake is in progress.
    pub(super) connecting: usize,
    /// Connections whose opening ended (open or failed).
    pub(super) resolved: usize,
    /// End of the warm-up and of the measured window (ns); `u64::MAX` until the clock starts.
    pub(super) warm_end: u64,
    pub(super) end: u64,
    /// Connections to flush at the end of the turn.
    pub(super) dirty: Vec<u32>,
    /// Scratch space for composing a publish.
    pub(super) scratch: Vec<u8>,
    /// Each target's address for connect (stable for the kernel), in `Plan::targets` order.
    pub(super) addrs: Vec<(Box<libc::sockaddr_storage>, libc::socklen_t)>,
    /// The TCP connect timeout, linked to every connect (stable for the kernel).
    pub(super) connect_ts: Box<types::Timespec>,
    /// The tick's period, read by the kernel while the multishot tick is armed.
    pub(super) tick_ts: Box<types::Timespec>,
    /// A multishot tick is armed (see `Reactor::arm_tick`).
    pub(super) tick_armed: bool,
    /// Index of the provided-buffer ring in the reactor's `Ring` (None: plain receives into per-connection buffers).
    pub(super) bufring: Option<usize>,
    /// Connections whose multishot receive ended for lack of buffers; re-armed at the next turn.
    pub(super) starved: Vec<u32>,
    /// wss://: plaintext decrypted from one receive (reused).
    pub(super) tls_plain: Vec<u8>,
    /// `--deflate`: the thread's inflater and compressors (None without it; taken out while a read uses it).
    pub(super) deflate: Option<Box<ThreadDeflate>>,
}

pub(super) struct Reactor {
    pub(super) ring: Ring,
    pub(super) conns: Vec<Conn>,
    pub(super) ctx: Ctx,
    pub(super) cqes: Vec<Cqe>,
}

impl Reactor {
    /// Flush connection `i` at the end of this turn.
    #[inline]
    pub(super) fn mark_dirty(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if !c.dirty {
            c.dirty = true;
            self.ctx.dirty.push(i as u32);
        }
    }

    /// Which of the plan's targets connection `i` connects to.
    #[inline]
    pub(super) fn target_of(&self, i: usize) -> usize {
        self.ctx.plan.target_of(i, self.conns[i].publisher)
    }

    /// Store this thread's totals for the progress line.
    pub(super) fn publish(&self, live: &Live) {
        let s = &self.ctx.stats;
        live.open.store(self.ctx.open, Relaxed);
        live.connected.store(s.connected, Relaxed);
        live.failed.store(s.connect_failed, Relaxed);
        live.received.store(s.received_total, Relaxed);
        live.bytes_received.store(s.bytes_received_total, Relaxed);
        live.errors.store(s.error_total(), Relaxed);
    }
}

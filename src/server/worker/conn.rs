//! One connection's state in the worker's slab: its socket, flags, timers, outbound queue, subscriptions and the
//! phase it is in (reading the HTTP head, an open WebSocket, or done).

use crate::door::Refusal;
use crate::proto::Connection;
use crate::tls::TlsSession;

use super::super::outbound::{IoVecs, Outbound};
use super::super::pubsub::Subscriptions;

// Connection flags.
/// A multishot recv is armed for this connection.
pub(super) const RECV_ARMED: u8 = 1;
/// Reading is paused by backpressure (the recv is not re-armed until the queue drains).
pub(super) const PAUSED: u8 = 2;
/// Torn down: the handler was told; the slot is freed once no operation is in flight.
pub(super) const DEAD: u8 = 4;
/// Close once the outbound queue is written (after an HTTP response, or a finished close handshake).
pub(super) const CLOSE_AFTER_FLUSH: u8 = 8;
/// An idle ping is out and unanswered.
pub(super) const PING_SENT: u8 = 16;
/// The queue went above the low-water mark: `drain` fires when it comes back below.
pub(super) const ABOVE_LOW: u8 = 32;

pub(super) enum Phase<D> {
    /// Reading the request head. `refused`: the door already refused this connection at accept (per-address
    /// limits); the refusal is the answer to its request once the head has arrived.
    Http {
        buf: Vec<u8>,
        since: u32,
        refused: Option<Box<Refusal>>,
    },
    /// An open (or closing) WebSocket.
    Ws { proto: Connection, data: D },
    /// Answering HTTP, or torn down.
    Done,
}

pub(super) struct Conn<D> {
    pub fd: i32,
    pub gen: u32,
    pub flags: u8,
    /// Coarse seconds (worker clock) of the last byte received / the last send progress.
    pub last_rx: u32,
    pub last_tx: u32,
    /// Close code reported to the handler (peer's code, ours on failure, 1006 on transport loss).
    pub close_code: u16,
    /// permessage-deflate mark (0: not negotiated; see `server::compress`).
    pub deflate: u8,
    pub out: Outbound,
    /// The iovecs of a vectored send in flight (boxed: the kernel reads them by address).
    pub iov: Option<Box<IoVecs>>,
    pub topics: Subscriptions,
    pub phase: Phase<D>,
    /// The TLS session on a TLS listener (boxed: a plain connection pays one pointer).
    pub tls: Option<Box<TlsSession>>,
}

impl<D> Conn<D> {
    pub(super) fn new(fd: i32, gen: u32, secs: u32) -> Self {
        Conn {
            fd,
            gen,
            flags: 0,
            last_rx: secs,
            last_tx: secs,
            close_code: 1006,
            deflate: 0,
            out: Outbound::default(),
            iov: None,
            topics: Subscriptions::default(),
            phase: Phase::Http {
                buf: Vec::new(),
                since: secs,
                refused: None,
            },
            tls: None,
        }
    }

    #[inline]
    pub(super) fn is(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Whether everything this connection owes is written and it should now be torn down.
    pub(super) fn finished(&self) -> bool {
        let done = match &self.phase {
            Phase::Ws { proto, .. } => proto.state() == crate::proto::State::Closed,
            _ => self.is(CLOSE_AFTER_FLUSH),
        };
        done && self.out.queued() == 0
    }
}

//! The part of a worker's state that handler callbacks reach through [`super::handler::WebSocket`]: the send
//! buffer pool, the worker's topics, counters, the list of connections to flush this turn, and a close request.
//! Everything else of the worker (the ring, the slab) stays out of the handler's reach.

use std::collections::HashMap;
use std::sync::Arc;

use super::backpressure::Backpressure;
use super::compress::WorkerDeflate;
use super::outbound::{BufPool, SendStatus};
use super::pubsub::Topics;
use super::shared::Shared;
use super::stats::Counters;
use crate::door::{Claims, IpLease};

/// Where the bytes of the current read lie: receive buffer `bid`, addresses `start..end`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RxSpan {
    pub start: usize,
    pub end: usize,
    pub bid: u16,
}

impl RxSpan {
    pub(crate) fn of(data: &[u8], bid: u16) -> Self {
        let start = data.as_ptr() as usize;
        RxSpan {
            start,
            end: start + data.len(),
            bid,
        }
    }
    /// Whether `p` lies inside this read's bytes.
    #[inline]
    pub(crate) fn contains(&self, p: &[u8]) -> bool {
        let a = p.as_ptr() as usize;
        a >= self.start && a + p.len() <= self.end
    }
}

pub(crate) struct Local {
    pub shared: Arc<Shared>,
    pub worker: usize,
    pub backpressure: Backpressure,
    pub pool: BufPool,
    pub topics: Topics,
    /// A close the handler asked for during the current callback (applied when it returns).
    pub close_request: Option<(u16, String)>,
    pub c: Counters,
    /// Slots that queued bytes on an empty queue this turn: each gets one send at the end of the turn.
    pub dirty: Vec<u32>,
    /// The receive buffer of the read being processed (`None` outside a read): a large payload inside it is sent
    /// straight from it.
    pub rx: Option<RxSpan>,
    /// What the door granted each connection that it granted something (a per-address slot, token claims), by
    /// slot; removed at teardown. A side table, so that a server without per-address limits or tokens pays
    /// nothing per connection and the connection slot does not grow.
    pub admitted: HashMap<u32, Admitted>,
    /// permessage-deflate: the worker's inflater and compressors, dedicated connections' state.
    pub deflate: WorkerDeflate,
}

/// What the door granted one connection.
#[derive(Default)]
pub(crate) struct Admitted {
    /// The connection's slot in the per-address table; dropping it (at teardown) releases the slot. Held only
    /// for that drop.
    #[allow(dead_code)]
    pub lease: Option<IpLease>,
    /// The verified token claims (the timers close the connection with 1008 when they expire).
    pub claims: Option<Claims>,
}

impl Local {
    pub(crate) fn new(shared: Arc<Shared>, worker: usize) -> Self {
        Local {
            deflate: WorkerDeflate::new(
                shared.config.compression,
                shared.config.compression_threshold,
            ),
            backpressure: Backpressure::new(shared.config.max_backpressure),
            shared,
            worker,
            pool: BufPool::default(),
            topics: Topics::new(worker),
            close_request: None,
            c: Counters::default(),
            dirty: Vec::with_capacity(1024),
            rx: None,
            admitted: HashMap::new(),
        }
    }

    /// Count a data message queued for `slot`, and schedule its flush if it went into an empty queue.
    #[inline]
    pub(crate) fn note_send(&mut self, slot: u32, st: SendStatus) {
        match st {
            SendStatus::Sent => {
                self.c.messages_out += 1;
                self.dirty.push(slot);
            }
            SendStatus::Buffered => self.c.messages_out += 1,
            SendStatus::Dropped => self.c.dropped_messages += 1,
        }
    }

    /// Bytes were queued for `slot` on a queue that held `before` bytes: flush it this turn if it was empty.
    #[inline]
    pub(crate) fn note_queued(&mut self, slot: u32, before: usize) {
        if before == 0 {
            self.dirty.push(slot);
        }
    }
}

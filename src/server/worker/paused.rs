//! Bytes that arrived for a connection after backpressure paused its reads, kept until it resumes.
//!
//! Pausing cancels the connection's multishot recv, but the completions the kernel posted before the cancel took
//! effect still arrive: up to a whole receive ring's worth. Handing them to the connection at once would push its
//! queue far past `max_backpressure` (an echo would drop messages); throwing them away would lose data the peer
//! sent. So they are copied here, the receive buffers go straight back to the kernel, and the bytes are fed to the
//! connection when it resumes, one receive buffer's worth at a time, pausing again between pieces if its queue
//! climbs back over the mark (see `Worker::resume_reading`).
//!
//! Bounded: only completions already posted when a pause began land here, and no recv is re-armed while bytes
//! wait, so a worker holds at most about its receive ring's size (`recv_buffers` x `recv_buffer_size`) in all.
//! An idle connection pays nothing: the bytes live in a map keyed by slot, emptied when the connection goes.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(super) struct PausedInput {
    by_slot: HashMap<u32, Vec<u8>>,
    bytes: usize,
}

impl PausedInput {
    /// Keep `data`, received by `slot` while it is paused, after what it already has waiting.
    pub(super) fn hold(&mut self, slot: u32, data: &[u8]) {
        self.by_slot
            .entry(slot)
            .or_default()
            .extend_from_slice(data);
        self.bytes += data.len();
    }

    /// Whether `slot` has bytes waiting (then newer bytes must wait behind them, to keep their order).
    #[inline]
    pub(super) fn has(&self, slot: u32) -> bool {
        !self.by_slot.is_empty() && self.by_slot.contains_key(&slot)
    }

    /// Take `slot`'s waiting bytes (to feed them to it).
    pub(super) fn take(&mut self, slot: u32) -> Option<Vec<u8>> {
        let v = self.by_slot.remove(&slot)?;
        self.bytes -= v.len();
        Some(v)
    }

    /// Put back what `slot` did not get to before it paused again (the first bytes to feed next time).
    pub(super) fn put_back(&mut self, slot: u32, rest: Vec<u8>) {
        if rest.is_empty() {
            return;
        }
        debug_assert!(!self.has(slot), "put back while newer bytes wait");
        self.bytes += rest.len();
        self.by_slot.insert(slot, rest);
    }

    /// The connection in `slot` is gone: its waiting bytes with it.
    pub(super) fn forget(&mut self, slot: u32) {
        self.take(slot);
    }

    /// Bytes waiting on this worker (a gauge).
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::PausedInput;

    #[test]
    fn bytes_wait_in_order_per_slot_and_are_counted() {
        let mut p = PausedInput::default();
        assert!(!p.has(3));
        p.hold(3, b"ab");
        p.hold(3, b"cd");
        p.hold(7, b"x");
        assert!(p.has(3) && p.has(7) && !p.has(4));
        assert_eq!(p.bytes(), 5);
        let mut v = p.take(3).unwrap();
        assert_eq!(v, b"abcd");
        assert_eq!(p.bytes(), 1);
        v.drain(..1);
        p.put_back(3, v);
        assert_eq!(
            p.take(3).unwrap(),
            b"bcd",
            "the remainder comes first next time"
        );
        p.put_back(3, Vec::new());
        assert!(!p.has(3), "nothing left: nothing kept");
        p.forget(7);
        assert_eq!(p.bytes(), 0);
        assert!(p.take(7).is_none());
    }
}

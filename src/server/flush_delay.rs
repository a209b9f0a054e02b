//! The opt-in write delay (`Config::flush_delay`): a connection that queues a frame on an empty outbound queue is
//! not sent at the end of the loop turn but held until `delay` has passed, so the frames it queues meanwhile leave
//! in the same send (fewer, fuller packets, at the price of up to `delay` of latency).
//!
//! Sans-IO: one FIFO of (slot, generation, due time) per worker. Every entry is held for the same delay and times
//! only grow, so the queue is ordered by due time and the front is always the next one due: one deadline per worker
//! (the loop's wait), no timer per connection, nothing allocated while nobody is held beyond the queue's capacity.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Connections held for a delayed flush, oldest first.
#[derive(Debug)]
pub(crate) struct FlushDelay {
    delay: Duration,
    held: VecDeque<(u32, u32, Instant)>,
}

impl FlushDelay {
    pub(crate) fn new(delay: Duration) -> Self {
        FlushDelay {
            delay,
            held: VecDeque::new(),
        }
    }

    /// Whether sends are delayed at all (a zero delay sends at the end of every turn, as without this layer).
    #[inline]
    pub(crate) fn enabled(&self) -> bool {
        !self.delay.is_zero()
    }

    /// Hold `slot` (of generation `gen`), which queued its first unsent bytes at `now`, until `now + delay`.
    /// `now` must not go backwards between calls (the worker's clock is monotonic).
    pub(crate) fn hold(&mut self, slot: u32, gen: u32, now: Instant) {
        debug_assert!(self
            .held
            .back()
            .is_none_or(|&(_, _, d)| d <= now + self.delay));
        self.held.push_back((slot, gen, now + self.delay));
    }

    /// The next held connection due at `now`, if any: (slot, generation). Entries come out in the order they were
    /// held; the caller checks that the slot still has that generation and something to send.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u32, u32)> {
        match self.held.front() {
            Some(&(slot, gen, due)) if due <= now => {
                self.held.pop_front();
                Some((slot, gen))
            }
            _ => None,
        }
    }

    /// Take every held connection regardless of time (shutdown).
    pub(crate) fn pop_any(&mut self) -> Option<(u32, u32)> {
        self.held.pop_front().map(|(s, g, _)| (s, g))
    }

    /// When the loop must wake to flush the oldest held connection (`None`: nothing is held).
    #[inline]
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.held.front().map(|&(_, _, due)| due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn nothing_comes_out_before_its_delay_and_everything_at_it() {
        let t0 = Instant::now();
        let mut f = FlushDelay::new(5 * MS);
        assert!(f.enabled());
        f.hold(1, 10, t0);
        f.hold(2, 20, t0 + 2 * MS);
        assert_eq!(f.next_due(), Some(t0 + 5 * MS));
        assert_eq!(f.pop_due(t0 + 4 * MS), None, "held shorter than the delay");
        assert_eq!(f.pop_due(t0 + 5 * MS), Some((1, 10)));
        assert_eq!(f.pop_due(t0 + 5 * MS), None, "the second is due 2 ms later");
        assert_eq!(f.next_due(), Some(t0 + 7 * MS));
        assert_eq!(f.pop_due(t0 + 100 * MS), Some((2, 20)));
        assert_eq!(f.next_due(), None);
        assert!(f.held.is_empty());
    }

    #[test]
    fn the_front_is_always_the_earliest_due() {
        // Whatever the pattern of holds, the wake-up time the loop waits for is never later than any held entry's
        // due time: nothing is held past its bound.
        let t0 = Instant::now();
        let mut f = FlushDelay::new(3 * MS);
        let mut now = t0;
        for i in 0..1000u32 {
            now += Duration::from_micros((i as u64 * 7919) % 1500);
            f.hold(i, i, now);
            let next = f.next_due().unwrap();
            assert!(f.held.iter().all(|&(_, _, d)| d >= next));
            if i % 3 == 0 {
                while f.pop_due(now).is_some() {}
                assert!(
                    f.held.iter().all(|&(_, _, d)| d > now),
                    "an entry due was left held"
                );
            }
        }
        let mut n = 0;
        while f.pop_any().is_some() {
            n += 1;
        }
        assert!(n > 0 && f.held.is_empty());
    }

    #[test]
    fn zero_delay_is_off() {
        assert!(!FlushDelay::new(Duration::ZERO).enabled());
    }
}

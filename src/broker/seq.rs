//! Per-publisher sequences: the sending side numbers each topic's publishes 1, 2, 3...; the receiving side keeps,
//! per (topic, publisher), the last number seen, so it can count what Redis lost (a gap) and refuse anything it
//! already delivered (a repeat). Pure and bounded; no clock.
//!
//! A publisher is an (origin, epoch) pair. The epoch moves when a sender's table fills up and is cleared, so its
//! sequences restart without a receiver mistaking them for repeats.

use std::collections::HashMap;
use std::sync::Arc;

/// The sending side: the next sequence number of each topic this node publishes to.
#[derive(Debug)]
pub(crate) struct SeqSource {
    epoch: u32,
    next: HashMap<Arc<str>, u64>,
    cap: usize,
}

impl SeqSource {
    /// `cap`: topics kept before the table is cleared and a new epoch starts (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        SeqSource {
            epoch: 0,
            next: HashMap::new(),
            cap: cap.max(1),
        }
    }

    /// (epoch, sequence) for the next publish on `topic`.
    pub(crate) fn next(&mut self, topic: &Arc<str>) -> (u32, u64) {
        if let Some(n) = self.next.get_mut(&**topic) {
            *n += 1;
            return (self.epoch, *n);
        }
        if self.next.len() >= self.cap {
            self.next.clear();
            self.epoch = self.epoch.wrapping_add(1);
        }
        self.next.insert(topic.clone(), 1);
        (self.epoch, 1)
    }
}

/// What the receiving side should do with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// New: deliver it. `lost` messages of this stream were skipped since the previous one (0 when in order).
    Deliver { lost: u64 },
    /// Already delivered (or older): drop it.
    Repeat,
}

#[derive(Debug, Clone, Copy)]
struct Stream {
    origin: u64,
    epoch: u32,
    last: u64,
}

/// The receiving side: last sequence seen per (topic, publisher), for the topics this node is subscribed to.
#[derive(Debug)]
pub(crate) struct SeqTracker {
    topics: HashMap<Arc<str>, Vec<Stream>>,
    streams: usize,
    cap: usize,
    resets: u64,
}

impl SeqTracker {
    /// `cap`: streams tracked in total before the table is cleared (at least 1).
    pub(crate) fn new(cap: usize) -> Self {
        SeqTracker {
            topics: HashMap::new(),
            streams: 0,
            cap: cap.max(1),
            resets: 0,
        }
    }

    /// Judge message `seq` of publisher (`origin`, `epoch`) on `topic`.
    ///
    /// A stream's first message is delivered whatever its number (this node may have subscribed mid-stream). A
    /// newer epoch of a known origin restarts its stream; an older epoch is a repeat.
    pub(crate) fn observe(&mut self, topic: &str, origin: u64, epoch: u32, seq: u64) -> Verdict {
        if let Some(streams) = self.topics.get_mut(topic) {
            if let Some(s) = streams.iter_mut().find(|s| s.origin == origin) {
                if epoch != s.epoch {
                    // Epochs only move forward; wrapping comparison so u32::MAX -> 0 still counts as newer.
                    if (epoch.wrapping_sub(s.epoch) as i32) < 0 {
                        return Verdict::Repeat;
                    }
                    *s = Stream {
                        origin,
                        epoch,
                        last: seq,
                    };
                    return Verdict::Deliver { lost: 0 };
                }
                if seq <= s.last {
                    return Verdict::Repeat;
                }
                let lost = seq - s.last - 1;
                s.last = seq;
                return Verdict::Deliver { lost };
            }
        }
        if self.streams >= self.cap {
            self.topics.clear();
            self.streams = 0;
            self.resets += 1;
        }
        let stream = Stream {
            origin,
            epoch,
            last: seq,
        };
        match self.topics.get_mut(topic) {
            Some(v) => v.push(stream),
            None => {
                self.topics.insert(Arc::from(topic), vec![stream]);
            }
        }
        self.streams += 1;
        Verdict::Deliver { lost: 0 }
    }

    /// This node no longer listens to `topic`: forget its streams.
    pub(crate) fn forget(&mut self, topic: &str) {
        if let Some(v) = self.topics.remove(topic) {
            self.streams -= v.len();
        }
    }

    /// Keep only the topics `keep` says yes to.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&str) -> bool) {
        let mut dropped = 0;
        self.topics.retain(|t, v| {
            let k = keep(t);
            if !k {
                dropped += v.len();
            }
            k
        });
        self.streams -= dropped;
    }

    #[cfg(test)]
    /// Streams tracked now.
    pub(crate) fn len(&self) -> usize {
        self.streams
    }

    #[cfg(test)]
    /// How often the table was cleared because it was full.
    pub(crate) fn resets(&self) -> u64 {
        self.resets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_numbers_each_topic_from_one() {
        let mut s = SeqSource::new(10);
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(s.next(&a), (0, 1));
        assert_eq!(s.next(&a), (0, 2));
        assert_eq!(s.next(&b), (0, 1));
        assert_eq!(s.next(&a), (0, 3));
    }

    #[test]
    fn source_starts_a_new_epoch_when_full() {
        let mut s = SeqSource::new(2);
        let t: Vec<Arc<str>> = ["a", "b", "c"].iter().map(|x| Arc::from(*x)).collect();
        s.next(&t[0]);
        s.next(&t[0]);
        s.next(&t[1]);
        assert_eq!(s.next(&t[2]), (1, 1), "third topic clears the table");
        assert_eq!(s.next(&t[0]), (1, 1), "old topics restart in the new epoch");
        // A receiver sees the restart as a fresh stream, not as repeats.
        let mut r = SeqTracker::new(10);
        assert_eq!(r.observe("a", 9, 0, 2), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("a", 9, 1, 1), Verdict::Deliver { lost: 0 });
    }

    #[test]
    fn in_order_gaps_and_repeats() {
        let mut r = SeqTracker::new(10);
        assert_eq!(
            r.observe("t", 1, 0, 5),
            Verdict::Deliver { lost: 0 },
            "first seen mid-stream"
        );
        assert_eq!(r.observe("t", 1, 0, 6), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("t", 1, 0, 10), Verdict::Deliver { lost: 3 });
        assert_eq!(r.observe("t", 1, 0, 10), Verdict::Repeat);
        assert_eq!(r.observe("t", 1, 0, 7), Verdict::Repeat);
        assert_eq!(r.observe("t", 1, 0, 11), Verdict::Deliver { lost: 0 });
    }

    #[test]
    fn publishers_and_topics_are_independent() {
        let mut r = SeqTracker::new(10);
        assert_eq!(r.observe("t", 1, 0, 1), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("t", 2, 0, 1), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("u", 1, 0, 1), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("t", 1, 0, 2), Verdict::Deliver { lost: 0 });
        assert_eq!(r.observe("t", 2, 0, 3), Verdict::Deliver { lost: 1 });
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn older_epochs_are_repeats_and_epochs_wrap() {
        let mut r = SeqTracker::new(10);
        r.observe("t", 1, 4, 100);
        assert_eq!(r.observe("t", 1, 3, 200), Verdict::Repeat);
        assert_eq!(r.observe("t", 1, 5, 1), Verdict::Deliver { lost: 0 });
        r.observe("w", 1, u32::MAX, 1);
        assert_eq!(
            r.observe("w", 1, 0, 1),
            Verdict::Deliver { lost: 0 },
            "MAX -> 0 is newer"
        );
    }

    #[test]
    fn forget_and_retain_release_streams() {
        let mut r = SeqTracker::new(10);
        r.observe("a", 1, 0, 1);
        r.observe("a", 2, 0, 1);
        r.observe("b", 1, 0, 1);
        r.forget("a");
        assert_eq!(r.len(), 1);
        // After forgetting, a resubscribed topic takes the next message as a first one: no false loss.
        assert_eq!(r.observe("a", 1, 0, 50), Verdict::Deliver { lost: 0 });
        r.retain(|t| t == "b");
        assert_eq!(r.len(), 1);
        r.forget("nope");
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn full_table_is_cleared_not_grown() {
        let mut r = SeqTracker::new(3);
        for origin in 0..3 {
            r.observe("t", origin, 0, 1);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.observe("t", 99, 0, 1), Verdict::Deliver { lost: 0 });
        assert_eq!(r.len(), 1);
        assert_eq!(r.resets(), 1);
        for i in 0..1000u64 {
            r.observe("t", 1000 + i, 0, 1);
            assert!(r.len() <= 3);
        }
    }
}

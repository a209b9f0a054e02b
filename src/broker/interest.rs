//! The node's wanted set: which topics some worker has subscribers for, and which Redis channels that means
//! subscribing or unsubscribing. Pure, time passed in; the bridge holds it behind a mutex that workers take only
//! when a topic gains its first or loses its last subscriber on that worker (never per message).
//!
//! Call order: workers call [`Interest::want`] / [`Interest::unwant`] (balanced, one pair per worker per topic
//! lifetime on that worker) and wake the bridge when they return `true`; the bridge calls
//! [`Interest::on_connect`] after a (re)connect (the whole wanted set, to subscribe in batches),
//! [`Interest::poll`] when woken or at [`Interest::next_deadline`] (channels to subscribe and to unsubscribe), and
//! [`Interest::on_disconnect`] when the session is lost.
//!
//! Linger: a topic whose last want went away stays subscribed for `linger`; a want inside that window cancels the
//! unsubscribe, so a client that leaves and rejoins costs Redis nothing. Each topic has at most one deadline queued,
//! so flapping cannot grow the queue. Memory: one entry per wanted or lingering topic.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Entry {
    /// Workers that want the topic.
    wants: u32,
    /// Subscribed on the current Redis session (or handed out to subscribe).
    subscribed: bool,
    /// Listed in `dirty`.
    dirty: bool,
    /// When the bridge saw the last want go away (the linger starts there).
    unwanted_since: Option<Instant>,
    /// A deadline for this topic is in the heap.
    queued: bool,
}

/// What the bridge should send to Redis now.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Actions {
    pub(crate) subscribe: Vec<Arc<str>>,
    pub(crate) unsubscribe: Vec<Arc<str>>,
}

impl Actions {
    pub(crate) fn is_empty(&self) -> bool {
        self.subscribe.is_empty() && self.unsubscribe.is_empty()
    }
}

/// The wanted set and its subscription state on the current Redis session.
#[derive(Debug)]
pub(crate) struct Interest {
    topics: HashMap<Arc<str>, Entry>,
    dirty: Vec<Arc<str>>,
    deadlines: BinaryHeap<Reverse<(Instant, Arc<str>)>>,
    linger: Duration,
    connected: bool,
    subscribed: usize,
    unbalanced: u64,
}

impl Interest {
    pub(crate) fn new(linger: Duration) -> Self {
        Interest {
            topics: HashMap::new(),
            dirty: Vec::new(),
            deadlines: BinaryHeap::new(),
            linger,
            connected: false,
            subscribed: 0,
            unbalanced: 0,
        }
    }

    /// One more worker wants `topic`. True when the bridge should be woken (the first want).
    pub(crate) fn want(&mut self, topic: &str) -> bool {
        let e = match self.topics.get_mut(topic) {
            Some(e) => e,
            None => self.topics.entry(Arc::from(topic)).or_default(),
        };
        e.wants += 1;
        if e.wants == 1 {
            self.mark_dirty(topic);
            return true;
        }
        false
    }

    /// One worker no longer wants `topic`. True when the bridge should be woken (the last want went).
    /// An unwant without a want is ignored and counted ([`Interest::unbalanced`]).
    pub(crate) fn unwant(&mut self, topic: &str) -> bool {
        match self.topics.get_mut(topic) {
            Some(e) if e.wants > 0 => {
                e.wants -= 1;
                if e.wants == 0 {
                    self.mark_dirty(topic);
                    return true;
                }
                false
            }
            _ => {
                self.unbalanced += 1;
                false
            }
        }
    }

    fn mark_dirty(&mut self, topic: &str) {
        if let Some((k, e)) = self.topics.get_key_value(topic) {
            if !e.dirty {
                let k = k.clone();
                self.dirty.push(k);
            }
        }
        if let Some(e) = self.topics.get_mut(topic) {
            e.dirty = true;
        }
    }

    /// The session is up: every wanted topic is to be subscribed (returned, to send in batches); lingering ones
    /// are dropped (nobody wants them and the new session never had them).
    pub(crate) fn on_connect(&mut self) -> Vec<Arc<str>> {
        self.connected = true;
        self.dirty.clear();
        self.deadlines.clear();
        self.topics.retain(|_, e| e.wants > 0);
        let mut all = Vec::with_capacity(self.topics.len());
        for (k, e) in self.topics.iter_mut() {
            e.dirty = false;
            e.queued = false;
            e.unwanted_since = None;
            e.subscribed = true;
            all.push(k.clone());
        }
        self.subscribed = all.len();
        all
    }

    /// The session is gone: nothing is subscribed any more; wants are kept for the next [`Interest::on_connect`].
    pub(crate) fn on_disconnect(&mut self) {
        self.connected = false;
        self.dirty.clear();
        self.deadlines.clear();
        self.topics.retain(|_, e| e.wants > 0);
        for e in self.topics.values_mut() {
            e.dirty = false;
            e.queued = false;
            e.unwanted_since = None;
            e.subscribed = false;
        }
        self.subscribed = 0;
    }

    /// Work through changed wants and expired lingers at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Actions {
        let mut out = Actions::default();
        for topic in std::mem::take(&mut self.dirty) {
            let Some(e) = self.topics.get_mut(&*topic) else {
                continue;
            };
            e.dirty = false;
            if e.wants > 0 {
                e.unwanted_since = None;
                if !e.subscribed && self.connected {
                    e.subscribed = true;
                    self.subscribed += 1;
                    out.subscribe.push(topic);
                }
            } else if e.subscribed {
                e.unwanted_since = Some(now);
                if !e.queued {
                    e.queued = true;
                    self.deadlines.push(Reverse((now + self.linger, topic)));
                }
            } else {
                self.topics.remove(&*topic);
            }
        }
        while let Some(Reverse((at, _))) = self.deadlines.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, topic))) = self.deadlines.pop() else {
                break;
            };
            let Some(e) = self.topics.get_mut(&*topic) else {
                continue;
            };
            e.queued = false;
            match (e.wants, e.unwanted_since) {
                (0, Some(since)) if since + self.linger <= now => {
                    if e.subscribed {
                        self.subscribed -= 1;
                        out.unsubscribe.push(topic.clone());
                    }
                    self.topics.remove(&*topic);
                }
                (0, Some(since)) => {
                    // Re-unwanted after a flap: the linger restarted, wait for the new end.
                    e.queued = true;
                    self.deadlines.push(Reverse((since + self.linger, topic)));
                }
                _ => {}
            }
        }
        out
    }

    /// When [`Interest::poll`] next has a linger to end (None: nothing lingering).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((at, _))| *at)
    }

    #[cfg(test)]
    /// Whether some worker wants `topic`.
    pub(crate) fn is_wanted(&self, topic: &str) -> bool {
        self.topics.get(topic).is_some_and(|e| e.wants > 0)
    }

    /// Channels subscribed (or handed out to subscribe) on the current session.
    pub(crate) fn subscribed(&self) -> usize {
        self.subscribed
    }

    /// Topics wanted by at least one worker.
    pub(crate) fn wanted(&self) -> usize {
        self.topics.values().filter(|e| e.wants > 0).count()
    }

    #[cfg(test)]
    /// Unwants that had no matching want (a caller bug; ignored).
    pub(crate) fn unbalanced(&self) -> u64 {
        self.unbalanced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINGER: Duration = Duration::from_millis(500);

    fn names(v: &[Arc<str>]) -> Vec<&str> {
        let mut v: Vec<&str> = v.iter().map(|s| &**s).collect();
        v.sort();
        v
    }

    fn connected(now: Instant) -> Interest {
        let mut i = Interest::new(LINGER);
        assert!(i.on_connect().is_empty());
        assert!(i.poll(now).is_empty());
        i
    }

    #[test]
    fn first_want_subscribes_once_across_workers() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        assert!(i.want("room"), "first worker wakes the bridge");
        assert!(!i.want("room"), "second worker does not");
        let a = i.poll(t0);
        assert_eq!(names(&a.subscribe), ["room"]);
        assert!(i.poll(t0).is_empty(), "nothing more to do");
        assert!(!i.unwant("room"));
        assert!(
            i.poll(t0 + LINGER * 10).is_empty(),
            "one worker still wants it"
        );
        assert_eq!(i.subscribed(), 1);
    }

    #[test]
    fn unsubscribe_waits_for_the_linger() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        i.want("room");
        i.poll(t0);
        assert!(i.unwant("room"));
        assert!(i.poll(t0).is_empty());
        assert_eq!(i.next_deadline(), Some(t0 + LINGER));
        assert!(i.poll(t0 + LINGER - Duration::from_millis(1)).is_empty());
        let a = i.poll(t0 + LINGER);
        assert_eq!(names(&a.unsubscribe), ["room"]);
        assert_eq!(i.subscribed(), 0);
        assert_eq!(i.next_deadline(), None);
        assert!(!i.is_wanted("room"));
    }

    #[test]
    fn flapping_inside_the_linger_costs_nothing() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        i.want("room");
        assert_eq!(i.poll(t0).subscribe.len(), 1);
        let ms = Duration::from_millis;
        // Leave and rejoin 100 times, the bridge polling in between each time.
        for k in 0..100u64 {
            i.unwant("room");
            assert!(i.poll(t0 + ms(k * 2)).is_empty());
            i.want("room");
            assert!(i.poll(t0 + ms(k * 2 + 1)).is_empty());
        }
        assert!(
            i.deadlines.len() <= 1,
            "one deadline per topic, not one per flap"
        );
        // The last leave at 300 ms: the channel goes 500 ms after that, not after the first leave.
        i.unwant("room");
        assert!(i.poll(t0 + ms(300)).is_empty());
        assert!(i.poll(t0 + ms(799)).is_empty());
        assert_eq!(i.poll(t0 + ms(800)).unsubscribe.len(), 1);
    }

    #[test]
    fn want_and_unwant_between_polls_never_touch_redis() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        i.want("x");
        i.unwant("x");
        assert!(i.poll(t0).is_empty());
        assert!(i.poll(t0 + LINGER * 2).is_empty());
        assert_eq!(i.topics.len(), 0, "entry freed");
    }

    #[test]
    fn reconnect_resubscribes_the_wanted_set_and_drops_lingering() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        for t in ["a", "b", "c"] {
            i.want(t);
        }
        i.poll(t0);
        i.unwant("c");
        i.poll(t0);
        i.on_disconnect();
        assert_eq!(i.subscribed(), 0);
        // Wants while down are kept, not sent.
        i.want("d");
        i.unwant("a");
        assert!(i.poll(t0).is_empty());
        assert_eq!(names(&i.on_connect()), ["b", "d"]);
        assert_eq!(i.subscribed(), 2);
        assert!(
            i.poll(t0 + LINGER * 2).is_empty(),
            "no stale unsubscribe after reconnect"
        );
    }

    #[test]
    fn unbalanced_unwant_is_ignored_and_counted() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        assert!(!i.unwant("ghost"));
        i.want("a");
        i.unwant("a");
        assert!(!i.unwant("a"));
        assert_eq!(i.unbalanced(), 2);
        assert!(i.poll(t0).is_empty());
    }

    #[test]
    fn many_topics_expire_in_deadline_order() {
        let t0 = Instant::now();
        let mut i = connected(t0);
        let ms = Duration::from_millis;
        for k in 0..50u64 {
            let t = format!("t{k}");
            i.want(&t);
            i.poll(t0);
            i.unwant(&t);
            i.poll(t0 + ms(k));
        }
        let mut gone = 0;
        for k in 0..50u64 {
            let a = i.poll(t0 + LINGER + ms(k));
            assert_eq!(a.unsubscribe.len(), 1, "step {k}");
            assert_eq!(&*a.unsubscribe[0], format!("t{k}"));
            gone += 1;
        }
        assert_eq!(gone, 50);
        assert_eq!(i.subscribed(), 0);
    }
}

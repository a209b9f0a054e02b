//! Pub/sub, in one place. Topics are per worker; a publish reaches local subscribers directly and the other
//! workers through their bounded mailboxes (woken by an eventfd their rings read). The frame is encoded once and
//! shared (`Bytes`) by every subscriber's queue. Order per topic is kept for each subscriber: a worker delivers its
//! local publishes in call order and drains its mailbox (FIFO) in order.
//!
//! - [`Hub`] (process-wide, in `Shared`): the mailboxes, forwarding, publishes from outside the workers, the
//!   global subscriber counts, and (with `Config::broker`) the Redis bridge to the other nodes.
//! - Across nodes ([`crate::broker`]): a worker's first subscriber of a topic makes the node want its channel, the
//!   last one leaving unwants it; every local publish (from a worker or from outside) goes to Redis once; a remote
//!   publish is framed once on the bridge thread and handed only to the workers that have subscribers for it,
//!   through the same bounded mailboxes (full: dropped, counted as `drop_local_full`).
//! - [`Topics`] (one per worker, in `Local`): the local topic table, subscribe / unsubscribe / unsubscribe-all for a
//!   connection's [`Subscriptions`], and the publishes made during the current callback.
//! - Handing one frame to one subscriber (backpressure, the slow-consumer policy) is the WebSocket session's job
//!   (`worker/session.rs`); the worker's loop calls it for each slot [`Topics::subscribers`] names.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::compress::Deflated;
use super::id::ConnId;
use crate::broker::{Bridge, BrokerConfig, BrokerSnapshot, Health, Sink};
use crate::proto::{write_frame, OpCode, MAX_HEADER_LEN};

/// One publish on its way to subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    pub topic: Arc<str>,
    pub frame: Bytes,
    pub exclude: Option<ConnId>,
    /// Its compressed frames, one per window class, made at most once each by whichever worker first delivers
    /// to a subscriber of the class (`None` when compression is off).
    pub deflated: Option<Arc<Deflated>>,
}

impl Publish {
    /// A publish of `frame` (a complete plain server frame); `compress`: compression is on in this server.
    pub(crate) fn new(
        topic: Arc<str>,
        frame: Bytes,
        exclude: Option<ConnId>,
        compress: bool,
    ) -> Self {
        Publish {
            topic,
            frame,
            exclude,
            deflated: compress.then(Arc::default),
        }
    }
}

/// The topics one connection is subscribed to (interned names shared with the worker's table). Boxed, so a
/// connection that subscribes to nothing pays 8 bytes.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // 8 bytes in every connection's slot instead of 24
pub(crate) struct Subscriptions(Option<Box<Vec<Arc<str>>>>);

impl Subscriptions {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<str>> {
        self.0.iter().flat_map(|v| v.iter())
    }
    fn position(&self, topic: &str) -> Option<usize> {
        self.iter().position(|t| &**t == topic)
    }
    fn push(&mut self, t: Arc<str>) {
        self.0.get_or_insert_with(Default::default).push(t);
    }
    fn swap_remove(&mut self, i: usize) -> Arc<str> {
        let v = self.0.as_mut().expect("index from position()");
        let t = v.swap_remove(i);
        if v.is_empty() {
            self.0 = None;
        }
        t
    }
    fn take(&mut self) -> Vec<Arc<str>> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.0.is_none()
    }
}

/// The process-wide half of pub/sub.
pub(crate) struct Hub {
    core: Arc<HubCore>,
    /// The Redis bridge (with `Config::broker`); dropping the hub stops its thread and waits for it.
    broker: Option<Bridge>,
}

/// What the workers and the bridge thread both reach: the mailboxes and the counts.
struct HubCore {
    mailboxes: Vec<Mailbox>,
    /// Compression is on: publishes carry a [`Deflated`] cache.
    compress: bool,
    counts: TopicCounts,
}

impl Hub {
    /// One mailbox of `capacity` publishes per worker; the receivers go to the workers, in order. With `broker`,
    /// the Redis bridge thread starts too (it connects in the background; Redis being down is not an error).
    pub(crate) fn new(
        workers: usize,
        capacity: usize,
        broker: Option<&BrokerConfig>,
        compress: bool,
    ) -> std::io::Result<(Hub, Vec<Receiver<Publish>>)> {
        let mut mailboxes = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (m, rx) = Mailbox::new(capacity)?;
            mailboxes.push(m);
            receivers.push(rx);
        }
        let core = Arc::new(HubCore {
            mailboxes,
            counts: TopicCounts::default(),
            compress,
        });
        let broker = match broker {
            Some(cfg) => {
                Some(Bridge::start(cfg.clone(), core.clone()).map_err(std::io::Error::other)?)
            }
            None => None,
        };
        Ok((Hub { core, broker }, receivers))
    }

    /// The bridge's view of Redis (None: no broker configured).
    pub(crate) fn broker_health(&self) -> Option<Health> {
        self.broker.as_ref().map(Bridge::health)
    }

    /// The bridge's counters (None: no broker configured).
    pub(crate) fn broker_stats(&self) -> Option<BrokerSnapshot> {
        self.broker.as_ref().map(Bridge::stats)
    }

    /// This node's origin id in Redis envelopes (None: no broker configured).
    pub(crate) fn node_id(&self) -> Option<u64> {
        self.broker.as_ref().map(Bridge::node_id)
    }

    /// Send a local publish to the other nodes (once per publish; dropped and counted if Redis is away).
    fn to_broker(&self, p: &Publish) {
        if let Some(b) = &self.broker {
            if let Some((payload, is_text)) = unframe(&p.frame) {
                b.publish(p.topic.clone(), payload, is_text);
            }
        }
    }

    /// A worker gained its first (`first`) or another subscriber of `topic`.
    fn added(&self, topic: &Arc<str>, worker: usize, first: bool) {
        self.core.counts.add(topic, 1, worker, first);
        if let (true, Some(b)) = (first, &self.broker) {
            b.want(topic);
        }
    }

    /// A worker lost its last (`last`) or another subscriber of `topic`.
    fn removed(&self, topic: &Arc<str>, worker: usize, last: bool) {
        self.core.counts.add(topic, -1, worker, last);
        if let (true, Some(b)) = (last, &self.broker) {
            b.unwant(topic);
        }
    }

    /// The eventfd worker `w`'s ring reads to learn that its mailbox has publishes.
    pub(crate) fn eventfd(&self, w: usize) -> i32 {
        self.core.mailboxes[w].eventfd()
    }

    /// Worker `w` is about to drain its mailbox: later publishes wake it again.
    pub(crate) fn clear_notified(&self, w: usize) {
        self.core.mailboxes[w].clear_notified();
    }

    /// Wake every worker (shutdown).
    pub(crate) fn wake_all(&self) {
        for m in &self.core.mailboxes {
            m.wake();
        }
    }

    /// Hand a publish made on worker `from` to every other worker and to the other nodes. Returns how many
    /// mailboxes were full (dropped).
    pub(crate) fn forward(&self, from: usize, p: &Publish) -> u64 {
        self.to_broker(p);
        let mut dropped = 0;
        for (i, m) in self.core.mailboxes.iter().enumerate() {
            if i != from && !m.send(p.clone()) {
                dropped += 1;
            }
        }
        dropped
    }

    /// A publish from outside the workers (an HTTP handler, the application's own thread) to every worker and to
    /// the other nodes. A full mailbox drops it for that worker.
    pub(crate) fn publish_from_outside(&self, topic: &str, frame: Bytes) {
        let p = Publish::new(Arc::from(topic), frame, None, self.core.compress);
        self.to_broker(&p);
        for m in &self.core.mailboxes {
            let _ = m.send(p.clone());
        }
    }

    /// Subscribers of `topic` across all workers.
    pub(crate) fn subscriber_count(&self, topic: &str) -> usize {
        self.core.counts.get(topic)
    }
}

impl Sink for HubCore {
    /// A remote publish (bridge thread): framed once, queued on the workers that have subscribers for `topic`.
    fn deliver(&self, topic: &str, payload: Bytes, is_text: bool) -> usize {
        let mut targets = [0usize; 64];
        let Some((topic, n)) = self.counts.workers_of(topic, &mut targets) else {
            return 0; // lingering: nobody here any more
        };
        let op = if is_text {
            OpCode::Text
        } else {
            OpCode::Binary
        };
        let mut v = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
        write_frame(&mut v, true, op, &payload);
        let p = Publish::new(topic, Bytes::from(v), None, self.compress);
        let mut full = 0;
        match n {
            // More workers with subscribers than fit the list: every worker gets it (they skip what they lack).
            None => {
                for m in &self.mailboxes {
                    full += usize::from(!m.send(p.clone()));
                }
            }
            Some(n) => {
                for &w in &targets[..n] {
                    full += usize::from(!self.mailboxes[w].send(p.clone()));
                }
            }
        }
        full
    }
}

/// The payload of a complete unmasked server data frame (a slice of the same buffer) and whether it is text.
pub(crate) fn unframe(frame: &Bytes) -> Option<(Bytes, bool)> {
    let (&b0, &b1) = (frame.first()?, frame.get(1)?);
    let is_text = match b0 & 0x0f {
        1 => true,
        2 => false,
        _ => return None,
    };
    let header = match b1 & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame.len() >= header).then(|| (frame.slice(header..), is_text))
}

/// A worker's half of pub/sub.
#[derive(Debug, Default)]
pub(crate) struct Topics {
    worker: usize,
    table: TopicTable,
    pending: Vec<Publish>,
}

impl Topics {
    /// Worker `worker`'s topics.
    pub(crate) fn new(worker: usize) -> Self {
        Topics {
            worker,
            ..Topics::default()
        }
    }

    /// Subscribe connection `slot` (whose list is `subs`) to `topic`. False if it already was.
    pub(crate) fn subscribe(
        &mut self,
        hub: &Hub,
        subs: &mut Subscriptions,
        topic: &str,
        slot: u32,
    ) -> bool {
        if subs.position(topic).is_some() {
            return false;
        }
        let (t, first) = self.table.add(topic, slot);
        hub.added(&t, self.worker, first);
        subs.push(t);
        true
    }

    /// Unsubscribe connection `slot` from `topic`. False if it was not subscribed.
    pub(crate) fn unsubscribe(
        &mut self,
        hub: &Hub,
        subs: &mut Subscriptions,
        topic: &str,
        slot: u32,
    ) -> bool {
        let Some(i) = subs.position(topic) else {
            return false;
        };
        let t = subs.swap_remove(i);
        let last = self.table.remove(&t, slot);
        hub.removed(&t, self.worker, last);
        true
    }

    /// The connection is going away: drop every subscription it holds.
    pub(crate) fn unsubscribe_all(&mut self, hub: &Hub, subs: &mut Subscriptions, slot: u32) {
        for t in subs.take() {
            let last = self.table.remove(&t, slot);
            hub.removed(&t, self.worker, last);
        }
    }

    /// Queue a publish made during a callback; the worker delivers it when the callback returns.
    pub(crate) fn publish(&mut self, p: Publish) {
        self.pending.push(p);
    }

    /// The publishes queued since the last call (in call order).
    pub(crate) fn take_pending(&mut self) -> Vec<Publish> {
        std::mem::take(&mut self.pending)
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Local subscriber slots of `topic`.
    pub(crate) fn subscribers(&self, topic: &str) -> &[u32] {
        self.table.subscribers(topic)
    }
}

/// A worker's local subscribers: topic -> connection slots.
#[derive(Debug, Default)]
struct TopicTable {
    map: HashMap<Arc<str>, Vec<u32>>,
}

impl TopicTable {
    /// Add `slot` to `topic`; returns the interned topic name for the connection's own list, and whether it is
    /// the topic's first subscriber on this worker.
    fn add(&mut self, topic: &str, slot: u32) -> (Arc<str>, bool) {
        let (k, first) = match self.map.get_key_value(topic) {
            Some((k, _)) => (k.clone(), false),
            None => (Arc::from(topic), true),
        };
        self.map.entry(k.clone()).or_default().push(slot);
        (k, first)
    }

    /// Remove `slot` from `topic`; true if that was the topic's last subscriber on this worker.
    fn remove(&mut self, topic: &Arc<str>, slot: u32) -> bool {
        if let Some(v) = self.map.get_mut(&**topic) {
            if let Some(i) = v.iter().position(|&s| s == slot) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.map.remove(&**topic);
                return true;
            }
        }
        false
    }

    fn subscribers(&self, topic: &str) -> &[u32] {
        self.map.get(topic).map(|v| &v[..]).unwrap_or(&[])
    }
}

/// A worker's inbox for publishes made elsewhere.
struct Mailbox {
    tx: SyncSender<Publish>,
    efd: OwnedFd,
    notified: AtomicBool,
}

impl Mailbox {
    fn new(capacity: usize) -> std::io::Result<(Mailbox, Receiver<Publish>)> {
        // SAFETY: eventfd has no pointer arguments; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        Ok((
            Mailbox {
                tx,
                efd,
                notified: AtomicBool::new(false),
            },
            rx,
        ))
    }

    fn eventfd(&self) -> i32 {
        self.efd.as_raw_fd()
    }

    /// Queue a publish; false if the mailbox is full (the caller counts the drop).
    fn send(&self, p: Publish) -> bool {
        match self.tx.try_send(p) {
            Ok(()) => {
                self.wake();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Wake the worker (once until it clears the flag).
    fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    fn clear_notified(&self) {
        self.notified.store(false, Ordering::Release);
    }
}

/// Global subscriber counts per topic and which workers hold them (updated on subscribe/unsubscribe, never on
/// publish; read per remote publish by the bridge thread).
#[derive(Debug, Default)]
struct TopicCounts {
    map: Mutex<HashMap<Arc<str>, TopicCount>>,
}

#[derive(Debug, Default)]
struct TopicCount {
    subscribers: usize,
    /// Workers with at least one subscriber.
    workers: Vec<usize>,
}

impl TopicCounts {
    /// `edge`: the worker's first subscriber (delta +1) or its last (delta -1) of the topic.
    fn add(&self, topic: &Arc<str>, delta: isize, worker: usize, edge: bool) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(topic.clone()).or_default();
        c.subscribers = (c.subscribers as isize + delta).max(0) as usize;
        if edge && delta > 0 {
            c.workers.push(worker);
        } else if edge {
            c.workers.retain(|&w| w != worker);
        }
        if c.subscribers == 0 {
            m.remove(&**topic);
        }
    }
    fn get(&self, topic: &str) -> usize {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .map_or(0, |c| c.subscribers)
    }
    /// The interned topic and the workers with subscribers, copied into `out`; `Some(None)` if they do not fit.
    fn workers_of(&self, topic: &str, out: &mut [usize]) -> Option<(Arc<str>, Option<usize>)> {
        let m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let (k, c) = m.get_key_value(topic)?;
        if c.workers.len() > out.len() {
            return Some((k.clone(), None));
        }
        out[..c.workers.len()].copy_from_slice(&c.workers);
        Some((k.clone(), Some(c.workers.len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_keep_table_and_counts_in_step() {
        let (hub, _rx) = Hub::new(1, 4, None, false).unwrap();
        let mut t = Topics::new(0);
        let (mut a, mut b) = (Subscriptions::default(), Subscriptions::default());
        assert!(t.subscribe(&hub, &mut a, "room", 1));
        assert!(!t.subscribe(&hub, &mut a, "room", 1), "idempotent");
        assert!(t.subscribe(&hub, &mut b, "room", 2));
        assert_eq!(t.subscribers("room"), &[1, 2]);
        assert_eq!(hub.subscriber_count("room"), 2);
        assert!(t.unsubscribe(&hub, &mut a, "room", 1));
        assert!(!t.unsubscribe(&hub, &mut a, "room", 1));
        t.unsubscribe_all(&hub, &mut b, 2);
        assert!(t.subscribers("room").is_empty() && b.is_empty());
        assert_eq!(hub.subscriber_count("room"), 0);
    }

    #[test]
    fn forward_skips_the_sender_and_counts_full_mailboxes() {
        let (hub, rx) = Hub::new(3, 1, None, false).unwrap();
        let p = Publish::new(Arc::from("t"), Bytes::from_static(b"x"), None, false);
        assert_eq!(hub.forward(0, &p), 0);
        assert!(rx[0].try_recv().is_err(), "not to itself");
        assert!(rx[1].try_recv().is_ok() && rx[2].try_recv().is_ok());
        assert_eq!(hub.forward(0, &p), 0);
        assert!(rx[1].try_recv().is_ok(), "worker 1 drained its mailbox");
        assert_eq!(
            hub.forward(0, &p),
            1,
            "worker 2's mailbox (capacity 1) is still full"
        );
    }

    #[test]
    fn a_remote_publish_is_framed_once_and_reaches_only_workers_with_subscribers() {
        let (hub, rx) = Hub::new(3, 1, None, false).unwrap();
        let (mut w1, mut w2) = (Topics::new(1), Topics::new(2));
        let (mut a, mut b, mut c) = Default::default();
        w1.subscribe(&hub, &mut a, "room", 7);
        w2.subscribe(&hub, &mut b, "room", 8);
        w2.subscribe(&hub, &mut c, "room", 9);
        let sink: &dyn Sink = &*hub.core;
        assert_eq!(sink.deliver("room", Bytes::from_static(b"hi"), true), 0);
        assert!(rx[0].try_recv().is_err(), "worker 0 has no subscriber");
        let (p1, p2) = (rx[1].try_recv().unwrap(), rx[2].try_recv().unwrap());
        assert_eq!(&p1.frame[..], b"\x81\x02hi");
        assert_eq!(
            p1.frame.as_ptr(),
            p2.frame.as_ptr(),
            "one frame shared by both workers"
        );
        assert_eq!(sink.deliver("room", Bytes::from_static(b"\x00"), false), 0);
        assert_eq!(
            sink.deliver("room", Bytes::from_static(b"\x00"), false),
            2,
            "both mailboxes full"
        );
        // Worker 1 loses its subscriber: only worker 2 is a target; a topic nobody holds goes nowhere.
        w1.unsubscribe_all(&hub, &mut a, 7);
        let _ = (rx[1].try_recv(), rx[2].try_recv());
        assert_eq!(sink.deliver("room", Bytes::from_static(b"x"), true), 0);
        assert!(rx[1].try_recv().is_err() && rx[2].try_recv().is_ok());
        assert_eq!(sink.deliver("nobody", Bytes::from_static(b"x"), true), 0);
        assert!(rx.iter().all(|r| r.try_recv().is_err()));
    }

    #[test]
    fn unframe_gives_the_payload_of_every_header_size() {
        for len in [0usize, 125, 126, 65_535, 65_536] {
            let payload = vec![b'a'; len];
            let mut v = Vec::new();
            write_frame(&mut v, true, OpCode::Binary, &payload);
            let (p, text) = unframe(&Bytes::from(v)).unwrap();
            assert_eq!((p.len(), text), (len, false));
        }
        let mut v = Vec::new();
        write_frame(&mut v, true, OpCode::Text, b"t");
        assert_eq!(
            unframe(&Bytes::from(v)),
            Some((Bytes::from_static(b"t"), true))
        );
        assert_eq!(unframe(&Bytes::from_static(b"\x89\x00")), None, "not data");
        assert_eq!(unframe(&Bytes::from_static(b"\x81")), None, "truncated");
    }
}

//! Topics. Each worker keeps its own table of local subscribers; a publish reaches them directly and reaches the
//! other workers through their bounded mailboxes (woken by an eventfd the target ring reads). The frame is encoded
//! once and shared (`Bytes`) by every subscriber's queue. Order per topic is kept for each subscriber: a worker
//! delivers local publishes in call order and drains its mailbox (FIFO) in order.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::handler::ConnId;

/// One publish on its way to subscribers.
#[derive(Debug, Clone)]
pub(crate) struct Publish {
    pub topic: Arc<str>,
    pub frame: Bytes,
    pub exclude: Option<ConnId>,
}

/// A worker's local subscribers: topic -> connection slots.
#[derive(Debug, Default)]
pub(crate) struct TopicTable {
    map: HashMap<Arc<str>, Vec<u32>>,
}

impl TopicTable {
    /// Add `slot` to `topic`; returns the interned topic name for the connection's own list.
    pub fn subscribe(&mut self, topic: &str, slot: u32) -> Arc<str> {
        if let Some(k) = self.map.get_key_value(topic).map(|(k, _)| k.clone()) {
            if let Some(v) = self.map.get_mut(topic) {
                v.push(slot);
            }
            return k;
        }
        let k: Arc<str> = Arc::from(topic);
        self.map.insert(k.clone(), vec![slot]);
        k
    }

    pub fn unsubscribe(&mut self, topic: &Arc<str>, slot: u32) {
        if let Some(v) = self.map.get_mut(&**topic) {
            if let Some(i) = v.iter().position(|&s| s == slot) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.map.remove(&**topic);
            }
        }
    }

    pub fn subscribers(&self, topic: &str) -> &[u32] {
        self.map.get(topic).map(|v| &v[..]).unwrap_or(&[])
    }
}

/// A worker's inbox for publishes made elsewhere.
pub(crate) struct Mailbox {
    tx: SyncSender<Publish>,
    efd: OwnedFd,
    notified: AtomicBool,
}

impl Mailbox {
    pub fn new(capacity: usize) -> std::io::Result<(Mailbox, Receiver<Publish>)> {
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

    pub fn eventfd(&self) -> i32 {
        self.efd.as_raw_fd()
    }

    /// Queue a publish; false if the mailbox is full (the caller counts the drop).
    pub fn send(&self, p: Publish) -> bool {
        match self.tx.try_send(p) {
            Ok(()) => {
                self.wake();
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Wake the worker (once until it clears the flag).
    pub fn wake(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our eventfd.
            unsafe { libc::write(self.efd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Called by the owning worker before draining: later sends wake it again.
    pub fn clear_notified(&self) {
        self.notified.store(false, Ordering::Release);
    }
}

/// Global subscriber counts per topic (updated on subscribe/unsubscribe, never on publish).
#[derive(Debug, Default)]
pub(crate) struct TopicCounts {
    map: Mutex<HashMap<Arc<str>, usize>>,
}

impl TopicCounts {
    pub fn add(&self, topic: &Arc<str>, delta: isize) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let c = m.entry(topic.clone()).or_insert(0);
        *c = (*c as isize + delta).max(0) as usize;
        if *c == 0 {
            m.remove(&**topic);
        }
    }
    pub fn get(&self, topic: &str) -> usize {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(topic)
            .copied()
            .unwrap_or(0)
    }
}

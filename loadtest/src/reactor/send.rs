//! Sending: at the end of every turn each connection marked dirty gets ONE send with everything it may send now
//! (queued control frames, then what its workload writes), at most one send in flight per connection, and the rest
//! of a short send resubmitted.

use super::conn::St;
use super::state::{Phase, Reactor};
use super::workload;
use crate::stats::ErrKind;

impl Reactor {
    /// Flush every connection marked dirty during this turn.
    pub(super) fn flush_dirty(&mut self, now: u64) {
        let mut dirty = std::mem::take(&mut self.ctx.dirty);
        for &i in &dirty {
            self.conns[i as usize].dirty = false;
            self.flush(i as usize, now);
        }
        dirty.clear();
        // flush() does not mark anything dirty; keep the allocation.
        if self.ctx.dirty.is_empty() {
            self.ctx.dirty = dirty;
        }
    }

    /// Write everything this connection may send now into one buffer and submit one send.
    fn flush(&mut self, i: usize, now: u64) {
        let ctx = &mut self.ctx;
        let c = &mut self.conns[i];
        let tls_only = c.st == St::Handshaking && c.tls.as_ref().is_some_and(|t| t.wants_write());
        if c.send_busy || !(matches!(c.st, St::Open | St::Closing) || tls_only) {
            return;
        }
        c.sbuf.clear();
        c.soff = 0;
        if !c.ctrl.is_empty() {
            c.sbuf.extend_from_slice(&c.ctrl);
            c.ctrl.clear();
        }
        if ctx.phase == Phase::Run && c.st == St::Open {
            workload::write_messages(ctx, c, now);
        }
        self.tls_seal(i);
        if !self.conns[i].sbuf.is_empty() {
            self.submit_send(i);
        }
    }

    /// A send completed: resubmit the rest of a short send, or flush what became ready meanwhile.
    pub(super) fn on_send(&mut self, i: usize, res: i32, now: u64) {
        let c = &mut self.conns[i];
        c.send_busy = false;
        if matches!(c.st, St::Dead | St::Idle) {
            self.maybe_close(i);
            return;
        }
        if res <= 0 {
            if c.st == St::Handshaking {
                self.connect_failed(i, ErrKind::Handshake);
            } else {
                if c.st == St::Open {
                    self.ctx.stats.err(ErrKind::Send);
                }
                self.kill(i);
            }
            return;
        }
        c.soff += res as u32;
        if (c.soff as usize) < c.sbuf.len() {
            self.submit_send(i);
            return;
        }
        c.sbuf.clear();
        c.soff = 0;
        let _ = now;
        // Anything that became ready while this send was in flight goes out now.
        self.mark_dirty(i);
    }
}

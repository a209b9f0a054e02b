//! Receiving: plain and multishot receive completions (a provided buffer goes back to the ring right after its bytes
//! are decoded), EOF and errors, and the decode of the server's frames by the connection's
//! `ringws::proto::Connection` (Role::Client: it checks every frame, validates UTF-8, assembles fragments, answers
//! pings and closes). What a received message means is the workload's business (`workload.rs`).

use ringws::proto::Event;
use ringws::uring::cqueue;

use super::conn::St;
use super::state::Reactor;
use super::workload;
use crate::deflate;
use crate::stats::ErrKind;

impl Reactor {
    /// A plain receive completed (the handshake, or every receive with `LOADTEST_RECV=plain`).
    pub(super) fn on_recv(&mut self, i: usize, res: i32, now: u64) {
        let c = &mut self.conns[i];
        c.recv_armed = false;
        match c.st {
            St::Dead | St::Idle | St::Connecting => {
                self.maybe_close(i);
                return;
            }
            _ => {}
        }
        if res <= 0 {
            self.recv_end(i, res);
            return;
        }
        if !self.tls_received(i, res as usize) {
            return;
        }
        let c = &mut self.conns[i];
        if c.st == St::Handshaking {
            self.handshake_read(i, now);
            return;
        }
        self.process(i, now);
    }

    /// A multishot receive completion: data in a provided buffer, or the end of the multishot.
    pub(super) fn on_recv_multi(&mut self, i: usize, res: i32, flags: u32, now: u64) {
        let more = cqueue::more(flags);
        if !more {
            self.conns[i].recv_armed = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            let br = self.ring.bufs(self.ctx.bufring.expect("buffer ring"));
            // Taken for every completion that carries bytes (it advances an incrementally consumed buffer).
            let data = if res > 0 {
                br.take(bid, res as usize).map(|d| d as *mut [u8])
            } else {
                None
            };
            if let (Some(data), St::Open | St::Closing) = (data, self.conns[i].st) {
                // SAFETY: the bytes stay valid and untouched by the kernel until the buffer is released below; the
                // slice is not used after that (the raw pointer only ends the borrow of `self.ring`).
                self.tls_feed(i, unsafe { &mut *data }, now);
            }
            self.ring
                .bufs(self.ctx.bufring.expect("buffer ring"))
                .release(bid, cqueue::buffer_more(flags));
        }
        let c = &self.conns[i];
        if !matches!(c.st, St::Open | St::Closing) {
            self.maybe_close(i);
            return;
        }
        if res == -libc::ENOBUFS {
            self.ctx.stats.recv_enobufs += 1;
            if !more {
                self.ctx.starved.push(i as u32);
            }
            return;
        }
        if res <= 0 {
            self.recv_end(i, res);
            return;
        }
        if !more {
            self.arm_recv(i);
        }
    }

    /// EOF (`res` 0) or a receive error.
    fn recv_end(&mut self, i: usize, res: i32) {
        let c = &mut self.conns[i];
        match c.st {
            St::Handshaking => self.connect_failed(i, ErrKind::Handshake),
            St::Closing => {
                if res == 0 {
                    if !c.got_close {
                        c.got_close = true;
                    }
                    self.ctx.stats.closed_clean += 1;
                }
                self.kill(i);
            }
            _ => {
                self.ctx.stats.err(if res == 0 {
                    ErrKind::ServerClosed
                } else {
                    ErrKind::Recv
                });
                self.kill(i);
            }
        }
    }

    /// Decode the bytes in the connection's own buffer, then re-arm the receive.
    pub(super) fn process(&mut self, i: usize, now: u64) {
        let c = &mut self.conns[i];
        let mut rbuf = std::mem::take(&mut c.rbuf);
        let len = c.rlen as usize;
        c.rlen = 0;
        self.feed(i, &mut rbuf[..len], now);
        let c = &mut self.conns[i];
        c.rbuf = rbuf;
        if matches!(c.st, St::Open | St::Closing) {
            self.arm_recv(i);
        } else {
            self.maybe_close(i);
        }
    }

    /// Feed received bytes to the connection's protocol core and queue what it wants to send (pongs, close).
    pub(super) fn feed(&mut self, i: usize, data: &mut [u8], now: u64) {
        let c = &mut self.conns[i];
        let Some(mut proto) = c.proto.take() else {
            return;
        };
        let res = match (c.deflate.take(), self.ctx.deflate.take()) {
            (Some(mut cd), Some(mut td)) => {
                let in_window = now >= self.ctx.warm_end && now < self.ctx.end;
                let mut rx = deflate::Rx::new(&mut td, &mut cd, in_window);
                let res = proto.handle_read_with(data, &mut rx, &mut |ev| {
                    if in_window {
                        if let Event::Text(t) = &ev {
                            self.ctx.stats.deflate.note_received(t.len());
                        } else if let Event::Binary(b) = &ev {
                            self.ctx.stats.deflate.note_received(b.len());
                        }
                    }
                    self.on_event(i, ev, now)
                });
                if let Some(n) = rx.count {
                    self.ctx.stats.deflate.absorb(n);
                }
                self.conns[i].deflate = Some(cd);
                self.ctx.deflate = Some(td);
                res
            }
            (cd, td) => {
                self.conns[i].deflate = cd;
                self.ctx.deflate = td;
                proto.handle_read(data, &mut |ev| self.on_event(i, ev, now))
            }
        };
        let c = &mut self.conns[i];
        if res.is_err() {
            self.ctx.stats.err(ErrKind::Protocol);
            if c.st == St::Open {
                self.ctx.open -= 1;
                c.st = St::Closing;
            }
        }
        if proto.poll_transmit(&mut c.ctrl) {
            c.proto = Some(proto);
            self.mark_dirty(i);
        } else {
            c.proto = Some(proto);
        }
    }

    fn on_event(&mut self, i: usize, ev: Event<'_>, now: u64) {
        match ev {
            Event::Text(t) => self.on_message(i, 0x1, t.as_bytes(), now),
            Event::Binary(b) => self.on_message(i, 0x2, b, now),
            // The pong is queued by the core; sent with the next flush.
            Event::Ping(_) | Event::Pong(_) => {}
            Event::Close { .. } => {
                let c = &mut self.conns[i];
                c.got_close = true;
                if c.st == St::Open {
                    // The server closed in the middle of the run (our answer is queued by the core).
                    self.ctx.stats.err(ErrKind::ServerClosed);
                    self.ctx.open -= 1;
                    c.st = St::Closing;
                }
                // Keep reading until the server's EOF, so TIME_WAIT stays on the server side.
            }
        }
    }

    /// A whole message arrived: the workload decides what it means (and whether the connection may send again).
    fn on_message(&mut self, i: usize, op: u8, payload: &[u8], now: u64) {
        if workload::on_message(&mut self.ctx, &mut self.conns[i], op, payload, now) {
            self.mark_dirty(i);
        }
    }
}

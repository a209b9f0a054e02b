//! A connection's life in the worker: accepted into a slot, paused and resumed by backpressure, closed (a
//! WebSocket closing handshake, or a deferred close after an HTTP response), torn down, and its slot freed once the
//! kernel holds nothing of it. Also the graceful shutdown of the whole worker.

use std::os::fd::IntoRawFd;
use std::time::Duration;

use crate::uring::cqueue;

use super::super::handler::{Handler, ServerContext};
use super::super::id::{ConnId, GEN_MASK};
use super::super::local::Admitted;
use super::conn::{Conn, Phase, ABOVE_LOW, CLOSE_AFTER_FLUSH, DEAD, PAUSED, RECV_ARMED};
use super::{session, Worker, HTTP_RESERVE};
use crate::door::IpLease;

impl<H: Handler> Worker<H> {
    pub(super) fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
        }
        if res < 0 {
            if self.stopping.is_none() && !self.accept_armed {
                // EMFILE and friends: retry at the next sweep, never in a hot loop.
                tracing::warn!(
                    worker = self.id,
                    "accept failed: {}",
                    std::io::Error::from_raw_os_error(-res)
                );
                self.accept_retry_at = Some(self.clock.now + Duration::from_millis(500));
            }
            return;
        }
        if !self.accept_armed && self.stopping.is_none() {
            self.arm_accept();
        }
        let fd = res;
        if self.stopping.is_some()
            || self.conns.len() >= self.shared().config.max_connections_per_worker + HTTP_RESERVE
        {
            self.local.c.rejected_capacity += 1;
            // SAFETY: `fd` was just returned by accept and is owned by nobody else.
            unsafe { libc::close(fd) };
            return;
        }
        let one: libc::c_int = 1;
        // SAFETY: setsockopt reads an int from a live local; failure is harmless (Nagle stays on).
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        let tls = match &mut self.tls {
            Some(tw) => match tw.accept(&mut self.local.c) {
                Some(s) => Some(s),
                None => {
                    // SAFETY: `fd` was just returned by accept and is owned by nobody else.
                    unsafe { libc::close(fd) };
                    return;
                }
            },
            None => None,
        };
        // A generation per slot occupant, derived from a worker-wide counter so reuse is detected.
        let gen = (self.local.c.accepted as u32) & GEN_MASK;
        let mut conn = Conn::new(fd, gen, self.clock.secs);
        let lease = self.admit(&mut conn);
        conn.tls = tls;
        let slot = self.conns.insert(conn) as u32;
        if let Some(lease) = lease {
            let a = Admitted {
                lease: Some(lease),
                claims: None,
            };
            self.local.admitted.insert(slot, a);
        }
        self.local.c.accepted += 1;
        self.local.c.connections += 1;
        self.arm_recv(slot);
    }

    /// The per-address check of a new connection (only with a per-address limit configured: it costs a
    /// `getpeername` and one lock of the shared table). A refusal is answered when the request head arrives.
    fn admit(&mut self, conn: &mut Conn<H::Data>) -> Option<IpLease> {
        let door = &self.local.shared.door;
        door.limiter()?;
        let peer = peer_ip(conn.fd)?;
        match door.admit(peer, self.clock.now) {
            Ok(lease) => lease,
            Err(r) => {
                if let Phase::Http { refused, .. } = &mut conn.phase {
                    *refused = Some(Box::new(r));
                }
                None
            }
        }
    }

    /// After a connection's bytes were processed (or a send completed): deliver the publishes its callbacks made,
    /// apply a deferred close, and pause reading when its queue is over the backpressure mark.
    pub(super) fn after_io(&mut self, slot: u32, gen: u32) {
        self.publish_pending();
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.gen != gen || conn.is(DEAD) {
            return;
        }
        if conn.is(CLOSE_AFTER_FLUSH) && conn.out.queued() == 0 {
            let code = conn.close_code;
            self.kill(slot, code);
            return;
        }
        let q = conn.out.queued();
        let bp = self.local.backpressure;
        if bp.above_low(q) {
            conn.flags |= ABOVE_LOW;
        }
        if bp.should_pause(q) && !conn.is(PAUSED) {
            conn.flags |= PAUSED;
            self.local.c.backpressure_pauses += 1;
            if conn.is(RECV_ARMED) {
                self.cancel_recv(slot, gen);
            }
        }
    }

    /// Backpressure let go of `slot` (its PAUSED flag was just cleared): feed it the bytes that arrived while it
    /// was paused, one receive buffer's worth at a time, and re-arm its recv once they are all taken. If its queue
    /// climbs over the pause mark again meanwhile, it pauses again with the rest kept (nothing dropped, nothing
    /// reordered); the next drain resumes it here.
    pub(super) fn resume_reading(&mut self, slot: u32) {
        if let Some(mut input) = self.paused.take(slot) {
            let piece = self.shared().config.recv_buffer_size as usize;
            let bp = self.local.backpressure;
            let mut fed = 0;
            while fed < input.len() {
                let end = (fed + piece).min(input.len());
                let conn = &mut self.conns[slot as usize];
                let peer_closed = super::feed(
                    &*self.handler,
                    &mut self.local,
                    &self.limits,
                    self.tls.as_mut(),
                    slot,
                    conn,
                    &mut input[fed..end],
                    None,
                    self.clock.now,
                );
                fed = end;
                if peer_closed {
                    self.kill(slot, 1006);
                    return;
                }
                let conn = &mut self.conns[slot as usize];
                if conn.is(DEAD) {
                    return;
                }
                if bp.should_pause(conn.out.queued()) {
                    conn.flags |= PAUSED;
                    self.local.c.backpressure_pauses += 1;
                    input.drain(..fed);
                    self.paused.put_back(slot, input);
                    return;
                }
            }
        }
        self.arm_recv(slot);
    }

    pub(super) fn apply_close_request(&mut self, slot: u32) {
        if let Some((code, reason)) = self.local.close_request.take() {
            self.close_ws(slot, code, &reason);
        }
    }

    /// Start the closing handshake on a WebSocket (close frame after what is queued; torn down after the flush or
    /// the close timeout). Anything else closes once its queue is written.
    pub(super) fn close_ws(&mut self, slot: u32, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if matches!(conn.phase, Phase::Ws { .. }) {
            session::close(&mut self.local, slot, conn, code, reason, self.clock.now);
        } else {
            conn.flags |= CLOSE_AFTER_FLUSH;
            if conn.out.queued() == 0 {
                self.kill(slot, 1006);
            }
        }
    }

    /// Tear a connection down: report it to the handler, stop its IO; the slot is freed once nothing is in flight.
    pub(super) fn kill(&mut self, slot: u32, code: u16) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.is(DEAD) {
            return;
        }
        conn.flags |= DEAD;
        let gen = conn.gen;
        let local = &mut self.local;
        if let Some(t) = conn.tls.take() {
            super::tls::forget(&mut local.c, &t);
        }
        local
            .topics
            .unsubscribe_all(&local.shared.hub, &mut conn.topics, slot);
        // Releases the per-address slot now, not when the kernel lets go of the socket.
        local.admitted.remove(&slot);
        self.paused.forget(slot);
        if conn.deflate != 0 {
            conn.deflate = 0;
            local.deflate.detach(slot);
        }
        if let Phase::Ws { data, .. } = std::mem::replace(&mut conn.phase, Phase::Done) {
            local.c.websockets -= 1;
            let shared = local.shared.clone();
            let id = ConnId::new(local.worker, slot, gen);
            self.handler
                .close(&ServerContext { shared: &shared }, id, data, code);
        }
        let conn = &mut self.conns[slot as usize];
        if !conn.out.in_flight() {
            conn.out.abandon(&mut self.local.pool);
        }
        // SAFETY: shutting down our own socket; it wakes an armed recv (which then completes) and fails sends.
        unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
        if conn.is(RECV_ARMED) {
            self.cancel_recv(slot, gen);
        }
        self.try_free(slot);
    }

    /// Free a dead connection's slot and close its socket once no recv is armed and no send is in flight.
    pub(super) fn try_free(&mut self, slot: u32) {
        let Some(conn) = self.conns.get(slot as usize) else {
            return;
        };
        if !conn.is(DEAD) || conn.is(RECV_ARMED) || conn.out.in_flight() {
            return;
        }
        let conn = self.conns.remove(slot as usize);
        if let Some(b) = conn.iov {
            self.iov_pool.push(b);
        }
        // SAFETY: the fd is ours and no operation references it any more.
        unsafe { libc::close(conn.fd) };
        self.local.c.connections -= 1;
    }

    /// Stop accepting, close every WebSocket with 1001 and drop connections still in the HTTP phase.
    pub(super) fn begin_shutdown(&mut self) {
        let drain = self.shared().config.drain_timeout;
        self.stopping = Some(self.clock.now + drain);
        self.next_sweep = self.clock.now;
        if let Some(l) = self.listener.take() {
            if self.accept_armed {
                self.cancel_accept();
            }
            // The kernel holds its own reference while the accept is being cancelled.
            let fd = l.into_raw_fd();
            // SAFETY: we own `fd` (taken from the socket above).
            unsafe { libc::close(fd) };
        }
        let slots: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        for slot in slots {
            if matches!(self.conns[slot as usize].phase, Phase::Ws { .. }) {
                self.close_ws(slot, 1001, "server shutting down");
            } else {
                self.kill(slot, 1006);
            }
        }
    }

    /// Whether a shutdown in progress is complete (every connection gone, or the drain timeout passed and what is
    /// left was torn down).
    pub(super) fn shutdown_done(&mut self) -> bool {
        let Some(deadline) = self.stopping else {
            return false;
        };
        if self.conns.is_empty() {
            return true;
        }
        if self.clock.now < deadline {
            return false;
        }
        let slots: Vec<u32> = self.conns.iter().map(|(k, _)| k as u32).collect();
        for s in slots {
            self.kill(s, 1006);
        }
        if self.clock.now >= deadline + Duration::from_secs(2) {
            tracing::warn!(
                worker = self.id,
                left = self.conns.len(),
                "giving up on in-flight operations"
            );
            return true;
        }
        false
    }
}

/// The peer address of a connected socket (`None` if the kernel cannot say, e.g. it is already reset).
fn peer_ip(fd: i32) -> Option<std::net::IpAddr> {
    // SAFETY: `fd` is a live socket owned by this worker; socket2 only borrows it for the getpeername call, and
    // `ManuallyDrop` keeps it from closing the descriptor.
    let sock = std::mem::ManuallyDrop::new(unsafe {
        <socket2::Socket as std::os::fd::FromRawFd>::from_raw_fd(fd)
    });
    sock.peer_addr().ok()?.as_socket().map(|a| a.ip())
}

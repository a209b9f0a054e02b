//! The worker's ring glue: `user_data` encoding, the listener, and every submission the worker makes (accept,
//! recv, eventfd read, cancels, sends). Completions come back to `mod.rs`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use crate::uring::{opcode, uring_types as types, Sqe};

use super::super::handler::Handler;
use super::super::id::GEN_MASK;
use super::super::outbound::{IoVecs, Prepared, MAX_IOV};
use super::conn::{DEAD, PAUSED, RECV_ARMED};
use super::{Worker, BUFS};

// user_data layout: kind (8 bits) | generation (24 bits) | slot (32 bits).
pub(super) const K_ACCEPT: u64 = 1;
pub(super) const K_RECV: u64 = 2;
pub(super) const K_SEND: u64 = 3;
pub(super) const K_EVENTFD: u64 = 4;
pub(super) const K_IGNORE: u64 = 5;
pub(super) const K_TICK: u64 = 6;

#[inline]
pub(super) fn ud(kind: u64, slot: u32, gen: u32) -> u64 {
    (kind << 56) | (((gen & GEN_MASK) as u64) << 32) | slot as u64
}

/// (kind, generation, slot)
#[inline]
pub(super) fn ud_parts(u: u64) -> (u64, u32, u32) {
    (u >> 56, ((u >> 32) as u32) & GEN_MASK, u as u32)
}

/// A `SO_REUSEPORT` listener (one per worker, all on the same address).
pub(crate) fn listen(addr: SocketAddr, backlog: u32) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.bind(&addr.into())?;
    s.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(s)
}

impl<H: Handler> Worker<H> {
    /// Queue an SQE (submitting what is queued if the submission queue is full).
    fn push(&mut self, e: Sqe) {
        // SAFETY: every SQE the worker builds points only at memory that outlives the operation: the buffer ring
        // (owned by `self.ring`), outbound segments (kept in the connection's queue until the send completes),
        // boxed iovecs (kept in the connection until the send completes), the boxed eventfd buffer and the boxed
        // tick timespec (live as long as the worker, whose ring is dropped first).
        unsafe { self.ring.push(&e) };
    }

    pub(super) fn arm_accept(&mut self) {
        let Some(l) = &self.listener else { return };
        let e = opcode::AcceptMulti::new(types::Fd(l.as_raw_fd()))
            .build()
            .user_data(ud(K_ACCEPT, 0, 0));
        self.push(e);
        self.accept_armed = true;
    }

    pub(super) fn cancel_accept(&mut self) {
        let e = opcode::AsyncCancel::new(ud(K_ACCEPT, 0, 0))
            .build()
            .user_data(ud(K_IGNORE, 0, 0));
        self.push(e);
    }

    /// The timers' tick: a multishot timeout completing once a second (Linux 6.4+), so the loop can wait without
    /// a timeout of its own. Where the kernel refuses it, the loop falls back to timed waits (see `on_tick`).
    pub(super) fn arm_tick(&mut self) {
        let e = opcode::Timeout::new(&*self.tick_ts)
            .count(0)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(ud(K_TICK, 0, 0));
        self.push(e);
        self.tick_armed = true;
    }

    pub(super) fn arm_eventfd(&mut self) {
        let fd = self.local.shared.hub.eventfd(self.id);
        let p = (&mut *self.efd_buf) as *mut u64 as *mut u8;
        let e = opcode::Read::new(types::Fd(fd), p, 8)
            .build()
            .user_data(ud(K_EVENTFD, 0, 0));
        self.push(e);
    }

    /// Arm a multishot recv on the worker's buffer ring, unless one is armed, reading is paused or it is dead.
    pub(super) fn arm_recv(&mut self, slot: u32) {
        let Some(c) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if c.flags & (RECV_ARMED | DEAD | PAUSED) != 0 {
            return;
        }
        c.flags |= RECV_ARMED;
        let e = opcode::RecvMulti::new(types::Fd(c.fd), self.ring.bufs(BUFS).bgid)
            .build()
            .user_data(ud(K_RECV, slot, c.gen));
        self.push(e);
    }

    /// Cancel the armed recv of `slot` (its final completion comes back with `ECANCELED`).
    pub(super) fn cancel_recv(&mut self, slot: u32, gen: u32) {
        let e = opcode::AsyncCancel::new(ud(K_RECV, slot, gen))
            .build()
            .user_data(ud(K_IGNORE, 0, 0));
        self.push(e);
    }

    /// One send for everything `slot` has queued and not yet handed to the kernel.
    pub(super) fn submit_send(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.tls.is_some() {
            if !super::tls::seal(conn, &mut self.local) {
                self.kill(slot, 1006);
                return;
            }
            if !conn.out.has_unsent() {
                return;
            }
        }
        let mut iov = conn
            .iov
            .take()
            .or_else(|| self.iov_pool.pop())
            .unwrap_or_else(|| {
                Box::new(IoVecs {
                    // SAFETY: msghdr is a plain C struct for which all-zeroes is a valid (empty) value.
                    hdr: unsafe { std::mem::zeroed() },
                    iov: [libc::iovec {
                        iov_base: std::ptr::null_mut(),
                        iov_len: 0,
                    }; MAX_IOV],
                })
            });
        let fd = types::Fd(conn.fd);
        let e = match conn.out.prepare_send(&mut iov.iov) {
            Prepared::Single(p, n) => {
                self.iov_pool.push(iov);
                opcode::Send::new(fd, p, n as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Prepared::Vectored(n) => {
                iov.hdr.msg_iov = iov.iov.as_mut_ptr();
                iov.hdr.msg_iovlen = n as _;
                let hdr = &iov.hdr as *const libc::msghdr;
                conn.iov = Some(iov);
                opcode::SendMsg::new(fd, hdr)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
        };
        conn.last_tx = self.clock.secs;
        self.local.c.sends += 1;
        let e = e.user_data(ud(K_SEND, slot, conn.gen));
        self.push(e);
    }

    /// The end of a loop turn: one send per connection that queued bytes this turn (frames are corked per turn).
    pub(super) fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.local.dirty);
        for &slot in &dirty {
            if let Some(c) = self.conns.get(slot as usize) {
                if c.flags & DEAD == 0 && c.out.has_unsent() {
                    self.submit_send(slot);
                }
            }
        }
        dirty.clear();
        // Keep the allocation; anything pushed meanwhile (none expected) is kept too.
        dirty.append(&mut self.local.dirty);
        self.local.dirty = dirty;
    }

    /// Apply the receive-buffer holds that ring segments took and gave up (holds first, so a buffer held and
    /// released within one read is given back exactly once).
    pub(super) fn apply_ring_holds(&mut self) {
        let pool = &mut self.local.pool;
        if pool.ring_holds.is_empty() && pool.ring_releases.is_empty() {
            return;
        }
        self.local.c.ring_spills += std::mem::take(&mut pool.ring_spills);
        let bufs = self.ring.bufs(BUFS);
        for bid in pool.ring_holds.drain(..) {
            bufs.hold(bid);
        }
        for bid in pool.ring_releases.drain(..) {
            bufs.unhold(bid);
        }
    }

    /// Buffers went back to the ring while this turn's completions were processed: re-arm the receives that ran
    /// out of them.
    pub(super) fn rearm_starved(&mut self) {
        if self.starved.is_empty() {
            return;
        }
        let s = std::mem::take(&mut self.starved);
        for &slot in &s {
            self.arm_recv(slot);
        }
        self.starved = s;
        self.starved.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for (k, s, g) in [
            (K_RECV, 7, 3),
            (K_SEND, u32::MAX, GEN_MASK),
            (K_ACCEPT, 0, 0),
        ] {
            assert_eq!(ud_parts(ud(k, s, g)), (k, g, s));
        }
        assert_eq!(
            ud_parts(ud(K_RECV, 1, GEN_MASK + 2)).1,
            1,
            "generation wraps in 24 bits"
        );
    }
}

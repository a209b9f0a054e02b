//! The ring glue, and the only file here that builds io_uring submissions: `user_data` tags, every SQE (connect with
//! its linked timeout, send, plain or multishot receive), the loop turn (flush, one `io_uring_enter` that submits and
//! waits) and the completion dispatch to the handlers in `connect.rs`, `send.rs` and `recv.rs`.
//!
//! Connection slots are never reused, so `user_data` is just index + op, no generation.

use std::time::Duration;

use ringws::uring::{cqueue, opcode, uring_types as types, Cqe, Ring, Sqe, SqeFlags};

use super::conn::St;
use super::state::Reactor;
use crate::plan::now_ns;
use crate::stats::Live;

const OP_CONNECT: u64 = 1;
const OP_LINK_TIMEOUT: u64 = 2;
const OP_SEND: u64 = 3;
const OP_RECV: u64 = 4;
const OP_RECV_MULTI: u64 = 5;
const OP_TICK: u64 = 6;
/// The period of the multishot tick (how late a closed-loop run notices its end or an early stop).
pub(super) const TICK: Duration = Duration::from_millis(100);
/// Buffer group of the provided-buffer ring.
pub(super) const BGID: u16 = 7;

#[inline]
fn ud(i: usize, op: u64) -> u64 {
    ((i as u64) << 8) | op
}

/// `IORING_RECVSEND_POLL_FIRST`: a receive is armed right after the socket was drained, so skip the attempt that
/// would fail with EAGAIN and wait for readiness directly.
const RECVSEND_POLL_FIRST: u16 = 1;

fn poll_first() -> bool {
    static V: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *V.get_or_init(|| std::env::var_os("LOADTEST_NO_POLL_FIRST").is_none())
}

/// Push an SQE (the ring submits first if its queue is full).
fn push(ring: &mut Ring, e: &Sqe) {
    // SAFETY: every buffer and address referenced by our SQEs lives in a `Conn` or `Ctx` that outlives the ring's use
    // of it: buffers are not moved or freed while their operation is in flight (send_busy / recv_armed), and the ring
    // is dropped (cancelling everything) before the connections.
    unsafe { ring.push(e) };
}

/// Push a linked pair (an operation and its timeout) into one submission.
fn push2(ring: &mut Ring, a: &Sqe, b: &Sqe) {
    // SAFETY: as in `push`, for both entries.
    unsafe { ring.push_pair(a, b) };
}

impl Reactor {
    /// One loop turn: flush the connections that became sendable, publish the progress totals, submit everything and
    /// wait for completions (or `timeout`; `None` waits for completions only, which needs the tick armed), handle
    /// them.
    pub(super) fn turn(
        &mut self,
        now: u64,
        live: &Live,
        timeout: Option<Duration>,
    ) -> std::io::Result<()> {
        self.flush_dirty(now);
        self.publish(live);
        self.ring
            .submit_and_wait(timeout.or((!self.ctx.tick_armed).then_some(TICK)))?;
        self.reap(now_ns());
        Ok(())
    }

    /// Submit everything queued and wait for at least one completion or `timeout` (EINTR-safe: see `Ring`).
    pub(super) fn wait(&mut self, timeout: Duration) -> std::io::Result<()> {
        self.ring.submit_and_wait(Some(timeout))
    }

    /// A multishot timeout completing every [`TICK`], so closed-loop turns can wait without a timeout of their own
    /// (a timed wait arms an hrtimer on every sleep). Kernels before 6.4 refuse it; turns then wait at most a tick.
    pub(super) fn arm_tick(&mut self) {
        let e = opcode::Timeout::new(self.ctx.tick_ts.as_ref() as *const _)
            .count(0)
            .flags(types::TimeoutFlags::MULTISHOT)
            .build()
            .user_data(ud(0, OP_TICK));
        push(&mut self.ring, &e);
        self.ctx.tick_armed = true;
    }

    /// Handle every completion, return the provided buffers after each batch, then re-arm starved receives.
    pub(super) fn reap(&mut self, now: u64) {
        let mut cqes = std::mem::take(&mut self.cqes);
        loop {
            if !self.ring.reap(&mut cqes) {
                break;
            }
            for &Cqe {
                user_data: u,
                result: res,
                flags,
            } in &cqes
            {
                let i = (u >> 8) as usize;
                match u & 0xff {
                    OP_CONNECT => self.on_connect(i, res, now),
                    OP_SEND => self.on_send(i, res, now),
                    OP_RECV => self.on_recv(i, res, now),
                    OP_RECV_MULTI => self.on_recv_multi(i, res, flags, now),
                    OP_TICK if !cqueue::more(flags) => self.ctx.tick_armed = false,
                    _ => {} // link timeouts
                }
            }
            self.ring.publish_bufs();
        }
        self.cqes = cqes;
        // Buffers came back: re-arm the receives that ran out of them.
        if !self.ctx.starved.is_empty() {
            let starved = std::mem::take(&mut self.ctx.starved);
            for &i in &starved {
                self.arm_recv(i as usize);
            }
        }
    }

    /// Connect `fd` (connection `i`) to the target, bounded by the linked connect timeout.
    pub(super) fn submit_connect(&mut self, i: usize, fd: i32) {
        let (addr, addr_len) = &self.ctx.addrs[self.target_of(i)];
        let conn = opcode::Connect::new(
            types::Fd(fd),
            addr.as_ref() as *const _ as *const libc::sockaddr,
            *addr_len,
        )
        .build()
        .flags(SqeFlags::IO_LINK)
        .user_data(ud(i, OP_CONNECT));
        let lt = opcode::LinkTimeout::new(self.ctx.connect_ts.as_ref() as *const _)
            .build()
            .user_data(ud(i, OP_LINK_TIMEOUT));
        push2(&mut self.ring, &conn, &lt);
    }

    /// Send the unsent rest of the connection's send buffer.
    pub(super) fn submit_send(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let off = c.soff as usize;
        let len = c.sbuf.len() - off;
        debug_assert!(len > 0 && !c.send_busy);
        c.send_busy = true;
        let e = opcode::Send::new(types::Fd(c.fd), c.sbuf[off..].as_ptr(), len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(i, OP_SEND));
        push(&mut self.ring, &e);
    }

    /// Arm the connection's receive: multishot on the provided-buffer ring once the connection is open, otherwise a
    /// plain receive into its own buffer (grown when full).
    pub(super) fn arm_recv(&mut self, i: usize) {
        let c = &mut self.conns[i];
        if c.recv_armed || c.fd < 0 || !matches!(c.st, St::Handshaking | St::Open | St::Closing) {
            return;
        }
        if let (Some(br), St::Open | St::Closing) = (self.ctx.bufring, c.st) {
            c.recv_armed = true;
            let e = opcode::RecvMulti::new(types::Fd(c.fd), self.ring.bufs(br).bgid)
                .build()
                .user_data(ud(i, OP_RECV_MULTI));
            push(&mut self.ring, &e);
            return;
        }
        let off = c.rlen as usize;
        if off == c.rbuf.len() {
            let mut b = vec![0u8; (c.rbuf.len() * 2).max(1024)].into_boxed_slice();
            b[..off].copy_from_slice(&c.rbuf[..off]);
            c.rbuf = b;
        }
        c.recv_armed = true;
        let len = c.rbuf.len() - off;
        let e = opcode::Recv::new(types::Fd(c.fd), c.rbuf[off..].as_mut_ptr(), len as u32)
            .ioprio(if poll_first() { RECVSEND_POLL_FIRST } else { 0 })
            .build()
            .user_data(ud(i, OP_RECV));
        push(&mut self.ring, &e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_roundtrip() {
        let u = ud(12345, OP_RECV);
        assert_eq!((u >> 8) as usize, 12345);
        assert_eq!(u & 0xff, OP_RECV);
    }
}

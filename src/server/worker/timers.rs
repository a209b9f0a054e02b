//! The worker's timers, checked once a second (every 100 ms while shutting down): the handshake timeout, the
//! close timeout, idle pings and the idle timeout, stalled sends, token expiry (a WebSocket whose token's
//! `exp + leeway` has passed is closed with 1008, within a second), and the accept retry. Per-connection times are
//! whole seconds of the worker clock, so a timer costs nothing per connection but a `u32`.
//!
//! `scan` looks at every connection and says what is due (no side effects beyond the protocol core's own timer);
//! `sweep` then acts on it.

use std::time::{Duration, Instant, SystemTime};

use slab::Slab;

use crate::proto::State;

use super::super::config::Config;
use super::super::handler::Handler;
use super::conn::{Conn, Phase, DEAD, PING_SENT};
use super::{session, Worker};

/// What a connection is due for.
enum Due {
    /// Its closing handshake finished or timed out: tear it down with this code.
    Kill(u16),
    /// The request head did not arrive in time.
    HandshakeTimeout,
    /// Silent for half the idle timeout: ping it.
    Ping,
    /// Silent for the whole idle timeout: close it with 1001.
    IdleClose,
    /// Its queued bytes made no progress for `send_stall_timeout`.
    Stall,
}

/// The timer limits in worker seconds.
struct Limits {
    handshake: u32,
    idle: u32,
    stall: u32,
}

impl Limits {
    fn of(cfg: &Config) -> Self {
        Limits {
            handshake: cfg.handshake_timeout.as_secs().max(1) as u32,
            idle: cfg.idle_timeout.as_secs() as u32,
            stall: cfg.send_stall_timeout.as_secs().max(1) as u32,
        }
    }
}

/// What is due on one connection at `secs` / `now`.
fn due<D>(c: &mut Conn<D>, lim: &Limits, secs: u32, now: Instant) -> Option<Due> {
    if c.out.queued() > 0 && secs.wrapping_sub(c.last_tx) >= lim.stall {
        return Some(Due::Stall);
    }
    match &mut c.phase {
        Phase::Http { since, .. } => {
            (secs.wrapping_sub(*since) >= lim.handshake).then_some(Due::HandshakeTimeout)
        }
        Phase::Ws { proto, .. } => {
            if proto.poll_timeout().is_some_and(|t| t <= now) {
                proto.handle_timeout(now);
                if proto.state() == State::Closed {
                    return Some(Due::Kill(c.close_code));
                }
            }
            if lim.idle == 0 || proto.state() != State::Open {
                return None;
            }
            let silent = secs.wrapping_sub(c.last_rx);
            if silent >= lim.idle {
                Some(Due::IdleClose)
            } else if silent >= lim.idle.div_ceil(2) && !c.is(PING_SENT) {
                Some(Due::Ping)
            } else {
                None
            }
        }
        Phase::Done => None,
    }
}

/// Every connection's due timer, and the bytes queued over all of them (a gauge). Returns idle queue memory too.
fn scan<D>(
    conns: &mut Slab<Conn<D>>,
    lim: &Limits,
    secs: u32,
    now: Instant,
) -> (Vec<(u32, Due)>, u64) {
    let mut dues = Vec::new();
    let mut queued = 0u64;
    for (k, c) in conns.iter_mut() {
        queued += c.out.queued() as u64;
        if c.is(DEAD) {
            continue;
        }
        if let Some(d) = due(c, lim, secs, now) {
            dues.push((k as u32, d));
        }
        c.out.shrink_if_idle();
        if let Some(t) = c.tls.as_deref_mut() {
            t.sweep();
        }
    }
    (dues, queued)
}

impl<H: Handler> Worker<H> {
    /// Periodic checks: see the module docs.
    pub(super) fn sweep(&mut self) {
        let now = self.clock.now;
        let period = if self.stopping.is_some() {
            Duration::from_millis(100)
        } else {
            Duration::from_secs(1)
        };
        self.next_sweep = now + period;
        if self.accept_retry_at.is_some_and(|t| now >= t) && self.stopping.is_none() {
            self.accept_retry_at = None;
            if !self.accept_armed {
                self.arm_accept();
            }
        }
        let lim = Limits::of(&self.local.shared.config);
        let (dues, queued) = scan(&mut self.conns, &lim, self.clock.secs, now);
        self.local.c.outbound_bytes = queued;
        self.local.c.deflate_streams = self.local.deflate.sweep();
        for (slot, d) in dues {
            match d {
                Due::Kill(code) => self.kill(slot, code),
                Due::HandshakeTimeout => {
                    self.local.c.handshake_timeouts += 1;
                    self.kill(slot, 1006);
                }
                Due::Stall => {
                    self.local.c.send_stalls += 1;
                    self.kill(slot, 1006);
                }
                Due::IdleClose => {
                    self.local.c.idle_closes += 1;
                    self.close_ws(slot, 1001, "idle timeout");
                }
                Due::Ping => {
                    let c = &mut self.conns[slot as usize];
                    c.flags |= PING_SENT;
                    session::ping(&mut self.local, slot, &mut c.out);
                }
            }
        }
        self.close_expired_tokens();
    }

    /// Close with 1008 every open WebSocket whose token has expired (`exp + leeway` passed). Looks only at the
    /// connections that carry claims (the door's side table), judged by the wall clock (token times are Unix times).
    fn close_expired_tokens(&mut self) {
        let Some(auth) = self.local.shared.door.authenticator() else {
            return;
        };
        let wall = SystemTime::now();
        let expired: Vec<u32> = self
            .local
            .admitted
            .iter()
            .filter(|(_, a)| {
                a.claims
                    .as_ref()
                    .is_some_and(|c| auth.remaining(c, wall).is_zero())
            })
            .map(|(&slot, _)| slot)
            .collect();
        for slot in expired {
            let open = matches!(
                self.conns.get(slot as usize).map(|c| &c.phase),
                Some(Phase::Ws { proto, .. }) if proto.state() == State::Open
            );
            if open {
                self.local.c.token_expired_closes += 1;
                self.close_ws(slot, 1008, "token expired");
            }
        }
    }
}

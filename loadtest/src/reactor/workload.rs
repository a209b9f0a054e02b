//! The per-mode workloads: what a connection sends when, and what a received message means.
//!
//! - **echo**: keep `--inflight` messages outstanding per connection; each echo is verified in full against the
//!   expected sequence number and content, its latency measured from the actual send, and the window refilled.
//! - **flood**: as echo, with a deeper window and no latency (throughput only).
//! - **rate**: a fixed total rate; each message's intended time is handed to the next open connection, round robin,
//!   and its latency is measured from that intended time (corrected for coordinated omission); a connection whose
//!   backlog exceeds `--inflight` counts a `rate_backlog` error instead.
//! - **pubsub**: publishers publish at the total rate, scheduled the same way, each publish carrying its intended
//!   time ([`MARK`] + 16 hex digits); every connection joins the topic after the handshake, and a delivery's latency
//!   is measured from the time it carries.
//!
//! Messages count in the statistics only inside the measured window (after the warm-up, before the end).

use std::time::Duration;

use ringws::proto::OpCode;

use super::conn::{Conn, St};
use super::state::{Ctx, Phase, Reactor};
use crate::cli::Mode;
use crate::deflate;
use crate::frames::{self, FrameTemplate};
use crate::plan::Plan;
use crate::stats::{record_ns, ErrKind};

/// Bytes written per send at most (the rest waits for the next turn).
const MAX_SEND_BYTES: usize = 256 << 10;

/// Pubsub payload marker: `@LT` + 16 hex digits of the intended send time (ns) + `#`.
const MARK: &[u8; 3] = b"@LT";

/// The connection is open: prepare what its workload sends (pubsub: the join message, queued at once; otherwise the
/// masked frame template of its messages).
pub(super) fn on_open(ctx: &Ctx, c: &mut Conn) {
    let plan = &ctx.plan;
    if plan.mode == Mode::Pubsub {
        if !plan.sub_msg.is_empty() {
            frames::write_client_frame_text(&mut c.ctrl, &plan.sub_msg, c.key);
        }
    } else {
        c.tmpl = Some(FrameTemplate::new(&ctx.pattern, plan.opcode, c.key));
    }
}

/// Write into `c.sbuf` every message the connection may send now (it is open and the run is on).
pub(super) fn write_messages(ctx: &mut Ctx, c: &mut Conn, now: u64) {
    let in_window = now >= ctx.warm_end && now < ctx.end;
    let k = match ctx.plan.mode {
        Mode::Echo | Mode::Flood => fill_window(ctx, c, now),
        Mode::Rate => write_due(ctx, c, now),
        Mode::Pubsub => write_publishes(ctx, c, now),
        Mode::Handshake => 0, // runs in `crate::handshake`, not in the reactor
    };
    if in_window {
        ctx.stats.sent += k as u64;
        ctx.stats.bytes_sent += (k * ctx.plan.size) as u64;
    }
}

/// Echo/flood: top the connection's window up to `--inflight` outstanding messages (echo stamps each send time).
fn fill_window(ctx: &mut Ctx, c: &mut Conn, now: u64) -> usize {
    let room = ctx.plan.inflight.saturating_sub(c.outstanding as usize);
    let k = room.min(per_send(c));
    write_from_template(ctx, c, k, now);
    c.outstanding += k as u32;
    if ctx.plan.mode == Mode::Echo {
        for _ in 0..k {
            c.stamps.push_back(now);
        }
    }
    k
}

/// Rate: write the messages whose intended time has come (their stamps were queued by [`Reactor::assign_due`]).
fn write_due(ctx: &mut Ctx, c: &mut Conn, now: u64) -> usize {
    let k = (c.due as usize).min(per_send(c));
    write_from_template(ctx, c, k, now);
    c.due -= k as u32;
    c.outstanding += k as u32;
    k
}

/// Pubsub: write every due publish, each carrying its intended send time.
fn write_publishes(ctx: &mut Ctx, c: &mut Conn, now: u64) -> usize {
    let k = c.due as usize;
    let count = now >= ctx.warm_end && now < ctx.end;
    for _ in 0..k {
        let t = c.stamps.pop_front().expect("stamp per due message");
        compose_publish(&mut ctx.scratch, &ctx.plan, t);
        match (c.deflate.as_deref_mut(), ctx.deflate.as_deref_mut()) {
            (Some(cd), Some(td)) => {
                let (out, msg) = (&mut c.sbuf, &ctx.scratch);
                deflate::write_message(
                    td,
                    cd,
                    out,
                    OpCode::Text,
                    msg,
                    c.key,
                    &mut ctx.stats.deflate,
                    count,
                );
            }
            _ => frames::write_client_frame_text(&mut c.sbuf, &ctx.scratch, c.key),
        }
    }
    c.due = 0;
    k
}

/// Messages of the connection's template that fit one send.
fn per_send(c: &Conn) -> usize {
    let tmpl = c.tmpl.as_ref().expect("template");
    (MAX_SEND_BYTES / tmpl.len().max(1)).max(1)
}

/// Append `k` messages with the next sequence numbers to the send buffer (compressed with `--deflate`).
fn write_from_template(ctx: &mut Ctx, c: &mut Conn, k: usize, now: u64) {
    if let Some(cd) = c.deflate.as_deref_mut() {
        let count = now >= ctx.warm_end && now < ctx.end;
        let td = ctx.deflate.as_deref_mut().expect("thread deflate state");
        for _ in 0..k {
            ctx.scratch.clear();
            ctx.scratch.extend_from_slice(&ctx.pattern);
            let n = frames::seq_len(ctx.scratch.len());
            frames::write_seq(&mut ctx.scratch[..n], c.send_seq);
            let op = ctx.plan.opcode;
            deflate::write_message(
                td,
                cd,
                &mut c.sbuf,
                op,
                &ctx.scratch,
                c.key,
                &mut ctx.stats.deflate,
                count,
            );
            c.send_seq += 1;
        }
        return;
    }
    let tmpl = c.tmpl.as_ref().expect("template");
    for _ in 0..k {
        tmpl.write(&mut c.sbuf, c.send_seq);
        c.send_seq += 1;
    }
}

/// The text of one publish: the template's prefix, the marker with the intended time `t`, filler up to `--size`,
/// the template's suffix.
fn compose_publish(s: &mut Vec<u8>, plan: &Plan, t: u64) {
    s.clear();
    s.extend_from_slice(&plan.pub_prefix);
    let text_start = s.len();
    s.extend_from_slice(MARK);
    let d = s.len();
    s.extend_from_slice(&[b'0'; 16]);
    frames::write_seq(&mut s[d..d + 16], t);
    s.push(b'#');
    while s.len() - text_start < plan.size {
        s.push(b'a' + ((s.len() - text_start) % 26) as u8);
    }
    s.extend_from_slice(&plan.pub_suffix);
}

/// A whole message (opcode `op`) arrived on `c`. Returns true when the connection may send again (its echo window
/// has room), so it should be flushed this turn.
pub(super) fn on_message(ctx: &mut Ctx, c: &mut Conn, op: u8, payload: &[u8], now: u64) -> bool {
    let in_window = now >= ctx.warm_end && now < ctx.end;
    ctx.stats.received_total += 1;
    ctx.stats.bytes_received_total += payload.len() as u64;
    match ctx.plan.mode {
        Mode::Pubsub => {
            on_delivery(ctx, payload, now, in_window);
            false
        }
        mode => on_echo(ctx, c, mode, op, payload, now, in_window),
    }
}

/// Pubsub: a delivery carries its publish's intended time; anything without the marker (join confirmations,
/// welcome messages, ...) is not a delivery.
fn on_delivery(ctx: &mut Ctx, payload: &[u8], now: u64, in_window: bool) {
    let Some(p) = payload.windows(MARK.len()).position(|w| w == MARK) else {
        return;
    };
    let ts = payload.get(p + 3..p + 19).and_then(frames::read_hex);
    let Some(ts) = ts else {
        ctx.stats.err(ErrKind::Mismatch);
        return;
    };
    if in_window {
        ctx.stats.received += 1;
        ctx.stats.bytes_received += payload.len() as u64;
        record_ns(&mut ctx.stats.latency, now.saturating_sub(ts));
    }
}

/// Echo/flood/rate: the echo of the oldest outstanding message, verified in full.
fn on_echo(
    ctx: &mut Ctx,
    c: &mut Conn,
    mode: Mode,
    op: u8,
    payload: &[u8],
    now: u64,
    in_window: bool,
) -> bool {
    if c.outstanding == 0 {
        ctx.stats.err(ErrKind::Mismatch);
        return false;
    }
    c.outstanding -= 1;
    let ok =
        op == ctx.plan.opcode as u8 && frames::verify_payload(payload, &ctx.pattern, c.recv_seq);
    c.recv_seq += 1;
    if !ok {
        ctx.stats.err(ErrKind::Mismatch);
    }
    let stamp = if mode == Mode::Flood {
        None
    } else {
        c.stamps.pop_front()
    };
    if in_window {
        ctx.stats.received += 1;
        ctx.stats.bytes_received += payload.len() as u64;
        if let Some(t) = stamp {
            record_ns(&mut ctx.stats.latency, now.saturating_sub(t));
        }
    }
    matches!(mode, Mode::Echo | Mode::Flood) && ctx.phase == Phase::Run
}

/// Rate/pubsub: this thread's share of the total rate, as intended send times `t0 + k * interval`.
pub(super) struct Schedule {
    t0: u64,
    /// ns between two intended sends of this thread.
    interval: f64,
    /// Intended sends handed out so far.
    k: u64,
    /// The connection that got the last one (round robin).
    rr: usize,
    /// False in echo/flood mode, or when this thread has no sender.
    active: bool,
}

impl Schedule {
    /// Whether this thread sends on a schedule (rate, pubsub) rather than in a closed loop.
    pub(super) fn is_active(&self) -> bool {
        self.active
    }

    /// The schedule starting at `t0` for a thread with these connections (its senders: every connection in rate
    /// mode, the publishers in pubsub mode).
    pub(super) fn new(plan: &Plan, conns: &[Conn], t0: u64) -> Self {
        let scheduled = matches!(plan.mode, Mode::Rate | Mode::Pubsub);
        let senders = match plan.mode {
            Mode::Pubsub => plan.total_pubs,
            _ => plan.total_conns,
        };
        let my_senders = conns
            .iter()
            .filter(|c| plan.mode != Mode::Pubsub || c.publisher)
            .count();
        let my_rate = if senders > 0 {
            plan.rate * my_senders as f64 / senders as f64
        } else {
            0.0
        };
        let interval = if my_rate > 0.0 { 1e9 / my_rate } else { 0.0 };
        Schedule {
            t0,
            interval,
            k: 0,
            rr: 0,
            active: scheduled && interval > 0.0 && my_senders > 0,
        }
    }
}

impl Reactor {
    /// Hand every message whose intended time has come (before `end`) to the next open sender, round robin, and
    /// return `wait` shortened to the next intended time.
    pub(super) fn assign_due(
        &mut self,
        s: &mut Schedule,
        now: u64,
        end: u64,
        mut wait: Duration,
    ) -> Duration {
        if !s.active {
            return wait;
        }
        let n = self.conns.len();
        let mode = self.ctx.plan.mode;
        let inflight = self.ctx.plan.inflight;
        loop {
            let t = s.t0 + (s.k as f64 * s.interval) as u64;
            if t > now || t >= end {
                if t < end {
                    wait = wait.min(Duration::from_nanos((t - now).max(50_000)));
                }
                break;
            }
            s.k += 1;
            let mut tries = 0;
            loop {
                s.rr = (s.rr + 1) % n;
                tries += 1;
                let c = &self.conns[s.rr];
                let sender = mode != Mode::Pubsub || c.publisher;
                if (sender && c.st == St::Open) || tries > n {
                    break;
                }
            }
            if tries > n {
                break;
            }
            let c = &mut self.conns[s.rr];
            if c.stamps.len() >= inflight.max(1) && mode == Mode::Rate {
                self.ctx.stats.err(ErrKind::RateBacklog);
                continue;
            }
            c.stamps.push_back(t);
            c.due += 1;
            self.mark_dirty(s.rr);
        }
        wait
    }
}

//! The WebSocket session of a connection: bytes into the protocol core, its events to the handler, control frames
//! and publishes into the outbound queue, the closing handshake.
//!
//! Control frames take one road: [`push_control`] queues pongs (answered here, so a pong keeps its place among the
//! replies of the same read) and idle pings, and [`transmit`] moves what the core has pending (close frames)
//! straight into the queue's tail. The core's own pong queue is off (`set_auto_pong(false)`).

use std::time::Instant;

use crate::proto::{Connection, Event, OpCode, State};

use super::super::backpressure::Backpressure;
use super::super::compress::WorkerDeflate;
use super::super::handler::{Handler, Message, WebSocket};
use super::super::id::ConnId;
use super::super::local::Local;
use super::super::outbound::{Outbound, SendStatus};
use super::super::pubsub::{unframe, Publish};
use super::super::stats::Counters;
use super::conn::{Conn, Phase, CLOSE_AFTER_FLUSH, DEAD};

/// The payload of the worker's idle pings.
const IDLE_PING: &[u8] = b"ringws";

/// Queue a control frame (`Pong` or `Ping`); never dropped (bounded by the protocol: <= 127 bytes each, and a
/// peer that floods pings without reading is paused like any other).
pub(super) fn push_control(
    local: &mut Local,
    slot: u32,
    out: &mut Outbound,
    op: OpCode,
    payload: &[u8],
) {
    let before = out.queued();
    out.push_control(op, payload, &mut local.pool);
    local.note_queued(slot, before);
}

/// The idle timer's ping.
pub(super) fn ping(local: &mut Local, slot: u32, out: &mut Outbound) {
    push_control(local, slot, out, OpCode::Ping, IDLE_PING);
}

/// Move the core's pending control frames (close) into the outbound queue, written in place.
fn transmit(local: &mut Local, slot: u32, out: &mut Outbound, proto: &mut Connection) {
    let before = out.queued();
    let mut wrote = false;
    out.push_with(128, &mut local.pool, |v| wrote = proto.poll_transmit(v));
    if wrote {
        local.note_queued(slot, before);
    }
}

/// The upgrade was accepted (the 101 is queued): start the session and tell the handler.
pub(super) fn open<H: Handler>(
    h: &H,
    local: &mut Local,
    slot: u32,
    conn: &mut Conn<H::Data>,
    mut proto: Connection,
    data: H::Data,
    now: Instant,
) {
    proto.set_auto_pong(false);
    conn.phase = Phase::Ws { proto, data };
    local.c.upgraded += 1;
    local.c.websockets += 1;
    if let Phase::Ws { data, .. } = &mut conn.phase {
        let mut ws = WebSocket::new(
            local,
            slot,
            conn.gen,
            data,
            &mut conn.out,
            &mut conn.topics,
            true,
            conn.deflate,
        );
        h.open(&mut ws);
    }
    if let Some((code, reason)) = local.close_request.take() {
        close(local, slot, conn, code, &reason, now);
    }
}

/// The queue fell below the low-water mark: tell the handler.
pub(super) fn drain<H: Handler>(h: &H, local: &mut Local, slot: u32, conn: &mut Conn<H::Data>) {
    if let Phase::Ws { proto, data } = &mut conn.phase {
        let can_send = proto.can_send();
        let mut ws = WebSocket::new(
            local,
            slot,
            conn.gen,
            data,
            &mut conn.out,
            &mut conn.topics,
            can_send,
            conn.deflate,
        );
        h.drain(&mut ws);
    }
}

/// Start the closing handshake (the close frame goes after what is queued).
pub(super) fn close<D>(
    local: &mut Local,
    slot: u32,
    conn: &mut Conn<D>,
    code: u16,
    reason: &str,
    now: Instant,
) {
    if let Phase::Ws { proto, .. } = &mut conn.phase {
        if proto.state() == State::Open {
            proto.close(code, reason, now);
            conn.close_code = code;
            transmit(local, slot, &mut conn.out, proto);
        }
    }
}

/// Queue a publish's shared frame to one subscriber (its class's compressed frame if it negotiated
/// permessage-deflate). `None` if it does not take it (closing, excluded).
#[allow(clippy::too_many_arguments)]
pub(super) fn offer_publish<D>(
    bp: &Backpressure,
    dz: &mut WorkerDeflate,
    c: &mut Counters,
    worker: usize,
    slot: u32,
    conn: &mut Conn<D>,
    p: &Publish,
) -> Option<SendStatus> {
    if conn.flags & (DEAD | CLOSE_AFTER_FLUSH) != 0
        || p.exclude == Some(ConnId::new(worker, slot, conn.gen))
    {
        return None;
    }
    match &conn.phase {
        Phase::Ws { proto, .. } if proto.can_send() => {
            let compressed = match (&p.deflated, conn.deflate) {
                (Some(cache), mark) if mark != 0 => {
                    unframe(&p.frame).and_then(|(payload, text)| {
                        let op = if text { OpCode::Text } else { OpCode::Binary };
                        dz.publish_frame(c, slot, mark, cache, op, &payload)
                    })
                }
                _ => None,
            };
            let frame = compressed.unwrap_or_else(|| p.frame.clone());
            Some(conn.out.push_shared(frame, bp))
        }
        _ => None,
    }
}

/// Bytes arrived for an open WebSocket: decode, answer pings, hand messages to the handler.
pub(super) fn read<H: Handler>(
    h: &H,
    local: &mut Local,
    slot: u32,
    conn: &mut Conn<H::Data>,
    input: &mut [u8],
    now: Instant,
) {
    let Phase::Ws { proto, data } = &mut conn.phase else {
        return;
    };
    let gen = conn.gen;
    let out = &mut conn.out;
    let topics = &mut conn.topics;
    let mut can_send = proto.can_send();
    let mut peer_close: Option<u16> = None;
    let mark = conn.deflate;
    // The inflater (and the connection's window, if any) leave `local` for the read, so that the handler's
    // callbacks, which reach `local`, can run while a message borrows the inflater's output.
    let mut rc = (mark != 0).then(|| local.deflate.begin_read(slot, mark));
    let mut on_event = |ev: Event<'_>| {
        let msg = match ev {
            Event::Text(s) => Message::Text(s),
            Event::Binary(b) => Message::Binary(b),
            Event::Ping(p) => return push_control(local, slot, out, OpCode::Pong, p),
            Event::Pong(_) => return,
            Event::Close { code, .. } => {
                peer_close = Some(code.unwrap_or(1005));
                return;
            }
        };
        local.c.messages_in += 1;
        if local.close_request.is_none() {
            let mut ws = WebSocket::new(local, slot, gen, data, out, topics, can_send, mark);
            h.message(&mut ws, msg);
            can_send = ws.can_send();
        }
    };
    let result = match rc.as_mut() {
        None => proto.handle_read(input, &mut on_event),
        Some(rc) => rc.run(|d| proto.handle_read_with(input, d, &mut on_event)),
    };
    if let Some(rc) = rc {
        local.deflate.end_read(slot, rc, &mut local.c);
    }
    if let Err(e) = result {
        local.c.protocol_errors += 1;
        conn.close_code = e.code;
        tracing::debug!(
            worker = local.worker,
            slot,
            code = e.code,
            reason = e.reason,
            "protocol error"
        );
    }
    if let Some(code) = peer_close {
        conn.close_code = code;
    }
    if let Some((code, reason)) = local.close_request.take() {
        if proto.state() == State::Open {
            proto.close(code, &reason, now);
            conn.close_code = code;
        }
    }
    transmit(local, slot, out, proto);
    if proto.state() == State::Closed || result.is_err() {
        conn.flags |= CLOSE_AFTER_FLUSH;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connection_slot_is_small() {
        // Reported in PERF.md: the whole per-connection footprint of an idle WebSocket in the slab (protocol state,
        // outbound queue header, flags, timers); no heap allocation is held while idle.
        let slot = std::mem::size_of::<super::Conn<u64>>();
        println!(
            "slab slot with 8 bytes of application data: {slot} bytes (proto::Connection {} bytes)",
            std::mem::size_of::<super::Connection>()
        );
        assert!(slot <= 224, "{slot}");
    }
}

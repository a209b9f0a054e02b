//! The HTTP phase of a connection: accumulate the request head, pass it through the door (strict framing, a
//! per-address refusal made at accept, then Origin and token for upgrades), answer plain requests (the handler's
//! `http` hook, `426` for WebSocket routes, errors), and turn an accepted upgrade into a WebSocket session.
//!
//! Every response closes the connection (`Connection: close`), so a request body (its length is known from
//! `check_head`) is never read as the start of another request; bytes after an upgrade's head are frames, which
//! is why an upgrade with a body is refused.

use std::time::{Instant, SystemTime};

use crate::door::Refusal;
use crate::handshake::{self, Request};
use crate::proto::{Connection, Limits, Role};

use super::super::handler::{Handler, Response, ServerContext, Upgrade, UpgradeRequest};
use super::super::local::Local;
use super::conn::{Conn, Phase, CLOSE_AFTER_FLUSH};
use super::session;

/// Bytes arrived for a connection still reading its request head.
pub(super) fn read<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    slot: u32,
    conn: &mut Conn<H::Data>,
    data: &[u8],
    now: Instant,
) {
    let Phase::Http { buf, refused, .. } = &mut conn.phase else {
        return;
    };
    buf.extend_from_slice(data);
    match handshake::parse_request(buf, local.shared.config.max_request_size) {
        Ok(None) => {}
        Err(e) => {
            local.c.rejected_bad_request += 1;
            let r = Response::text(e.status, format!("{}\n", e.reason));
            respond(local, slot, conn, &r);
        }
        Ok(Some((req, consumed))) => {
            if let Some(r) = refused.take() {
                return refuse(local, slot, conn, &r);
            }
            if let Err(r) = local.shared.door.check_head(&req) {
                return refuse(local, slot, conn, &r);
            }
            let rest = buf.split_off(consumed);
            on_request(h, local, limits, slot, conn, req, rest, now);
        }
    }
}

/// Queue an HTTP response and close after it is written.
pub(super) fn respond<D>(local: &mut Local, slot: u32, conn: &mut Conn<D>, r: &Response) {
    let headers: Vec<(&str, &str)> = std::iter::once(("Content-Type", r.content_type))
        .chain(r.headers.iter().map(|(k, v)| (*k, v.as_str())))
        .collect();
    let before = conn.out.queued();
    conn.out
        .push_with(r.body.len() + 256, &mut local.pool, |v| {
            handshake::write_response(v, r.status, &headers, &r.body)
        });
    local.note_queued(slot, before);
    conn.phase = Phase::Done;
    conn.flags |= CLOSE_AFTER_FLUSH;
}

/// Answer a refusal of the door, count it by reason and log it (debug: a refusal is the client's problem).
fn refuse<D>(local: &mut Local, slot: u32, conn: &mut Conn<D>, r: &Refusal) {
    local.c.count_refusal(r.reason);
    tracing::debug!(
        worker = local.worker,
        slot,
        status = r.status,
        reason = r.label(),
        "door refused: {}",
        r.message
    );
    let mut resp = Response::text(r.status, format!("{}\n", r.message));
    resp.headers.extend(r.headers.iter().cloned());
    respond(local, slot, conn, &resp);
}

/// A plain request: `426` for a WebSocket route, otherwise the handler's answer.
fn plain<H: Handler>(h: &H, local: &mut Local, req: &Request) -> Response {
    let path = req.path.split('?').next().unwrap_or("");
    if h.is_websocket_route(path) && req.method == "GET" {
        return Response::text(
            426,
            "this is a WebSocket endpoint: connect with a WebSocket client\n",
        )
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13");
    }
    local.c.http_requests += 1;
    let shared = local.shared.clone();
    h.http(req, &ServerContext { shared: &shared })
}

#[allow(clippy::too_many_arguments)]
fn on_request<H: Handler>(
    h: &H,
    local: &mut Local,
    limits: &Limits,
    slot: u32,
    conn: &mut Conn<H::Data>,
    req: Request,
    mut rest: Vec<u8>,
    now: Instant,
) {
    if !req.is_upgrade() {
        let r = plain(h, local, &req);
        respond(local, slot, conn, &r);
        return;
    }
    let up = match handshake::validate_upgrade(&req) {
        Ok(u) => u,
        Err(rej) => {
            local.c.rejected_bad_request += 1;
            let mut r = Response::text(rej.status, format!("{}\n", rej.reason));
            r.headers.extend(rej.headers);
            respond(local, slot, conn, &r);
            return;
        }
    };
    let claims = match local.shared.door.check_upgrade(&req, SystemTime::now()) {
        Ok(c) => c,
        Err(r) => return refuse(local, slot, conn, &r),
    };
    if local.c.websockets as usize >= local.shared.config.max_connections_per_worker {
        local.c.rejected_capacity += 1;
        let r = Response::text(503, "server at capacity\n").header("Retry-After", "1");
        respond(local, slot, conn, &r);
        return;
    }
    let ureq = UpgradeRequest {
        path: &req.path,
        request: &req,
        origin: up.origin.as_deref(),
        protocols: &up.protocols,
        extensions: &up.extensions,
        claims: claims.as_ref(),
    };
    match h.upgrade(&ureq) {
        Upgrade::Reject { status, body } => {
            local.c.rejected_upgrade += 1;
            respond(
                local,
                slot,
                conn,
                &Response::text(status, body.into_owned()),
            );
        }
        Upgrade::Accept { data, protocol } => {
            let deflate = crate::deflate::negotiate(
                up.extensions.iter().map(String::as_str),
                local.shared.config.compression,
            );
            let before = conn.out.queued();
            conn.out.push_with(256, &mut local.pool, |v| {
                let ext = deflate.as_ref().map(|n| n.response.as_str());
                handshake::write_accept_response(v, &up.accept, protocol.as_deref(), ext)
            });
            local.note_queued(slot, before);
            if claims.is_some() {
                local.admitted.entry(slot).or_default().claims = claims;
            }
            let mut proto = Connection::new(Role::Server, *limits);
            if let Some(n) = &deflate {
                proto.set_rsv1_allowed(true);
                conn.deflate = local.deflate.attach(slot, &n.params);
            }
            session::open(h, local, slot, conn, proto, data, now);
            if !rest.is_empty() {
                session::read(h, local, slot, conn, &mut rest, now);
            }
        }
    }
}

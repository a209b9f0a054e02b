//! The application-facing API: a [`Handler`] with upgrade / open / message / drain / close hooks, the per-connection
//! [`WebSocket`] handle they receive (send with explicit backpressure, close, topics), and plain HTTP responses.

use std::borrow::Cow;

use bytes::Bytes;

use super::local::Local;
use super::outbound::{Outbound, SendStatus, ZERO_COPY_MIN};
use super::pubsub::{Publish, Subscriptions};
use super::shared::Shared;
use crate::broker::{BrokerSnapshot, Health};
use crate::door::Claims;
use crate::handshake::Request;
use crate::proto::{write_frame, OpCode, MAX_HEADER_LEN};

pub use super::id::ConnId;

pub use super::stats::StatsSnapshot;

/// A complete message received from a peer. Borrowed: copy what must outlive the callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message (valid UTF-8).
    Text(&'a str),
    /// A binary message.
    Binary(&'a [u8]),
}

impl<'a> Message<'a> {
    /// The payload bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Message::Text(s) => s.as_bytes(),
            Message::Binary(b) => b,
        }
    }
    pub(crate) fn opcode(&self) -> OpCode {
        match self {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        }
    }
}

/// An opening handshake the application may accept or reject.
#[derive(Debug)]
pub struct UpgradeRequest<'a> {
    /// The request target, e.g. `/echo?room=a`.
    pub path: &'a str,
    /// The full request head (all headers).
    pub request: &'a Request,
    /// The `Origin` header, if the client sent one (browsers always do).
    pub origin: Option<&'a str>,
    /// Subprotocols offered by the client, in its order of preference.
    pub protocols: &'a [String],
    /// Extensions offered by the client (raw offers).
    pub extensions: &'a [String],
    /// The verified token claims when the server requires tokens (`Config::door.jwt`); `None` otherwise. The server
    /// keeps them with the connection ([`WebSocket::claims`]) and closes it with 1008 when they expire.
    pub claims: Option<&'a Claims>,
}

/// The answer to an [`UpgradeRequest`].
#[derive(Debug)]
pub enum Upgrade<D> {
    /// Switch protocols; `data` is attached to the connection; `protocol` is the chosen subprotocol.
    Accept {
        /// The application state attached to the connection.
        data: D,
        /// The chosen subprotocol (one the client offered), echoed in `Sec-WebSocket-Protocol`.
        protocol: Option<String>,
    },
    /// Answer with this HTTP status (and a short plain-text body) and close.
    Reject {
        /// The HTTP status, e.g. 401, 403, 404.
        status: u16,
        /// A short plain-text body.
        body: Cow<'static, str>,
    },
}

impl<D> Upgrade<D> {
    /// Accept with `data` and no subprotocol.
    pub fn accept(data: D) -> Self {
        Upgrade::Accept {
            data,
            protocol: None,
        }
    }
    /// Reject with `status` and a plain-text `body`.
    pub fn reject(status: u16, body: impl Into<Cow<'static, str>>) -> Self {
        Upgrade::Reject {
            status,
            body: body.into(),
        }
    }
}

/// A plain HTTP response (the connection closes after it).
#[derive(Debug, Clone)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// Further headers (`Content-Length` and `Connection: close` are added by the server).
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Cow<'static, [u8]>,
}

impl Response {
    /// A response with a body of `content_type`.
    pub fn new(
        status: u16,
        content_type: &'static str,
        body: impl Into<Cow<'static, [u8]>>,
    ) -> Self {
        Response {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }
    /// A plain-text (UTF-8) response.
    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(
            status,
            "text/plain; charset=utf-8",
            body.into().into_bytes(),
        )
    }
    /// `404 not found`.
    pub fn not_found() -> Self {
        Self::text(404, "not found\n")
    }
    /// Add a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// Server-wide facts for HTTP handlers (stats, publishing).
pub struct ServerContext<'a> {
    pub(crate) shared: &'a Shared,
}

impl ServerContext<'_> {
    /// Counters summed over all workers.
    pub fn stats(&self) -> StatsSnapshot {
        self.shared.snapshot()
    }
    /// Prometheus text exposition of the server's metrics.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics_text()
    }
    /// Publish to every subscriber of `topic` on every worker.
    pub fn publish(&self, topic: &str, msg: Message<'_>) {
        self.shared
            .hub
            .publish_from_outside(topic, encode_frame(msg))
    }
    /// Subscribers of `topic` across all workers (of this node: counts are not shared across nodes).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.shared.hub.subscriber_count(topic)
    }
    /// The Redis bridge's state: `None` without `Config::broker`; anything but `Some(Health::Up)` means other
    /// nodes are not reached (serve `/healthz` as degraded).
    pub fn broker_health(&self) -> Option<Health> {
        self.shared.hub.broker_health()
    }
    /// The Redis bridge's counters (`None` without `Config::broker`).
    pub fn broker_stats(&self) -> Option<BrokerSnapshot> {
        self.shared.hub.broker_stats()
    }
    /// This node's id in the envelopes it publishes to Redis (`None` without `Config::broker`).
    pub fn node_id(&self) -> Option<u64> {
        self.shared.hub.node_id()
    }
}

/// The application's behaviour. One instance serves every worker (`Sync`); per-connection state lives in `Data`.
///
/// Every method runs on the connection's worker thread, inside its event loop: do not block.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection application state, attached at upgrade.
    type Data: 'static;

    /// Decide an upgrade: accept (attach data, pick a subprotocol) or reject with any HTTP status.
    fn upgrade(&self, req: &UpgradeRequest<'_>) -> Upgrade<Self::Data>;

    /// The connection is open (the 101 response is queued).
    fn open(&self, _ws: &mut WebSocket<'_, Self::Data>) {}

    /// A complete message arrived.
    fn message(&self, ws: &mut WebSocket<'_, Self::Data>, msg: Message<'_>);

    /// The outbound queue fell below the low-water mark (`max_backpressure / 4`) after having been above it.
    fn drain(&self, _ws: &mut WebSocket<'_, Self::Data>) {}

    /// The connection is gone. `code` is the peer's close code (1005 when none, 1006 when the transport dropped
    /// without a close frame, ours when we failed it). Topics are already unsubscribed; `ctx` can still publish.
    fn close(&self, _ctx: &ServerContext<'_>, _id: ConnId, _data: Self::Data, _code: u16) {}

    /// A plain (non-upgrade) HTTP request. Default: 404.
    fn http(&self, _req: &Request, _ctx: &ServerContext<'_>) -> Response {
        Response::not_found()
    }

    /// Whether a plain GET to `path` should get `426 Upgrade Required` (it is a WebSocket route). Default: never.
    fn is_websocket_route(&self, _path: &str) -> bool {
        false
    }
}

/// The handle a handler gets for one connection.
pub struct WebSocket<'a, D> {
    id: ConnId,
    slot: u32,
    data: &'a mut D,
    out: &'a mut Outbound,
    topics: &'a mut Subscriptions,
    local: &'a mut Local,
    can_send: bool,
    /// permessage-deflate mark (0: not negotiated).
    deflate: u8,
}

impl<'a, D> WebSocket<'a, D> {
    /// The handle for connection `slot` of `local`'s worker (built by the worker's session code only).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        local: &'a mut Local,
        slot: u32,
        gen: u32,
        data: &'a mut D,
        out: &'a mut Outbound,
        topics: &'a mut Subscriptions,
        can_send: bool,
        deflate: u8,
    ) -> Self {
        WebSocket {
            id: ConnId::new(local.worker, slot, gen),
            slot,
            data,
            out,
            topics,
            local,
            can_send,
            deflate,
        }
    }

    /// Whether sends are still accepted (false once a close was requested or the peer closed).
    pub(crate) fn can_send(&self) -> bool {
        self.can_send
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }
    /// The verified token claims this connection was let in with (`None` when tokens are not required).
    pub fn claims(&self) -> Option<&Claims> {
        self.local
            .admitted
            .get(&self.slot)
            .and_then(|a| a.claims.as_ref())
    }
    /// The application state attached at upgrade.
    pub fn data(&mut self) -> &mut D {
        self.data
    }
    /// Bytes queued and not yet written to the socket.
    pub fn buffered_amount(&self) -> usize {
        self.out.queued()
    }

    /// Send a message. `Sent`: queued on an empty queue, goes out this loop turn. `Buffered`: queued behind
    /// other bytes. `Dropped`: not queued, the queue is over `max_backpressure` (or the connection is closing).
    ///
    /// With permessage-deflate negotiated, a message of at least `Config::compression_threshold` bytes is sent
    /// compressed when that makes it smaller (else plain); [`WebSocket::send_uncompressed`] opts one out.
    pub fn send(&mut self, msg: Message<'_>) -> SendStatus {
        self.send_with(msg, true)
    }

    /// [`WebSocket::send`] without compression, whatever was negotiated (already compressed data, or a message
    /// that must not share a compression context with attacker-controlled data in the same message, the
    /// BREACH-style concern).
    pub fn send_uncompressed(&mut self, msg: Message<'_>) -> SendStatus {
        self.send_with(msg, false)
    }

    fn send_with(&mut self, msg: Message<'_>, compress: bool) -> SendStatus {
        if !self.can_send {
            return SendStatus::Dropped;
        }
        let payload = msg.as_bytes();
        let local = &mut *self.local;
        if self.deflate != 0 {
            if !compress {
                local.c.deflate_skipped_opt_out += 1;
            } else if let Some(z) =
                local
                    .deflate
                    .compress(&mut local.c, self.slot, self.deflate, payload)
            {
                let st =
                    self.out
                        .push_compressed(msg.opcode(), z, &local.backpressure, &mut local.pool);
                local.note_send(self.slot, st);
                return st;
            }
        }
        let in_ring = local.rx.filter(|rx| {
            payload.len() >= ZERO_COPY_MIN && rx.contains(payload) && local.pool.ring_room()
        });
        let st = match in_ring {
            // A large payload still in the receive buffer (an echo): sent from there, not copied.
            Some(rx) => {
                local.c.zero_copy_sends += 1;
                self.out.push_frame_in_ring(
                    msg.opcode(),
                    payload,
                    rx.bid,
                    &local.backpressure,
                    &mut local.pool,
                )
            }
            None => {
                self.out
                    .push_frame(msg.opcode(), payload, &local.backpressure, &mut local.pool)
            }
        };
        self.local.note_send(self.slot, st);
        st
    }

    /// Send a pre-encoded frame (from [`encode_frame`]) without copying it: it is shared, e.g. by a broadcast.
    pub fn send_frame(&mut self, frame: Bytes) -> SendStatus {
        if !self.can_send {
            return SendStatus::Dropped;
        }
        let st = self.out.push_shared(frame, &self.local.backpressure);
        self.local.note_send(self.slot, st);
        st
    }

    /// Start the closing handshake (the close frame goes after what is already queued).
    pub fn close(&mut self, code: u16, reason: &str) {
        self.can_send = false;
        self.local.close_request = Some((code, reason.to_string()));
    }

    /// Subscribe to `topic` (idempotent). Returns false if already subscribed.
    pub fn subscribe(&mut self, topic: &str) -> bool {
        let local = &mut *self.local;
        local
            .topics
            .subscribe(&local.shared.hub, self.topics, topic, self.slot)
    }

    /// Unsubscribe from `topic`. Returns false if not subscribed.
    pub fn unsubscribe(&mut self, topic: &str) -> bool {
        let local = &mut *self.local;
        local
            .topics
            .unsubscribe(&local.shared.hub, self.topics, topic, self.slot)
    }

    /// Topics this connection is subscribed to.
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| &**t)
    }

    /// Publish `msg` to every subscriber of `topic` on every worker, optionally excluding this connection.
    /// The frame is encoded once and shared by all subscribers. Per-topic order is preserved.
    pub fn publish(&mut self, topic: &str, msg: Message<'_>, exclude_self: bool) {
        self.local.c.publishes += 1;
        let compress = self.local.shared.config.compression != crate::deflate::Compression::Off;
        self.local.topics.publish(Publish::new(
            topic.into(),
            encode_frame(msg),
            exclude_self.then_some(self.id),
            compress,
        ));
    }

    /// Subscribers of `topic` across all workers (as of the last subscribe/unsubscribe on any worker).
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.local.shared.hub.subscriber_count(topic)
    }
}

/// Encode a complete unmasked server frame for `msg`, ready to share between connections.
pub fn encode_frame(msg: Message<'_>) -> Bytes {
    let payload = msg.as_bytes();
    let mut v = Vec::with_capacity(payload.len() + MAX_HEADER_LEN);
    write_frame(&mut v, true, msg.opcode(), payload);
    Bytes::from(v)
}

//! The demo application served by the `ringws` binary: the browser page (embedded), a pure echo at `/echo`, a JSON
//! chat with rooms at `/chat` (rooms are pub/sub topics), and operational endpoints (`/healthz`, `/stats`,
//! `/metrics`). It is an ordinary user of the library's [`Handler`] API.
//!
//! Chat protocol (JSON text messages). Client -> server: `{"type":"name","name":"alice"}`,
//! `{"type":"join","room":"lobby"}`, `{"type":"leave","room":"lobby"}`, `{"type":"say","room":"lobby","text":"hi"}`.
//! Server -> client: `welcome {id,name,authenticated}`, `joined {room,name,count}`, `left {room,name,count}`,
//! `message {room,name,text,ts}` (to every member, the sender included), `renamed {old,name}`, `error {error}`.
//!
//! Across nodes (`--redis`): rooms span every node, and `welcome`, `joined` and `left` also carry `node`, a short
//! label of the node that sent them. `count` is the room's members **on that node** (counts are per node, never
//! summed through Redis, so a crashed node leaves no stale global count behind); the page shows it as "N here"
//! for its own node and "N on node X" for others. Guest names carry the node label so they stay unique.
//! When the server requires tokens (`--jwt-secret` / `--jwt-public-key`), a chat user's name is the token's `sub`
//! and `name` requests are refused with an `error`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Deserialize;
use serde_json::json;

use ringws::broker::Health;
use ringws::handshake::Request;
use ringws::server::{
    ConnId, Handler, Message, Response, ServerContext, Upgrade, UpgradeRequest, WebSocket,
};

/// The page's files: (URL path, bytes). The binary embeds `static/` (see `build.rs`).
pub type Assets = &'static [(&'static str, &'static [u8])];

/// Longest chat name, in characters.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// Longest chat text, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// Rooms one connection may be in at once.
pub const MAX_ROOMS_PER_CONN: usize = 16;

/// The topic every `/broadcast` connection is subscribed to.
pub const BROADCAST_TOPIC: &str = "broadcast";

/// Per-connection state: which route the connection was upgraded on.
pub enum Route {
    /// `/echo` (and an upgrade to `/`): every message comes back as it was sent.
    Echo,
    /// `/chat`: the JSON chat.
    Chat(Box<ChatUser>),
    /// `/broadcast`: every message is published to every `/broadcast` connection, the sender included.
    Broadcast,
}

pub struct ChatUser {
    /// The guest number: unique in this process, shown to the user as its id.
    pub id: u64,
    /// The name shown with the user's messages: `guest-N`, or the token's `sub` when authenticated.
    pub name: String,
    pub rooms: Vec<String>,
    /// Whether the name comes from a verified token (then it cannot be changed).
    pub authenticated: bool,
}

/// A chat name from a token's `sub`: control characters dropped, edge spaces trimmed, cut to `MAX_NAME_CHARS`.
fn name_from_sub(sub: &str) -> String {
    let clean: String = sub.chars().filter(|c| !c.is_control()).collect();
    let name: String = clean.trim().chars().take(MAX_NAME_CHARS).collect();
    match name.trim() {
        "" => "user".to_string(),
        n => n.to_string(),
    }
}

/// The demo application.
pub struct DemoApp {
    next_guest: AtomicU64,
    assets: Assets,
    /// This node's label in presence events and guest names when rooms span nodes (`--redis`). Default none.
    pub node: Option<String>,
}

impl DemoApp {
    /// The demo serving `assets` as its page.
    pub fn new(assets: Assets) -> Self {
        DemoApp {
            next_guest: AtomicU64::new(0),
            assets,
            node: None,
        }
    }

    /// A presence event (`joined`, `left`), labelled with this node when rooms span nodes.
    fn presence(&self, kind: &str, room: &str, name: &str, count: usize) -> serde_json::Value {
        let mut ev = json!({"type": kind, "room": room, "name": name, "count": count});
        if let Some(n) = &self.node {
            ev["node"] = json!(n);
        }
        ev
    }

    /// One of the page's files (`/` means `/index.html`).
    fn static_file(&self, path: &str) -> Option<&'static [u8]> {
        let path = if path == "/" { "/index.html" } else { path };
        self.assets
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, b)| *b)
    }
}

fn topic(room: &str) -> String {
    format!("room:{room}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum ChatIn {
    Name { name: String },
    Join { room: String },
    Leave { room: String },
    Say { room: String, text: String },
}

fn valid_label(s: &str, max_chars: usize) -> bool {
    let n = s.chars().count();
    n > 0 && n <= max_chars && !s.chars().any(char::is_control) && s.trim() == s
}

fn send_json<D>(ws: &mut WebSocket<'_, D>, v: serde_json::Value) {
    ws.send(Message::Text(&v.to_string()));
}

fn chat_error<D>(ws: &mut WebSocket<'_, D>, e: &str) {
    send_json(ws, json!({"type": "error", "error": e}));
}

impl DemoApp {
    fn chat_message(&self, ws: &mut WebSocket<'_, Route>, msg: Message<'_>) {
        let Message::Text(text) = msg else {
            return chat_error(ws, "binary messages are not part of the chat protocol");
        };
        let cmd: ChatIn = match serde_json::from_str(text) {
            Ok(c) => c,
            Err(_) => {
                return chat_error(
                    ws,
                    "malformed message: expected {\"type\": name|join|leave|say, ...}",
                )
            }
        };
        let Route::Chat(user) = ws.data() else { return };
        let name = user.name.clone();
        match cmd {
            ChatIn::Name { name: new } => {
                if user.authenticated {
                    return chat_error(ws, "your name comes from your token: renaming is disabled");
                }
                if !valid_label(&new, MAX_NAME_CHARS) {
                    return chat_error(
                        ws,
                        "name must be 1-32 characters, no control characters or edge spaces",
                    );
                }
                if let Route::Chat(u) = ws.data() {
                    u.name = new.clone();
                }
                send_json(ws, json!({"type": "renamed", "old": name, "name": new}));
            }
            ChatIn::Join { room } => {
                if !valid_label(&room, MAX_ROOM_CHARS) {
                    return chat_error(
                        ws,
                        "room must be 1-64 characters, no control characters or edge spaces",
                    );
                }
                if user.rooms.len() >= MAX_ROOMS_PER_CONN && !user.rooms.contains(&room) {
                    return chat_error(ws, "too many rooms");
                }
                let t = topic(&room);
                if ws.subscribe(&t) {
                    if let Route::Chat(u) = ws.data() {
                        u.rooms.push(room.clone());
                    }
                    let count = ws.subscriber_count(&t);
                    let ev = self.presence("joined", &room, &name, count);
                    ws.publish(&t, Message::Text(&ev.to_string()), false);
                }
            }
            ChatIn::Leave { room } => {
                let t = topic(&room);
                if ws.unsubscribe(&t) {
                    if let Route::Chat(u) = ws.data() {
                        u.rooms.retain(|r| *r != room);
                    }
                    let count = ws.subscriber_count(&t);
                    let ev = self.presence("left", &room, &name, count);
                    ws.publish(&t, Message::Text(&ev.to_string()), false);
                    send_json(ws, ev);
                }
            }
            ChatIn::Say { room, text } => {
                if text.len() > MAX_TEXT_BYTES {
                    return chat_error(ws, "text too long (max 4096 bytes)");
                }
                if !user.rooms.contains(&room) {
                    return chat_error(ws, "join the room first");
                }
                let ev = json!({"type": "message", "room": room, "name": name, "text": text, "ts": now_ms()});
                ws.publish(&topic(&room), Message::Text(&ev.to_string()), false);
            }
        }
    }
}

impl Handler for DemoApp {
    type Data = Route;

    fn upgrade(&self, req: &UpgradeRequest<'_>) -> Upgrade<Route> {
        match req.path.split('?').next().unwrap_or("") {
            // An upgrade to `/` is an echo too, so the field's load clients (which connect to `/`) work as they are;
            // a plain `GET /` still serves the page.
            "/echo" | "/" => Upgrade::accept(Route::Echo),
            "/broadcast" => Upgrade::accept(Route::Broadcast),
            "/chat" => {
                let n = self.next_guest.fetch_add(1, Ordering::Relaxed) + 1;
                let (name, authenticated) = match (req.claims, &self.node) {
                    (Some(c), _) => (name_from_sub(&c.sub), true),
                    (None, Some(node)) => (format!("guest-{n}@{node}"), false),
                    (None, None) => (format!("guest-{n}"), false),
                };
                Upgrade::accept(Route::Chat(Box::new(ChatUser {
                    id: n,
                    name,
                    rooms: Vec::new(),
                    authenticated,
                })))
            }
            _ => Upgrade::reject(
                404,
                "no WebSocket endpoint here (try /echo, /chat or /broadcast)\n",
            ),
        }
    }

    fn open(&self, ws: &mut WebSocket<'_, Route>) {
        if let Route::Broadcast = ws.data() {
            ws.subscribe(BROADCAST_TOPIC);
        }
        if let Route::Chat(u) = ws.data() {
            let (id, name, auth) = (u.id, u.name.clone(), u.authenticated);
            let mut ev = json!({"type": "welcome", "id": id, "name": name, "authenticated": auth});
            if let Some(n) = &self.node {
                ev["node"] = json!(n);
            }
            send_json(ws, ev);
        }
    }

    #[inline]
    fn message(&self, ws: &mut WebSocket<'_, Route>, msg: Message<'_>) {
        match ws.data() {
            Route::Echo => {
                ws.send(msg);
            }
            Route::Chat(_) => self.chat_message(ws, msg),
            Route::Broadcast => ws.publish(BROADCAST_TOPIC, msg, false),
        }
    }

    fn close(&self, ctx: &ServerContext<'_>, _id: ConnId, data: Route, _code: u16) {
        if let Route::Chat(u) = data {
            for room in &u.rooms {
                let t = topic(room);
                let ev = self.presence("left", room, &u.name, ctx.subscriber_count(&t));
                ctx.publish(&t, Message::Text(&ev.to_string()));
            }
        }
    }

    fn is_websocket_route(&self, path: &str) -> bool {
        matches!(path, "/echo" | "/chat" | "/broadcast")
    }

    fn http(&self, req: &Request, ctx: &ServerContext<'_>) -> Response {
        if req.method != "GET" && req.method != "HEAD" {
            return Response::text(405, "method not allowed\n").header("Allow", "GET, HEAD");
        }
        let path = req.path.split('?').next().unwrap_or("");
        match path {
            // Without Redis a node still serves its own clients: 200 either way (a load balancer keeps it), the
            // body says whether other nodes are reached.
            "/healthz" => match ctx.broker_health() {
                None | Some(Health::Up) => Response::text(200, "ok\n"),
                Some(h) => Response::text(200, format!("degraded: redis {}\n", h.as_str())),
            },
            "/metrics" => Response::new(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                ctx.metrics_text().into_bytes(),
            ),
            "/stats" => {
                let s = ctx.stats();
                let body = json!({
                    "connections": s.connections, "websockets": s.websockets, "accepted": s.accepted,
                    "messages_in": s.messages_in, "messages_out": s.messages_out,
                    "bytes_in": s.bytes_in, "bytes_out": s.bytes_out, "drops": s.dropped,
                    "workers": s.workers, "uptime_s": s.uptime_s,
                    "broker": ctx.broker_health().map(Health::as_str), "node": self.node,
                });
                Response::new(200, "application/json", body.to_string().into_bytes())
                    .header("Cache-Control", "no-store")
            }
            _ => match self.static_file(path) {
                Some(b) => {
                    let p = if path == "/" { "/index.html" } else { path };
                    Response::new(200, content_type(p), b)
                }
                None => Response::not_found(),
            },
        }
    }
}

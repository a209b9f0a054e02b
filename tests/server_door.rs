//! The door on a real server over loopback: Origin allowlist (403), tokens at upgrade (401, claims visible to the
//! handler, 1008 at expiry), per-address limits (429 while another loopback address still connects), strict
//! request heads (400), every refusal counted in /metrics by reason.

mod server_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ringws::door::{JwtConfig, JwtKey, OriginPolicy};
use ringws::server::{Config, Handler, Message, Server, Upgrade, UpgradeRequest, WebSocket};
use serde_json::{json, Value};
use server_util::*;

const SECRET: &[u8] = b"integration-test secret, thirty-two bytes or more";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: &Value) -> String {
    sign(Algorithm::HS256, SECRET, claims)
}

fn sign(alg: Algorithm, secret: &[u8], claims: &Value) -> String {
    encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

/// An upgrade request to `path` with extra header lines; returns (status, response head) and the stream.
fn upgrade_on(
    mut s: TcpStream,
    addr: SocketAddr,
    path: &str,
    extra: &[String],
) -> (u16, String, TcpStream) {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    for h in extra {
        req += h;
        req += "\r\n";
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    (status, head, s)
}

fn upgrade(addr: SocketAddr, path: &str, extra: &[String]) -> (u16, String, TcpStream) {
    upgrade_on(tcp(addr), addr, path, extra)
}

/// A TCP connection to the server from the loopback address `from` (e.g. 127.0.0.2).
fn tcp_from(from: &str, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: SocketAddr = format!("{from}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s
}

/// A text frame's JSON from the chat.
fn read_json(s: &mut TcpStream) -> Value {
    let (b0, p) = read_frame(s);
    assert_eq!(b0, 0x81);
    serde_json::from_slice(&p).unwrap()
}

/// `ringws_door_refusals_total` for one reason, summed over workers.
fn refusals(addr: SocketAddr, reason: &str) -> u64 {
    let (_, text) = get(addr, "/metrics");
    let needle = format!("reason=\"{reason}\"}}");
    text.lines()
        .filter(|l| l.starts_with("ringws_door_refusals_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Wait (bounded) until `f` holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---- Origin ----

#[test]
fn default_origin_policy_is_same_origin() {
    let server = start(config());
    let addr = server.local_addr();
    let (st, head, _) = upgrade(addr, "/echo", &["Origin: http://evil.example".into()]);
    assert_eq!(st, 403, "{head}");
    let (st, head, _) = upgrade(
        addr,
        "/echo",
        &[format!("Origin: http://127.0.0.2:{}", addr.port())],
    );
    assert_eq!(st, 403, "another host: {head}");
    let (st, head, _) = upgrade(addr, "/echo", &["Origin: null".into()]);
    assert_eq!(st, 403, "{head}");
    // The page's own origin, and no Origin at all (a non-browser client).
    let (st, head, mut s) = upgrade(addr, "/echo", &[format!("Origin: http://{addr}")]);
    assert_eq!(st, 101, "{head}");
    assert_echo(&mut s, b"same origin");
    let (st, head, mut s) = upgrade(addr, "/chat", &[]);
    assert_eq!(st, 101, "{head}");
    assert_eq!(read_json(&mut s)["type"], "welcome");
    assert_eq!(refusals(addr, "origin"), 3);
}

#[test]
fn explicit_origin_list_and_star() {
    let mut c = config();
    c.door.allowed_origins =
        OriginPolicy::parse("https://app.example,http://localhost:3000").unwrap();
    let server = start(c);
    let addr = server.local_addr();
    for (origin, want) in [
        ("https://app.example", 101),
        ("http://localhost:3000", 101),
        ("http://app.example", 403),
        ("https://app.example:8443", 403),
    ] {
        let (st, head, _) = upgrade(addr, "/echo", &[format!("Origin: {origin}")]);
        assert_eq!(st, want, "{origin}: {head}");
    }
    // The list replaced the default: the server's own origin is not on it.
    let (st, _, _) = upgrade(addr, "/echo", &[format!("Origin: http://{addr}")]);
    assert_eq!(st, 403);
    drop(server);

    let mut c = config();
    c.door.allowed_origins = OriginPolicy::any();
    let server = start(c);
    let (st, _, _) = upgrade(
        server.local_addr(),
        "/echo",
        &["Origin: http://evil.example".into()],
    );
    assert_eq!(st, 101);
}

// ---- tokens ----

fn token_config() -> Config {
    let mut c = config();
    let mut jwt = JwtConfig::new(JwtKey::Secret(SECRET.to_vec()));
    jwt.leeway = Duration::ZERO;
    c.door.jwt = Some(jwt);
    c
}

#[test]
fn tokens_refused_with_401_by_reason() {
    let server = start(token_config());
    let addr = server.local_addr();
    let now = unix_now();
    let cases = [
        (String::new(), "auth_missing"),
        (
            token(&json!({"sub": "alice", "exp": now - 10})),
            "auth_expired",
        ),
        (
            token(&json!({"sub": "alice", "exp": now + 600, "nbf": now + 300})),
            "auth_not_yet_valid",
        ),
        (
            sign(
                Algorithm::HS256,
                b"not the server's secret",
                &json!({"sub": "alice", "exp": now + 600}),
            ),
            "auth_invalid",
        ),
        (
            sign(
                Algorithm::HS384,
                SECRET,
                &json!({"sub": "alice", "exp": now + 600}),
            ),
            "auth_invalid",
        ),
        (token(&json!({"exp": now + 600})), "auth_invalid"),
    ];
    for (t, reason) in &cases {
        let extra = if t.is_empty() {
            vec![]
        } else {
            vec![format!("Authorization: Bearer {t}")]
        };
        let (st, head, _) = upgrade(addr, "/chat", &extra);
        assert_eq!(st, 401, "{reason}: {head}");
        assert!(head.contains("\r\nWWW-Authenticate: Bearer"), "{head}");
    }
    for reason in ["auth_missing", "auth_expired", "auth_not_yet_valid"] {
        assert_eq!(refusals(addr, reason), 1, "{reason}");
    }
    assert_eq!(refusals(addr, "auth_invalid"), 3);
    // Plain HTTP (the page, /metrics) needs no token.
    assert_eq!(get(addr, "/healthz").0, 200);
}

#[test]
fn valid_token_names_the_chat_user_and_forbids_renames() {
    let server = start(token_config());
    let addr = server.local_addr();
    let t = token(&json!({"sub": "alice", "exp": unix_now() + 600}));
    // Browsers pass the token in the query string.
    let (st, head, mut s) = upgrade(addr, &format!("/chat?token={t}"), &[]);
    assert_eq!(st, 101, "{head}");
    let welcome = read_json(&mut s);
    assert_eq!(
        (
            &welcome["type"],
            &welcome["name"],
            &welcome["authenticated"]
        ),
        (&json!("welcome"), &json!("alice"), &json!(true))
    );
    s.write_all(&frame(true, 1, br#"{"type":"name","name":"mallory"}"#))
        .unwrap();
    let e = read_json(&mut s);
    assert_eq!(e["type"], "error", "{e}");
    s.write_all(&frame(true, 1, br#"{"type":"join","room":"r"}"#))
        .unwrap();
    let j = read_json(&mut s);
    assert_eq!(
        (&j["type"], &j["name"]),
        (&json!("joined"), &json!("alice"))
    );

    // A subject that is not a fit chat name is cleaned: control characters dropped, trimmed, cut to 32 characters.
    for (sub, name) in [
        ("  bob \u{7}\n".to_string(), "bob".to_string()),
        ("\u{1b}".to_string(), "user".to_string()),
        ("z".repeat(100), "z".repeat(32)),
    ] {
        let t = token(&json!({"sub": sub, "exp": unix_now() + 600}));
        let (st, _, mut s) = upgrade(addr, &format!("/chat?token={t}"), &[]);
        assert_eq!(st, 101);
        assert_eq!(read_json(&mut s)["name"], json!(name), "{sub:?}");
    }
}

/// A handler that answers every message with what it sees of the connection's claims.
struct ClaimsEcho;

impl Handler for ClaimsEcho {
    type Data = String;
    fn upgrade(&self, req: &UpgradeRequest<'_>) -> Upgrade<String> {
        // The claims are there at upgrade (to decide, or keep in the connection's data)...
        Upgrade::accept(req.claims.map(|c| c.sub.clone()).unwrap_or_default())
    }
    fn message(&self, ws: &mut WebSocket<'_, String>, _msg: Message<'_>) {
        // ...and on every callback after it.
        let seen = ws
            .claims()
            .map(|c| (c.sub.clone(), c.exp, c.extra.get("role").cloned()));
        let reply = json!({"at_upgrade": ws.data().clone(), "now": seen}).to_string();
        ws.send(Message::Text(&reply));
    }
}

#[test]
fn claims_are_visible_to_the_handler() {
    let server = Server::new(token_config(), ClaimsEcho)
        .unwrap()
        .start()
        .unwrap();
    let addr = server.local_addr();
    let exp = unix_now() + 600;
    let t = token(&json!({"sub": "bob", "exp": exp, "role": "admin"}));
    let (st, head, mut s) = upgrade(addr, "/x", &[format!("Authorization: Bearer {t}")]);
    assert_eq!(st, 101, "{head}");
    s.write_all(&frame(true, 1, b"?")).unwrap();
    assert_eq!(
        read_json(&mut s),
        json!({"at_upgrade": "bob", "now": ["bob", exp, "admin"]})
    );
}

#[test]
fn connection_closes_with_1008_when_its_token_expires() {
    let server = start(token_config());
    let addr = server.local_addr();
    let t = token(&json!({"sub": "brief", "exp": unix_now() + 2}));
    let (st, head, mut s) = upgrade(addr, &format!("/echo?token={t}"), &[]);
    assert_eq!(st, 101, "{head}");
    assert_echo(&mut s, b"still valid");
    let started = Instant::now();
    assert_eq!(expect_close(&mut s), Some(1008));
    // Closed at expiry (checked once a second), not before it was due.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (_, text) = get(addr, "/metrics");
    assert_eq!(metric(&text, "ringws_token_expired_closes_total"), 1);
}

// ---- per-address limits ----

#[test]
fn per_ip_connection_cap_is_429_while_another_address_connects() {
    let mut c = config();
    c.door.per_ip.max_connections = 2;
    let server = start(c);
    let addr = server.local_addr();
    let (st, _, a) = upgrade(addr, "/echo", &[]);
    assert_eq!(st, 101);
    let (st, _, _b) = upgrade(addr, "/echo", &[]);
    assert_eq!(st, 101);
    let (st, head, _) = upgrade(addr, "/echo", &[]);
    assert_eq!(st, 429, "{head}");
    assert!(head.contains("\r\nRetry-After: 1\r\n"), "{head}");
    // Plain HTTP from the same address counts too.
    assert_eq!(get(addr, "/healthz").0, 429);
    // Another loopback address is not affected.
    let (st, head, mut other) = upgrade_on(tcp_from("127.0.0.2", addr), addr, "/echo", &[]);
    assert_eq!(st, 101, "{head}");
    assert_echo(&mut other, b"from 127.0.0.2");
    // Closing a connection gives its slot back.
    drop(a);
    eventually("the slot to be released", || {
        upgrade(addr, "/echo", &[]).0 == 101
    });
    // (Read from a third address: this one may still be at its cap while the last close is processed.)
    let (_, text) = get_from("127.0.0.3", addr, "/metrics");
    assert!(refusals_in(&text, "per_ip_connections") >= 2, "{text}");
}

#[test]
fn per_ip_rate_is_429_with_retry_after() {
    let mut c = config();
    c.door.per_ip.rate_per_second = 0.2; // one new connection per 5 s...
    c.door.per_ip.burst = 3; // ...after a burst of 3
    let server = start(c);
    let addr = server.local_addr();
    for _ in 0..3 {
        let (st, head, _) = upgrade(addr, "/echo", &[]);
        assert_eq!(st, 101, "{head}");
    }
    let (st, head, _) = upgrade(addr, "/echo", &[]);
    assert_eq!(st, 429, "{head}");
    let retry: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("Retry-After: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("Retry-After");
    assert!((1..=5).contains(&retry), "{retry}");
    let (st, _, _) = upgrade_on(tcp_from("127.0.0.2", addr), addr, "/echo", &[]);
    assert_eq!(st, 101);
    let (_, text) = get_from("127.0.0.3", addr, "/metrics");
    assert_eq!(refusals_in(&text, "per_ip_rate"), 1);
}

fn get_from(from: &str, addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tcp_from(from, addr);
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        text,
    )
}

fn refusals_in(text: &str, reason: &str) -> u64 {
    let needle = format!("reason=\"{reason}\"}}");
    text.lines()
        .filter(|l| l.starts_with("ringws_door_refusals_total{") && l.contains(&needle))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

// ---- strict request heads ----

#[test]
fn malformed_heads_are_400() {
    let server = start(config());
    let addr = server.local_addr();
    let h = format!("Host: {addr}");
    let cases: Vec<String> = vec![
        "GET / HTTP/1.1\r\n\r\n".into(),
        "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n".into(),
        format!("GET / HTTP/1.1\r\n{h}\r\nHost: example.org\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nContent-Length: -1234\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nContent-Length: -123456789123456789123456789\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nContent-Length: 123456789123456789123456789\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nContent-Length: abc\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
        format!("GET / HTTP/1.1\r\n{h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
        format!("GET /echo HTTP/1.1\r\n{h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 4\r\n\r\nabcd"),
    ];
    for req in &cases {
        let (st, text) = http(addr, req);
        assert_eq!(st, 400, "{req:?} -> {text}");
        assert!(text.contains("\r\nConnection: close\r\n"));
    }
    // The framing checks are the door's bad_request (the upgrade with a body is refused by validate_upgrade).
    assert_eq!(refusals(addr, "bad_request"), cases.len() as u64 - 1);
}

#[test]
fn request_with_a_body_is_answered_and_closed() {
    let server = start(config());
    let addr = server.local_addr();
    // A body the route does not take: answered (405 from the demo) and the connection closed, so the body can
    // never be read as a next request.
    let (st, text) = http(
        addr,
        &format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\n\r\nhello"),
    );
    assert_eq!(st, 405, "{text}");
    assert!(text.contains("\r\nConnection: close\r\n"));
    // A body that smuggles a second request: one response only.
    let (st, text) = http(
        addr,
        &format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 36\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        ),
    );
    assert_eq!(st, 405, "{text}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    // Identical repeated Content-Length values are one value (RFC 9110 8.6).
    let (st, _) = http(
        addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0, 0\r\n\r\n"),
    );
    assert_eq!(st, 200);
}

//! Helpers for the protocol-core tests: owned events, frame builders and assertions.
#![allow(dead_code)]

use ringws::proto::{encode_header, write_client_frame, write_frame, MAX_HEADER_LEN};
use ringws::proto::{Connection, Event, Limits, OpCode, ProtocolError, Role, State};

pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// An owned copy of an [`Event`], plus the error outcome, so whole runs can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    /// `handle_read` returned this error.
    Error(u16, &'static str),
}

impl From<Event<'_>> for Ev {
    fn from(e: Event<'_>) -> Self {
        match e {
            Event::Text(s) => Ev::Text(s.to_owned()),
            Event::Binary(b) => Ev::Binary(b.to_vec()),
            Event::Ping(b) => Ev::Ping(b.to_vec()),
            Event::Pong(b) => Ev::Pong(b.to_vec()),
            Event::Close { code, reason } => Ev::Close(code, reason.to_owned()),
        }
    }
}

pub fn text(s: &str) -> Ev {
    Ev::Text(s.to_owned())
}

pub fn binary(b: &[u8]) -> Ev {
    Ev::Binary(b.to_vec())
}

pub fn server() -> Connection {
    Connection::new(Role::Server, Limits::default())
}

pub fn client() -> Connection {
    Connection::new(Role::Client, Limits::default())
}

/// Feed `bytes` in one `handle_read`; returns the events (an error is recorded as the last event).
pub fn feed(conn: &mut Connection, bytes: &[u8]) -> Vec<Ev> {
    let mut data = bytes.to_vec();
    let mut evs = Vec::new();
    let _ = feed_mut(conn, &mut data, &mut evs);
    evs
}

/// Feed one read (in place); appends events and an error (if any) to `evs`. Returns the result.
pub fn feed_mut(
    conn: &mut Connection,
    data: &mut [u8],
    evs: &mut Vec<Ev>,
) -> Result<(), ProtocolError> {
    let r = conn.handle_read(data, &mut |e| evs.push(e.into()));
    if let Err(e) = r {
        evs.push(Ev::Error(e.code, e.reason));
    }
    r
}

/// Feed `bytes` split at the given cut points (sorted, deduplicated and clamped here). After the first error the
/// remaining chunks are still fed (they must be ignored), but a repeated error is not recorded again.
pub fn feed_split(conn: &mut Connection, bytes: &[u8], cuts: &[usize]) -> Vec<Ev> {
    let mut data = bytes.to_vec();
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(data.len())).collect();
    cuts.push(0);
    cuts.push(data.len());
    cuts.sort_unstable();
    cuts.dedup();
    let mut evs = Vec::new();
    let mut failed = false;
    for w in cuts.windows(2) {
        let mut got = Vec::new();
        let r = feed_mut(conn, &mut data[w[0]..w[1]], &mut got);
        if failed {
            assert!(
                got.iter().all(|e| matches!(e, Ev::Error(..))),
                "events after an error: {got:?}"
            );
            continue;
        }
        failed = r.is_err();
        evs.extend(got);
    }
    evs
}

/// Feed `bytes` one byte per read.
pub fn feed_bytewise(conn: &mut Connection, bytes: &[u8]) -> Vec<Ev> {
    let cuts: Vec<usize> = (1..bytes.len()).collect();
    feed_split(conn, bytes, &cuts)
}

/// A masked (client-to-server) frame.
pub fn cframe(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_client_frame(&mut v, fin, op, payload, KEY);
    v
}

/// An unmasked (server-to-client) frame.
pub fn sframe(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    write_frame(&mut v, fin, op, payload);
    v
}

/// A frame in the encoding the peer of `role` must use (masked towards a server).
pub fn frame_for(role: Role, fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    match role {
        Role::Server => cframe(fin, op, payload),
        Role::Client => sframe(fin, op, payload),
    }
}

/// A frame built from raw header parts: first byte, the length field exactly as given (`len_field` = 7-bit indicator
/// followed by the extended bytes), optional mask key, payload (masked here if a key is given).
pub fn raw_frame(b0: u8, len7: u8, ext: &[u8], key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0, len7 | if key.is_some() { 0x80 } else { 0 }];
    v.extend_from_slice(ext);
    if let Some(k) = key {
        v.extend_from_slice(&k);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

/// A close frame payload: code + reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// Decode what `conn` transmits, as seen by a peer of the opposite role.
pub fn transmitted(conn: &mut Connection) -> Vec<Ev> {
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    let peer_role = match conn.role() {
        Role::Server => Role::Client,
        Role::Client => Role::Server,
    };
    let mut peer = Connection::new(peer_role, Limits::default());
    feed(&mut peer, &out)
}

/// Feeding `bytes` to a fresh connection of `role` gives exactly `expected`, whole, split byte by byte and split in
/// the middle.
pub fn assert_events(role: Role, bytes: &[u8], expected: &[Ev]) {
    let mk = || Connection::new(role, Limits::default());
    assert_eq!(feed(&mut mk(), bytes), expected, "{role:?}, whole");
    assert_eq!(
        feed_bytewise(&mut mk(), bytes),
        expected,
        "{role:?}, bytewise"
    );
    let mid = bytes.len() / 2;
    assert_eq!(
        feed_split(&mut mk(), bytes, &[mid]),
        expected,
        "{role:?}, halves"
    );
}

/// Feeding `bytes` (whole and byte by byte) fails with `code`; the events before the failure are `before`; the
/// connection queues exactly one close frame carrying `code`, ignores further input and reaches `Closed` once the close
/// frame is transmitted.
pub fn assert_failing_after(role: Role, bytes: &[u8], before: &[Ev], code: u16) {
    for bytewise in [false, true] {
        let mut conn = Connection::new(role, Limits::default());
        let evs = if bytewise {
            feed_bytewise(&mut conn, bytes)
        } else {
            feed(&mut conn, bytes)
        };
        let (last, head) = evs.split_last().expect("no events at all");
        assert!(
            matches!(last, Ev::Error(c, _) if *c == code),
            "{role:?} bytewise={bytewise}: expected error {code}, got {evs:?}"
        );
        assert_eq!(
            head, before,
            "{role:?} bytewise={bytewise}: events before the error"
        );
        assert_eq!(conn.state(), State::Closing);
        let sent = transmitted(&mut conn);
        let close: Vec<_> = sent.iter().filter(|e| matches!(e, Ev::Close(..))).collect();
        assert_eq!(close.len(), 1, "one close frame expected, sent {sent:?}");
        assert!(
            matches!(close[0], Ev::Close(Some(c), _) if *c == code),
            "{sent:?}"
        );
        assert_eq!(conn.state(), State::Closed);
        // Further input is ignored and the error repeated.
        let again = feed(&mut conn, &frame_for(role, true, OpCode::Text, b"late"));
        assert!(
            matches!(again.as_slice(), [Ev::Error(c, _)] if *c == code),
            "{again:?}"
        );
        let mut out = Vec::new();
        assert!(
            !conn.poll_transmit(&mut out),
            "nothing more to send: {out:?}"
        );
    }
}

pub fn assert_failing(role: Role, bytes: &[u8], code: u16) {
    assert_failing_after(role, bytes, &[], code);
}

/// A header (as `encode_header` writes it) followed by `payload`, masked with `KEY` if `masked`.
pub fn encoded(fin: bool, op: OpCode, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut h = [0u8; MAX_HEADER_LEN];
    let n = encode_header(&mut h, fin, op, payload.len() as u64, masked.then_some(KEY));
    let mut v = h[..n].to_vec();
    if masked {
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    } else {
        v.extend_from_slice(payload);
    }
    v
}

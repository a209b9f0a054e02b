//! Chunking invariance (STYLE practice 6): the same bytes split at arbitrary points must give the same events, the
//! same error, the same transmitted control frames and the same final state as feeding them whole, for valid streams,
//! corrupted valid streams and random garbage, in both roles. Valid streams must also decode to what was encoded.

mod proto_util;

use proptest::prelude::*;
use proptest::sample::Index;
use proto_util::*;
use ringws::proto::{write_client_frame, write_frame};
use ringws::proto::{Connection, Limits, OpCode, Role, State};

#[derive(Debug, Clone)]
enum Msg {
    /// Payload, fragment cut points, an optional ping interleaved after the first fragment.
    Text(String, Vec<Index>, Option<Vec<u8>>),
    Binary(Vec<u8>, Vec<Index>, Option<Vec<u8>>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

fn control_payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=125)
}

fn msg() -> impl Strategy<Value = Msg> {
    let cuts = || prop::collection::vec(any::<Index>(), 0..4);
    prop_oneof![
        4 => ("\\PC{0,60}", cuts(), prop::option::weighted(0.2, control_payload()))
            .prop_map(|(s, c, p)| Msg::Text(s, c, p)),
        3 => (prop::collection::vec(any::<u8>(), 0..400), cuts(), prop::option::weighted(0.2, control_payload()))
            .prop_map(|(b, c, p)| Msg::Binary(b, c, p)),
        1 => (65536usize..66000, cuts()).prop_map(|(n, c)| {
            Msg::Binary((0..n).map(|i| (i % 253) as u8).collect(), c, None)
        }),
        1 => control_payload().prop_map(Msg::Ping),
        1 => control_payload().prop_map(Msg::Pong),
    ]
}

fn close_frame() -> impl Strategy<Value = Option<(Option<u16>, String)>> {
    prop::option::of(prop::option::of((
        prop::sample::select(vec![1000u16, 1001, 1003, 1008, 1011, 3000, 4999]),
        "\\PC{0,20}",
    )))
    .prop_map(|o| {
        o.map(|c| match c {
            Some((code, mut r)) => {
                while r.len() > 123 {
                    r.pop();
                }
                (Some(code), r)
            }
            None => (None, String::new()),
        })
    })
}

struct Enc {
    role: Role,
    bytes: Vec<u8>,
    n: u32,
}

impl Enc {
    fn frame(&mut self, fin: bool, op: OpCode, payload: &[u8]) {
        match self.role {
            Role::Server => {
                self.n = self.n.wrapping_mul(2654435761).wrapping_add(1);
                write_client_frame(&mut self.bytes, fin, op, payload, self.n.to_le_bytes())
            }
            Role::Client => write_frame(&mut self.bytes, fin, op, payload),
        }
    }

    fn data(
        &mut self,
        op: OpCode,
        payload: &[u8],
        cuts: &[Index],
        ping: &Option<Vec<u8>>,
        evs: &mut Vec<Ev>,
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(payload.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(payload.len());
        let mut start = 0;
        for (k, &end) in cuts.iter().enumerate() {
            let fin = k + 1 == cuts.len();
            let opk = if k == 0 { op } else { OpCode::Continuation };
            self.frame(fin, opk, &payload[start..end]);
            start = end;
            if k == 0 && !fin {
                if let Some(p) = ping {
                    self.frame(true, OpCode::Ping, p);
                    evs.push(Ev::Ping(p.clone()));
                }
            }
        }
    }
}

/// Encode `msgs` (+ close) as the peer of `role` would send them; returns the bytes and the expected events.
fn encode(role: Role, msgs: &[Msg], close: &Option<(Option<u16>, String)>) -> (Vec<u8>, Vec<Ev>) {
    let mut e = Enc {
        role,
        bytes: Vec::new(),
        n: 7,
    };
    let mut evs = Vec::new();
    for m in msgs {
        match m {
            Msg::Text(s, c, p) => {
                e.data(OpCode::Text, s.as_bytes(), c, p, &mut evs);
                evs.push(Ev::Text(s.clone()));
            }
            Msg::Binary(b, c, p) => {
                e.data(OpCode::Binary, b, c, p, &mut evs);
                evs.push(Ev::Binary(b.clone()));
            }
            Msg::Ping(p) => {
                e.frame(true, OpCode::Ping, p);
                evs.push(Ev::Ping(p.clone()));
            }
            Msg::Pong(p) => {
                e.frame(true, OpCode::Pong, p);
                evs.push(Ev::Pong(p.clone()));
            }
        }
    }
    if let Some((code, reason)) = close {
        let payload = match code {
            Some(c) => close_payload(*c, reason.as_bytes()),
            None => Vec::new(),
        };
        e.frame(true, OpCode::Close, &payload);
        evs.push(Ev::Close(*code, reason.clone()));
    }
    (e.bytes, evs)
}

/// Everything observable after feeding `bytes` split at `cuts`.
#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Ev>,
    sent: Vec<Ev>,
    raw_sent: Option<Vec<u8>>,
    state: State,
}

fn run(role: Role, bytes: &[u8], cuts: &[usize]) -> Outcome {
    let limits = Limits {
        max_message_size: 1 << 20,
        max_frame_size: 1 << 19,
        ..Limits::default()
    };
    let mut conn = Connection::new(role, limits);
    let events = feed_split(&mut conn, bytes, cuts);
    let mut raw = Vec::new();
    conn.poll_transmit(&mut raw);
    let peer_role = if role == Role::Server {
        Role::Client
    } else {
        Role::Server
    };
    let sent = feed(&mut Connection::new(peer_role, Limits::default()), &raw);
    // Server frames are unmasked and thus deterministic: compare them byte for byte too.
    let raw_sent = (role == Role::Server).then_some(raw);
    Outcome {
        events,
        sent,
        raw_sent,
        state: conn.state(),
    }
}

fn to_cuts(idx: &[Index], len: usize) -> Vec<usize> {
    idx.iter().map(|i| i.index(len + 1)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn valid_streams_decode_identically_under_any_split(
        msgs in prop::collection::vec(msg(), 0..8),
        close in close_frame(),
        idx in prop::collection::vec(any::<Index>(), 0..24),
        server_role in any::<bool>(),
    ) {
        let role = if server_role { Role::Server } else { Role::Client };
        let (bytes, expected) = encode(role, &msgs, &close);
        let whole = run(role, &bytes, &[]);
        prop_assert_eq!(&whole.events, &expected);
        let split = run(role, &bytes, &to_cuts(&idx, bytes.len()));
        prop_assert_eq!(&split, &whole);
        if bytes.len() <= 2048 {
            let cuts: Vec<usize> = (1..bytes.len()).collect();
            prop_assert_eq!(&run(role, &bytes, &cuts), &whole);
        }
    }

    #[test]
    fn corrupted_streams_give_the_same_outcome_under_any_split(
        msgs in prop::collection::vec(msg(), 1..6),
        close in close_frame(),
        flips in prop::collection::vec((any::<Index>(), 1u8..=255), 1..4),
        idx in prop::collection::vec(any::<Index>(), 0..24),
        server_role in any::<bool>(),
    ) {
        let role = if server_role { Role::Server } else { Role::Client };
        let (mut bytes, _) = encode(role, &msgs, &close);
        if bytes.is_empty() {
            return Ok(());
        }
        for (i, x) in &flips {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        let whole = run(role, &bytes, &[]);
        prop_assert_eq!(&run(role, &bytes, &to_cuts(&idx, bytes.len())), &whole);
    }

    #[test]
    fn garbage_gives_the_same_outcome_under_any_split(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        idx in prop::collection::vec(any::<Index>(), 0..32),
        server_role in any::<bool>(),
    ) {
        let role = if server_role { Role::Server } else { Role::Client };
        let whole = run(role, &bytes, &[]);
        prop_assert_eq!(&run(role, &bytes, &to_cuts(&idx, bytes.len())), &whole);
        let cuts: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(&run(role, &bytes, &cuts), &whole);
    }

    #[test]
    fn write_client_frame_round_trips(
        payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..10),
        key in any::<[u8; 4]>(),
        idx in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        for p in &payloads {
            write_client_frame(&mut bytes, true, OpCode::Binary, p, key);
        }
        let mut conn = server();
        let evs = feed_split(&mut conn, &bytes, &to_cuts(&idx, bytes.len()));
        let expected: Vec<Ev> = payloads.iter().map(|p| Ev::Binary(p.clone())).collect();
        prop_assert_eq!(evs, expected);
    }
}

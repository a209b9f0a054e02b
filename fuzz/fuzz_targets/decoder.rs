//! Differential fuzzing of the protocol core against itself under input chunking (STYLE practice 6).
//!
//! Input layout: byte 0 = flags (bits 0-3: number of chunk-size bytes, bit 4: allow RSV1, bit 5: small limits so
//! 1009 paths are reachable), then that many chunk sizes (each byte + 1), then the stream. The stream is fed to a
//! server-role and a client-role `Connection`, once whole and once in the given chunk sizes (cycled); events, the
//! error, the transmitted control frames and the final state must be identical. Panics are failures too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringws::proto::{Connection, Event, Limits, Role, State};

#[derive(Debug, PartialEq)]
enum Ev {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
    Error(u16, &'static str),
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Ev>,
    sent: Vec<Ev>,
    raw_sent: Option<Vec<u8>>,
    state: State,
}

fn conn(role: Role, flags: u8) -> Connection {
    let limits = if flags & 0x20 != 0 {
        Limits {
            max_frame_size: 300,
            max_message_size: 1000,
            ..Limits::default()
        }
    } else {
        Limits::default()
    };
    let mut c = Connection::new(role, limits);
    c.set_rsv1_allowed(flags & 0x10 != 0);
    c
}

fn feed(c: &mut Connection, data: &mut [u8], evs: &mut Vec<Ev>, failed: &mut bool) {
    let r = c.handle_read(data, &mut |e| {
        assert!(!*failed, "event after an error: {e:?}");
        evs.push(match e {
            Event::Text(s) => Ev::Text(s.to_owned()),
            Event::Binary(b) => Ev::Binary(b.to_vec()),
            Event::Ping(b) => Ev::Ping(b.to_vec()),
            Event::Pong(b) => Ev::Pong(b.to_vec()),
            Event::Close { code, reason } => Ev::Close(code, reason.to_owned()),
        })
    });
    if let Err(e) = r {
        if !*failed {
            evs.push(Ev::Error(e.code, e.reason));
            *failed = true;
        }
    }
}

fn run(role: Role, flags: u8, stream: &[u8], chunks: &[usize]) -> Outcome {
    let mut c = conn(role, flags);
    let mut data = stream.to_vec();
    let mut events = Vec::new();
    let mut failed = false;
    if chunks.is_empty() {
        feed(&mut c, &mut data, &mut events, &mut failed);
    } else {
        let mut pos = 0;
        let mut k = 0;
        while pos < data.len() {
            let end = (pos + chunks[k % chunks.len()]).min(data.len());
            feed(&mut c, &mut data[pos..end], &mut events, &mut failed);
            pos = end;
            k += 1;
        }
    }
    let mut raw = Vec::new();
    c.poll_transmit(&mut raw);
    // Decode what we sent with a peer of the other role (client-role frames are masked with random keys).
    let peer_role = if role == Role::Server {
        Role::Client
    } else {
        Role::Server
    };
    let mut peer = Connection::new(peer_role, Limits::default());
    let mut sent = Vec::new();
    let mut peer_failed = false;
    feed(&mut peer, &mut raw.clone(), &mut sent, &mut peer_failed);
    assert!(!peer_failed, "we sent an invalid frame: {sent:?}");
    let raw_sent = (role == Role::Server).then_some(raw);
    Outcome {
        events,
        sent,
        raw_sent,
        state: c.state(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let n = ((flags & 0x0f) as usize).min(rest.len());
    let chunks: Vec<usize> = rest[..n].iter().map(|&b| b as usize + 1).collect();
    let stream = &rest[n..];
    for role in [Role::Server, Role::Client] {
        let whole = run(role, flags, stream, &[]);
        let split = run(role, flags, stream, &chunks);
        assert_eq!(whole, split, "{role:?} chunks {chunks:?}");
        if stream.len() <= 4096 {
            let bytewise = run(role, flags, stream, &[1]);
            assert_eq!(whole, bytewise, "{role:?} bytewise");
        }
    }
});

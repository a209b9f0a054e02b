//! permessage-deflate through the server: negotiation in the 101, compressed echoes (what the server sends inflates
//! to what was sent), the per-message opt-out, control frames never compressed, a publish compressed once per
//! class for subscribers on every worker, dedicated mode's context takeover both ways, and the metrics.

mod server_util;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use ringws::deflate::{Deflater, Inflater};
use ringws::server::{
    Compression, Config, Handler, Message, Server, ServerHandle, Upgrade, UpgradeRequest, WebSocket,
};
use server_util::*;

/// Text commands: `sub:T` (answers `subscribed`), `all:T:payload` publishes to T, `raw:payload` echoes with
/// `send_uncompressed`; anything else is echoed with `send`.
struct App;

impl Handler for App {
    type Data = ();
    fn upgrade(&self, _: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn message(&self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        if let Message::Text(t) = msg {
            if let Some(topic) = t.strip_prefix("sub:") {
                ws.subscribe(topic);
                ws.send(Message::Text("subscribed"));
                return;
            }
            if let Some(rest) = t.strip_prefix("all:") {
                let (topic, payload) = rest.split_once(':').unwrap();
                ws.publish(topic, Message::Text(payload), false);
                return;
            }
            if let Some(rest) = t.strip_prefix("raw:") {
                ws.send_uncompressed(Message::Text(rest));
                return;
            }
        }
        ws.send(msg);
    }
}

fn start_app(compression: Compression) -> ServerHandle {
    let mut c: Config = config();
    c.compression = compression;
    Server::new(c, App).unwrap().start().unwrap()
}

/// Open a WebSocket offering `offer`; returns the stream and the `Sec-WebSocket-Extensions` answer, if any.
fn ws_offer(addr: SocketAddr, offer: &str) -> (TcpStream, Option<String>) {
    let mut s = tcp(addr);
    let req = format!(
        "GET /x HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: {offer}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101, "{head}");
    let ext = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| v.trim().to_string())
    });
    (s, ext)
}

/// A compressed client text message (RSV1, masked), no context takeover.
fn compressed_text(msg: &[u8]) -> Vec<u8> {
    let mut d = Deflater::new(15, 6);
    let mut z = Vec::new();
    d.compress(msg, &mut z).expect("compressible");
    frame_raw(0x80 | 0x40 | 1, &z, Some([1, 2, 3, 4]))
}

/// Read one frame; returns (RSV1 set, opcode, payload inflated when RSV1).
fn read_message(s: &mut TcpStream, inflater: &mut Inflater) -> (bool, u8, Vec<u8>) {
    let (b0, p) = read_frame(s);
    assert_eq!(b0 & 0x80, 0x80, "FIN");
    assert_eq!(b0 & 0x30, 0, "RSV2/RSV3 never set");
    let rsv1 = b0 & 0x40 != 0;
    let payload = if rsv1 {
        inflater.inflate(&p, false, 1 << 24).unwrap().to_vec()
    } else {
        p
    };
    (rsv1, b0 & 0x0f, payload)
}

fn json(i: usize) -> String {
    format!(
        "{{\"id\":{i},\"user\":\"user_{}\",\"event\":\"click\",\"ts\":{},\"value\":{}}}",
        i % 7,
        1_700_000_000 + i,
        i * 3
    )
}

#[test]
fn shared_mode_negotiates_and_compressed_echoes_inflate_to_what_was_sent() {
    let srv = start_app(Compression::Shared);
    let (mut s, ext) = ws_offer(
        srv.local_addr(),
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(
        ext.as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let mut inf = Inflater::new();
    // A compressible message, sent compressed: the echo is compressed and inflates to it.
    let msg = json(1).repeat(4);
    s.write_all(&compressed_text(msg.as_bytes())).unwrap();
    let (rsv1, op, p) = read_message(&mut s, &mut inf);
    assert!(rsv1, "a compressible echo goes compressed");
    assert_eq!((op, p), (1, msg.clone().into_bytes()));
    // The same sent plain: still compressed on the way back (the server's choice).
    s.write_all(&frame(true, 1, msg.as_bytes())).unwrap();
    let (rsv1, _, p) = read_message(&mut s, &mut inf);
    assert!(rsv1);
    assert_eq!(p, msg.as_bytes());
    // Under the threshold: plain.
    s.write_all(&frame(true, 1, b"short")).unwrap();
    assert_eq!(
        read_message(&mut s, &mut inf),
        (false, 1, b"short".to_vec())
    );
    // Incompressible bytes: plain (no gain).
    let mut x: u32 = 99;
    let noise: Vec<u8> = (0..4000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    s.write_all(&frame(true, 2, &noise)).unwrap();
    assert_eq!(read_message(&mut s, &mut inf), (false, 2, noise));
    // The opt-out.
    let raw = format!("raw:{msg}");
    s.write_all(&frame(true, 1, raw.as_bytes())).unwrap();
    assert_eq!(
        read_message(&mut s, &mut inf),
        (false, 1, msg.clone().into_bytes())
    );
    // A ping's pong is never compressed, even with a compressible payload.
    let ping =
        b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    s.write_all(&frame(true, 9, ping)).unwrap();
    assert_eq!(read_message(&mut s, &mut inf), (false, 10, ping.to_vec()));
    // A fragmented compressed message with a ping in the middle.
    let whole = compressed_text(msg.as_bytes());
    let z = {
        let mut d = Deflater::new(15, 6);
        let mut z = Vec::new();
        d.compress(msg.as_bytes(), &mut z).unwrap();
        z
    };
    assert!(whole.len() > z.len());
    let (a, b) = z.split_at(z.len() / 2);
    s.write_all(&frame_raw(0x40 | 1, a, Some([9, 9, 9, 9])))
        .unwrap();
    s.write_all(&frame(true, 9, b"p")).unwrap();
    s.write_all(&frame_raw(0x80, b, Some([7, 7, 7, 7])))
        .unwrap();
    assert_eq!(read_message(&mut s, &mut inf), (false, 10, b"p".to_vec()));
    let (rsv1, op, p) = read_message(&mut s, &mut inf);
    assert!(rsv1);
    assert_eq!((op, p), (1, msg.into_bytes()));

    let m = srv.context().metrics_text();
    assert!(metric(&m, "ringws_deflate_messages_total") >= 3, "{m}");
    assert_eq!(metric(&m, "ringws_inflate_messages_total"), 2);
    assert!(
        metric(&m, "ringws_deflate_bytes_out_total") < metric(&m, "ringws_deflate_bytes_in_total")
    );
    let codec_secs: f64 = m
        .lines()
        .filter(|l| l.starts_with("ringws_deflate_seconds_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(codec_secs > 0.0, "time in the codec is counted: {m}");
    for reason in ["threshold", "no_gain", "opt_out"] {
        let line = "ringws_deflate_skipped_total{worker=";
        let n: u64 = m
            .lines()
            .filter(|l| l.starts_with(line) && l.contains(&format!("reason=\"{reason}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(n >= 1, "skipped {reason}: {m}");
    }
    srv.shutdown();
}

#[test]
fn corrupt_and_oversized_compressed_messages_fail_the_connection_and_are_counted() {
    let mut c = config();
    c.max_message_size = 1000;
    c.max_frame_size = 1000;
    let srv = Server::new(c, App).unwrap().start().unwrap();
    // A bomb: 100 KB of zeros compress to ~100 bytes; inflating stops past 1000 bytes with 1009.
    let (mut s, ext) = ws_offer(srv.local_addr(), "permessage-deflate");
    assert!(ext.is_some());
    s.write_all(&compressed_text(&vec![b'a'; 100_000])).unwrap();
    assert_eq!(expect_close(&mut s), Some(1009));
    let (mut s, _) = ws_offer(srv.local_addr(), "permessage-deflate");
    s.write_all(&frame_raw(
        0x80 | 0x40 | 2,
        &[0xff, 0xff, 0xff, 0xff],
        Some([1, 2, 3, 4]),
    ))
    .unwrap();
    assert_eq!(expect_close(&mut s), Some(1007));
    // Without the extension, RSV1 is a protocol error.
    let mut s = ws_raw(srv.local_addr(), "/x");
    s.write_all(&compressed_text(
        b"hello hello hello hello hello hello hello hello",
    ))
    .unwrap();
    assert_eq!(expect_close(&mut s), Some(1002));
    let m = srv.context().metrics_text();
    let kind = |k: &str| -> u64 {
        m.lines()
            .filter(|l| {
                l.starts_with("ringws_inflate_errors_total{")
                    && l.contains(&format!("kind=\"{k}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!((kind("too_big"), kind("corrupt")), (1, 1), "{m}");
    srv.shutdown();
}

#[test]
fn off_ignores_offers() {
    let srv = start_app(Compression::Off);
    let (mut s, ext) = ws_offer(srv.local_addr(), "permessage-deflate");
    assert_eq!(ext, None);
    let msg = json(2).repeat(3);
    assert_echo(&mut s, msg.as_bytes());
    srv.shutdown();
}

#[test]
fn a_publish_is_compressed_once_per_class_for_subscribers_on_every_worker() {
    let srv = start_app(Compression::Shared);
    let a = srv.local_addr();
    // Subscribers of two classes (window 15 and window 10), spread over both workers by SO_REUSEPORT, plus a
    // subscriber without the extension.
    let mut subs = Vec::new();
    for i in 0..12 {
        let offer = if i % 2 == 0 {
            "permessage-deflate"
        } else {
            "permessage-deflate; server_max_window_bits=10"
        };
        let (mut s, ext) = ws_offer(a, offer);
        assert!(ext.is_some());
        s.write_all(&frame(true, 1, b"sub:news")).unwrap();
        assert_eq!(read_frame(&mut s), (0x81, b"subscribed".to_vec()));
        subs.push((i % 2, s));
    }
    let mut plain = ws_raw(a, "/x");
    plain.write_all(&frame(true, 1, b"sub:news")).unwrap();
    assert_eq!(read_frame(&mut plain), (0x81, b"subscribed".to_vec()));

    let m = srv.context().metrics_text();
    for w in 0..2 {
        let on_worker: u64 = m
            .lines()
            .filter(|l| {
                l.starts_with("ringws_websockets{") && l.contains(&format!("worker=\"{w}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(on_worker >= 1, "subscribers on worker {w}: {m}");
    }
    let before = metric(&m, "ringws_deflate_publish_compressions_total");
    let publishes = 5;
    let mut sent = Vec::new();
    for i in 0..publishes {
        let payload = json(i).repeat(3);
        let cmd = format!("all:news:{payload}");
        subs[0]
            .1
            .write_all(&frame(true, 1, cmd.as_bytes()))
            .unwrap();
        sent.push(payload);
    }
    let mut inf = Inflater::new();
    let mut frames_by_class: [Vec<Vec<u8>>; 2] = Default::default();
    for (class, s) in &mut subs {
        for want in &sent {
            let (b0, p) = read_frame(s);
            assert_eq!(b0, 0x80 | 0x40 | 1, "compressed text");
            assert_eq!(inf.inflate(&p, true, 1 << 20).unwrap(), want.as_bytes());
            frames_by_class[*class].push(p);
        }
    }
    for want in &sent {
        assert_eq!(read_frame(&mut plain), (0x81, want.clone().into_bytes()));
    }
    // Every subscriber of a class got the very same compressed bytes.
    for class in &frames_by_class {
        for (i, f) in class.iter().enumerate() {
            assert_eq!(f, &class[i % publishes], "same frame for the whole class");
        }
    }
    let m = srv.context().metrics_text();
    let compressions = metric(&m, "ringws_deflate_publish_compressions_total") - before;
    assert_eq!(
        compressions,
        2 * publishes as u64,
        "one compression per publish and class, whatever the subscribers and workers: {m}"
    );
    srv.shutdown();
}

#[test]
fn dedicated_mode_keeps_context_both_ways_and_survives_broadcasts() {
    let srv = start_app(Compression::Dedicated { window_bits: 12 });
    let (mut s, ext) = ws_offer(
        srv.local_addr(),
        "permessage-deflate; client_max_window_bits",
    );
    assert_eq!(
        ext.as_deref(),
        Some("permessage-deflate; client_max_window_bits=12")
    );
    s.write_all(&frame(true, 1, b"sub:t")).unwrap();
    assert_eq!(read_frame(&mut s).1, b"subscribed");
    // The client compresses with context takeover (one stream, no reset), the server inflates with its history;
    // the server does the same, so the client's inflater is never reset either.
    let mut client = Deflater::new(12, 6);
    let mut inf = Inflater::new();
    let mut window = ringws::deflate::InflateHistory::new(12);
    let mut sizes = Vec::new();
    for i in 0..6 {
        let msg = if i == 3 {
            // A broadcast in the middle: compressed without context, then direct messages again.
            format!("all:t:{}", json(100).repeat(3))
        } else {
            json(i).repeat(3)
        };
        let mut z = Vec::new();
        client.compress(msg.as_bytes(), &mut z).unwrap();
        s.write_all(&frame_raw(0x80 | 0x40 | 1, &z, Some([5, 6, 7, 8])))
            .unwrap();
        let (b0, p) = read_frame(&mut s);
        assert_eq!(b0, 0x80 | 0x40 | 1);
        sizes.push(p.len());
        let mut primed = inf.with_history(&mut window);
        let out = ringws::proto::Decompressor::decompress(&mut primed, &p, true, 1 << 20).unwrap();
        let want = msg.strip_prefix("all:t:").unwrap_or(&msg);
        assert_eq!(out, want.as_bytes(), "message {i}");
    }
    assert!(
        sizes[1] < sizes[0],
        "context takeover: the second similar message is smaller ({sizes:?})"
    );
    srv.shutdown();
}

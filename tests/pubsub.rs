//! Pub/sub across workers: every subscriber on every worker gets every publish exactly once and in order;
//! exclude-sender works; a subscriber that never reads is dropped from (or closed by) the slow-consumer policy
//! while the others keep receiving, and memory stays bounded.

mod server_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringws::server::{
    Config, Handler, Message, Server, ServerHandle, SlowConsumerPolicy, Upgrade, UpgradeRequest,
    WebSocket,
};
use server_util::*;

/// Text commands: `sub:T`, `pub:T:payload` (excluding the sender), `all:T:payload` (including the sender).
struct Bus;

impl Handler for Bus {
    type Data = ();
    fn upgrade(&self, _: &UpgradeRequest<'_>) -> Upgrade<()> {
        Upgrade::accept(())
    }
    fn message(&self, ws: &mut WebSocket<'_, ()>, msg: Message<'_>) {
        let Message::Text(t) = msg else { return };
        if let Some(topic) = t.strip_prefix("sub:") {
            ws.subscribe(topic);
            ws.send(Message::Text("subscribed"));
        } else if let Some(rest) = t.strip_prefix("pub:") {
            let (topic, payload) = rest.split_once(':').unwrap();
            ws.publish(topic, Message::Text(payload), true);
        } else if let Some(rest) = t.strip_prefix("all:") {
            let (topic, payload) = rest.split_once(':').unwrap();
            ws.publish(topic, Message::Text(payload), false);
        }
    }
}

fn start_bus(c: Config) -> ServerHandle {
    Server::new(c, Bus).unwrap().start().unwrap()
}

fn text(s: &mut TcpStream) -> String {
    let (b0, p) = read_frame(s);
    assert_eq!(b0, 0x81);
    String::from_utf8(p).unwrap()
}

fn subscribe(s: &mut TcpStream, topic: &str) {
    s.write_all(&frame(true, 1, format!("sub:{topic}").as_bytes()))
        .unwrap();
    assert_eq!(text(s), "subscribed");
}

/// Open subscribers until both workers hold at least two (SO_REUSEPORT picks the worker).
fn subscribers_on_every_worker(srv: &ServerHandle, topic: &str) -> Vec<TcpStream> {
    let a = srv.local_addr();
    let mut subs = Vec::new();
    for _ in 0..64 {
        let mut s = ws_raw(a, "/");
        subscribe(&mut s, topic);
        subs.push(s);
        let m = srv.context().metrics_text();
        let per: Vec<u64> = (0..2)
            .map(|w| {
                m.lines()
                    .filter(|l| {
                        l.starts_with("ringws_websockets{")
                            && l.contains(&format!("worker=\"{w}\""))
                    })
                    .filter_map(|l| l.rsplit(" ").next()?.parse::<u64>().ok())
                    .sum()
            })
            .collect();
        if subs.len() >= 6 && per.iter().all(|&n| n >= 2) {
            return subs;
        }
    }
    panic!("connections never reached both workers");
}

#[test]
fn every_subscriber_on_every_worker_gets_every_publish_once_in_order() {
    let srv = start_bus(config());
    let mut subs = subscribers_on_every_worker(&srv, "news");
    let mut publisher = ws_raw(srv.local_addr(), "/");
    let n = 300;
    for i in 0..n {
        publisher
            .write_all(&frame(true, 1, format!("pub:news:item {i}").as_bytes()))
            .unwrap();
    }
    for s in subs.iter_mut() {
        for i in 0..n {
            assert_eq!(text(s), format!("item {i}"));
        }
    }
    // Exactly once: nothing more arrives.
    for s in subs.iter_mut() {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(s.read(&mut b).is_err(), "duplicate delivery");
    }
    // The publisher (not subscribed) got nothing.
    publisher
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(publisher.read(&mut [0u8; 1]).is_err());
}

#[test]
fn exclude_sender_skips_only_the_sender() {
    let srv = start_bus(config());
    let a = srv.local_addr();
    let mut x = ws_raw(a, "/");
    let mut y = ws_raw(a, "/");
    subscribe(&mut x, "t");
    subscribe(&mut y, "t");
    x.write_all(&frame(true, 1, b"pub:t:from x")).unwrap();
    assert_eq!(text(&mut y), "from x");
    x.write_all(&frame(true, 1, b"all:t:to all")).unwrap();
    assert_eq!(
        text(&mut x),
        "to all",
        "x got its own publish only when not excluded"
    );
    assert_eq!(text(&mut y), "to all");
}

fn never_reading_subscriber(a: std::net::SocketAddr, topic: &str) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    subscribe(&mut s, topic);
    s
}

/// The metrics once `name` is non-zero (or after 5 s). The slow subscriber's worker counts its drops and closes;
/// it may still be working through its mailbox when the healthy subscriber, perhaps on the other worker, has its
/// last message.
fn counted(srv: &ServerHandle, name: &str) -> String {
    let t = Instant::now();
    loop {
        let m = srv.context().metrics_text();
        if metric(&m, name) > 0 || t.elapsed() > Duration::from_secs(5) {
            return m;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn flood(publisher: &mut TcpStream, reader: &mut TcpStream, n: usize) {
    let payload = "x".repeat(2000);
    for i in 0..n {
        publisher
            .write_all(&frame(true, 1, format!("pub:big:{i} {payload}").as_bytes()))
            .unwrap();
        // The healthy subscriber keeps up, in order.
        let got = text(reader);
        assert!(
            got.starts_with(&format!("{i} ")),
            "healthy subscriber out of order at {i}"
        );
    }
}

#[test]
fn slow_subscriber_drop_policy_drops_for_it_only_and_memory_stays_bounded() {
    let mut c = config();
    c.max_backpressure = 32 << 10;
    c.slow_consumer = SlowConsumerPolicy::Drop;
    let srv = start_bus(c);
    let a = srv.local_addr();
    let _slow = never_reading_subscriber(a, "big");
    let mut good = ws_raw(a, "/");
    subscribe(&mut good, "big");
    let mut publisher = ws_raw(a, "/");
    flood(&mut publisher, &mut good, 3000);
    let m = counted(&srv, "ringws_dropped_messages_total");
    assert!(metric(&m, "ringws_dropped_messages_total") > 0, "{m}");
    std::thread::sleep(Duration::from_millis(1100));
    let queued = metric(
        &srv.context().metrics_text(),
        "ringws_outbound_queued_bytes",
    );
    assert!(queued <= (32 << 10) + 4096, "queued {queued}");
}

#[test]
fn slow_subscriber_close_policy_closes_it_with_1008() {
    let mut c = config();
    c.max_backpressure = 32 << 10;
    c.slow_consumer = SlowConsumerPolicy::Close;
    let srv = start_bus(c);
    let a = srv.local_addr();
    let mut slow = never_reading_subscriber(a, "big");
    let mut good = ws_raw(a, "/");
    subscribe(&mut good, "big");
    let mut publisher = ws_raw(a, "/");
    flood(&mut publisher, &mut good, 3000);
    let m = counted(&srv, "ringws_slow_consumer_closes_total");
    assert!(metric(&m, "ringws_slow_consumer_closes_total") >= 1, "{m}");
    // Now read: what was queued, then the close frame with 1008.
    slow.set_nonblocking(false).unwrap();
    let t = Instant::now();
    let code = loop {
        assert!(t.elapsed() < TIMEOUT, "no close frame");
        let (b0, p) = read_frame(&mut slow);
        if b0 & 0x0f == 8 {
            break u16::from_be_bytes([p[0], p[1]]);
        }
    };
    assert_eq!(code, 1008);
}

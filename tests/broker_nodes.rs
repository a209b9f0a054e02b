//! Pub/sub across server nodes through a real `redis-server` (several in-process servers, each with its own
//! bridge): every publish reaches every subscriber on every node exactly once and in order per publisher; a node
//! subscribes a channel only while it has subscribers; Redis restarted mid-stream; Redis absent at start (the demo
//! serves locally and says degraded); a slow subscriber on one node does not hold up the other node.
#![cfg(feature = "redis")]

mod broker_util;
mod server_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use broker_util::{fast_broker, free_port, wait_until, RedisServer};
use ringws::broker::{BrokerSnapshot, Health};
use ringws::server::{
    Config, Handler, Message, Server, ServerHandle, SlowConsumerPolicy, Upgrade, UpgradeRequest,
    WebSocket,
};
use server_util::{config, frame, get, read_frame, ws_raw, TIMEOUT};

const LONG: Duration = Duration::from_secs(10);

/// Text commands: `sub:T` (answers `subscribed`), `pub:T:payload` (to every subscriber but the sender).
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
            if let Some((topic, payload)) = rest.split_once(':') {
                ws.publish(topic, Message::Text(payload), true);
            }
        }
    }
}

fn node_config(redis_url: &str) -> Config {
    let mut c = config();
    c.broker = Some(fast_broker(redis_url));
    c
}

fn bus_node(c: Config) -> ServerHandle {
    Server::new(c, Bus).unwrap().start().unwrap()
}

fn health(n: &ServerHandle) -> Option<Health> {
    n.context().broker_health()
}

fn bstats(n: &ServerHandle) -> BrokerSnapshot {
    n.context().broker_stats().expect("broker configured")
}

fn text(s: &mut TcpStream) -> String {
    let (b0, p) = read_frame(s);
    assert_eq!(b0, 0x81);
    String::from_utf8(p).unwrap()
}

fn send(s: &mut TcpStream, t: &str) {
    s.write_all(&frame(true, 1, t.as_bytes())).unwrap();
}

fn subscriber(a: SocketAddr, topic: &str) -> TcpStream {
    let mut s = ws_raw(a, "/");
    send(&mut s, &format!("sub:{topic}"));
    assert_eq!(text(&mut s), "subscribed");
    s
}

fn nothing_more(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(s.read(&mut [0u8; 1]).is_err(), "an extra delivery arrived");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
}

#[test]
fn three_nodes_every_publish_reaches_every_subscriber_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let nodes: Vec<ServerHandle> = (0..3)
        .map(|_| bus_node(node_config(&redis.url())))
        .collect();
    assert!(wait_until(LONG, || nodes
        .iter()
        .all(|n| health(n) == Some(Health::Up))));
    let mut subs: Vec<TcpStream> = nodes
        .iter()
        .flat_map(|n| {
            [
                subscriber(n.local_addr(), "room"),
                subscriber(n.local_addr(), "room"),
            ]
        })
        .collect();
    // One channel subscription per node, however many clients and workers it has.
    assert!(wait_until(LONG, || redis.numsub("ringws:room") == 3));
    // A topic with a subscriber on node 0 only: only node 0 subscribes its channel.
    let mut solo = subscriber(nodes[0].local_addr(), "solo");
    assert!(wait_until(LONG, || redis.numsub("ringws:solo") == 1));
    assert!(
        wait_until(LONG, || bstats(&nodes[0]).channels == 2),
        "node 0 holds `room` and `solo`"
    );
    assert_eq!(bstats(&nodes[1]).channels, 1, "node 1 holds only `room`");

    const N: usize = 100;
    let mut pubs: Vec<TcpStream> = nodes.iter().map(|n| ws_raw(n.local_addr(), "/")).collect();
    for i in 0..N {
        for (k, p) in pubs.iter_mut().enumerate() {
            send(p, &format!("pub:room:n{k}-{i}"));
        }
    }
    send(&mut pubs[2], "pub:solo:only for node 0");
    for s in subs.iter_mut() {
        let mut next = [0usize; 3];
        for _ in 0..3 * N {
            let m = text(s);
            let (k, i) = m[1..].split_once('-').unwrap();
            let (k, i): (usize, usize) = (k.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[k], "publisher {k} out of order or repeated: {m}");
            next[k] += 1;
        }
        nothing_more(s);
    }
    assert_eq!(text(&mut solo), "only for node 0");
    nothing_more(&mut solo);
    for n in &nodes {
        let s = bstats(n);
        assert_eq!(
            s.published,
            N as u64 + u64::from(n.local_addr() == nodes[2].local_addr())
        );
        assert_eq!(
            (s.lost, s.drop_repeat, s.publish_drops(), s.drop_local_full),
            (0, 0, 0, 0)
        );
    }
    // The last subscriber of `solo` leaves: after the linger node 0 unsubscribes.
    drop(solo);
    assert!(wait_until(LONG, || redis.numsub("ringws:solo") == 0));
}

/// Read text frames into `out` until `stop` and a quiet read timeout.
fn collect(
    mut s: TcpStream,
    out: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            let mut h = [0u8; 2];
            match s.read_exact(&mut h) {
                Ok(()) => {}
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(_) => continue,
            }
            let len = (h[1] & 0x7f) as usize;
            assert!(len < 126, "short test messages only");
            let mut p = vec![0u8; len];
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            s.read_exact(&mut p).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            out.lock().unwrap().push(String::from_utf8(p).unwrap());
        }
    })
}

#[test]
fn redis_restart_mid_stream_resumes_without_duplicates_and_counts_losses() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let a = bus_node(node_config(&redis.url()));
    let b = bus_node(node_config(&redis.url()));
    let sub = subscriber(b.local_addr(), "s");
    assert!(wait_until(LONG, || health(&a) == Some(Health::Up)
        && redis.numsub("ringws:s") == 1));
    let got = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = collect(sub, got.clone(), stop.clone());
    let indexes = |g: &Mutex<Vec<String>>| -> Vec<u64> {
        g.lock()
            .unwrap()
            .iter()
            .map(|s| s.parse().unwrap())
            .collect()
    };

    let mut publisher = ws_raw(a.local_addr(), "/");
    let mut sent = 0u64;
    let mut publish_for = |d: Duration, sent: &mut u64| {
        let end = Instant::now() + d;
        while Instant::now() < end {
            send(&mut publisher, &format!("pub:s:{sent}"));
            *sent += 1;
            thread::sleep(Duration::from_millis(2));
        }
    };
    publish_for(Duration::from_millis(300), &mut sent);
    redis.stop();
    let cut = sent;
    publish_for(Duration::from_millis(400), &mut sent);
    redis.start_again();
    // Keep publishing until 100 messages from after the crash have arrived (by themselves: nobody intervenes).
    let t = Instant::now();
    while t.elapsed() < LONG && indexes(&got).iter().filter(|&&i| i > cut).count() < 100 {
        publish_for(Duration::from_millis(50), &mut sent);
    }
    // Every publish was handled by node a (sent to Redis or dropped), and the tail had time to arrive.
    assert!(wait_until(LONG, || {
        let s = bstats(&a);
        s.published + s.publish_drops() == sent
    }));
    thread::sleep(Duration::from_millis(400));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();

    let got = indexes(&got);
    assert!(
        got.iter().filter(|&&i| i > cut).count() >= 100,
        "delivery did not resume"
    );
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "duplicate or reordered delivery"
    );
    let (sa, sb) = (bstats(&a), bstats(&b));
    let missing = sent - got.len() as u64;
    let counted = sa.publish_drops() + sb.lost + sb.drop_inbound_full + sb.drop_local_full;
    assert!(missing > 0, "the outage should have lost something");
    assert!(
        counted >= missing,
        "{missing} missing, {counted} counted: a {sa:?} b {sb:?}"
    );
    assert!(sb.resubscribed >= 1);
    let m = b.context().metrics_text();
    assert!(m.contains("ringws_broker_connected 1\n"));
    assert!(m.contains(&format!("ringws_broker_lost_total {}\n", sb.lost)));
}

/// The body of an HTTP response.
fn body(resp: &str) -> &str {
    resp.split("\r\n\r\n").nth(1).unwrap_or("")
}

fn chat(a: SocketAddr) -> TcpStream {
    let mut s = ws_raw(a, "/chat");
    assert!(text(&mut s).contains("\"welcome\""));
    s
}

/// Read chat events until one contains `needle`.
fn chat_until(s: &mut TcpStream, needle: &str) -> String {
    loop {
        let m = text(s);
        if m.contains(needle) {
            return m;
        }
    }
}

#[test]
fn redis_absent_at_start_the_demo_serves_locally_then_spans_nodes() {
    let port = free_port();
    let Some(mut redis) = RedisServer::not_started(port) else {
        return;
    };
    let a = server_util::start(node_config(&redis.url()));
    let b = server_util::start(node_config(&redis.url()));
    assert!(wait_until(LONG, || health(&a) == Some(Health::Down)));
    let (st, resp) = get(a.local_addr(), "/healthz");
    assert_eq!((st, body(&resp)), (200, "degraded: redis down\n"));

    // Local chat works without Redis.
    let (mut x, mut y) = (chat(a.local_addr()), chat(a.local_addr()));
    send(&mut x, r#"{"type":"join","room":"lobby"}"#);
    chat_until(&mut x, "joined");
    send(&mut y, r#"{"type":"join","room":"lobby"}"#);
    chat_until(&mut y, "joined");
    send(
        &mut y,
        r#"{"type":"say","room":"lobby","text":"local hello"}"#,
    );
    chat_until(&mut x, "local hello");
    assert!(
        bstats(&a).drop_disconnected > 0,
        "publishes while down are counted"
    );

    redis.start_again();
    for n in [&a, &b] {
        assert!(wait_until(LONG, || body(
            &get(n.local_addr(), "/healthz").1
        ) == "ok\n"));
    }
    assert!(wait_until(LONG, || redis.numsub("ringws:room:lobby") == 1));
    let mut z = chat(b.local_addr());
    send(&mut z, r#"{"type":"join","room":"lobby"}"#);
    assert!(wait_until(LONG, || redis.numsub("ringws:room:lobby") == 2));
    // z's own join notice arrives on node a too; then a message crosses nodes.
    chat_until(&mut x, "joined");
    send(
        &mut z,
        r#"{"type":"say","room":"lobby","text":"hello from node b"}"#,
    );
    chat_until(&mut x, "hello from node b");
    send(
        &mut x,
        r#"{"type":"say","room":"lobby","text":"hello back from a"}"#,
    );
    chat_until(&mut z, "hello back from a");

    let (st, resp) = get(a.local_addr(), "/metrics");
    assert_eq!(st, 200);
    if let Some(out) = promtool(body(&resp)) {
        assert!(
            out.status.success(),
            "promtool: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(body(&resp).contains("ringws_broker_drops_total{reason=\"disconnected\"}"));
}

/// `promtool check metrics` on `text`, if promtool is installed.
fn promtool(text: &str) -> Option<std::process::Output> {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    child.wait_with_output().ok()
}

/// A subscriber that never reads, with a tiny receive buffer (it fills its queue at once).
fn never_reading_subscriber(a: SocketAddr, topic: &str) -> TcpStream {
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
    assert_eq!(server_util::read_head(&mut s).0, 101);
    send(&mut s, &format!("sub:{topic}"));
    s
}

#[test]
fn a_slow_subscriber_on_one_node_does_not_hold_up_the_other() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    // The default 1 MiB of backpressure: room for the bursts Redis delivers in, far less than the 6 MB sent.
    let mut c = node_config(&redis.url());
    c.slow_consumer = SlowConsumerPolicy::Drop;
    let a = bus_node(c.clone());
    let b = bus_node(c);
    let _slow = never_reading_subscriber(a.local_addr(), "big");
    let mut fast_a = subscriber(a.local_addr(), "big");
    let mut fast_b = subscriber(b.local_addr(), "big");
    assert!(wait_until(LONG, || redis.numsub("ringws:big") == 2));

    // Node a's fast subscriber reads on its own thread; it must see everything too.
    const M: usize = 3000;
    let reader_a = thread::spawn(move || {
        let mut seen = Vec::with_capacity(M);
        for _ in 0..M {
            let m = text(&mut fast_a);
            seen.push(m.split_once(' ').unwrap().0.parse::<usize>().unwrap());
        }
        seen
    });
    let payload = "x".repeat(2000);
    let mut publisher = ws_raw(b.local_addr(), "/");
    for i in 0..M {
        send(&mut publisher, &format!("pub:big:{i} {payload}"));
        // Node b's own subscriber keeps up with every publish, in order.
        let got = text(&mut fast_b);
        assert!(
            got.starts_with(&format!("{i} ")),
            "node b's subscriber out of order at {i}"
        );
    }
    let seen = reader_a.join().unwrap();
    assert_eq!(
        seen,
        (0..M).collect::<Vec<_>>(),
        "node a's fast subscriber missed or reordered"
    );
    let ma = a.context().metrics_text();
    assert!(
        server_util::metric(&ma, "ringws_dropped_messages_total") > 0,
        "the slow one was skipped"
    );
    let (sa, sb) = (bstats(&a), bstats(&b));
    assert_eq!(
        (sa.delivered, sa.lost, sa.drop_local_full),
        (M as u64, 0, 0)
    );
    assert_eq!(sb.publish_drops(), 0);
}

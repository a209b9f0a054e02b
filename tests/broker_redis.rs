//! The Redis bridge against a real `redis-server` (started per test on a free loopback port, always killed):
//! exactly-once delivery in order between two nodes, own echoes skipped, subscription only while wanted, the linger,
//! Redis restarted mid-stream, Redis absent at start, and a deaf (stopped) Redis caught by the probe.
#![cfg(feature = "redis")]

mod broker_util;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use broker_util::*;
use bytes::Bytes;
use ringws::broker::{BackoffPolicy, Bridge, BrokerConfig, Health};

const LONG: Duration = Duration::from_secs(10);

fn config(url: &str, node: u64) -> BrokerConfig {
    let mut c = fast_broker(url);
    c.node_id = Some(node);
    c
}

fn start(url: &str, node: u64) -> (Bridge, Arc<Collect>) {
    let sink = Arc::new(Collect::default());
    (
        Bridge::start(config(url, node), sink.clone()).unwrap(),
        sink,
    )
}

fn topic(t: &str) -> Arc<str> {
    Arc::from(t)
}

fn up(b: &Bridge) -> bool {
    b.health() == Health::Up
}

#[test]
fn two_nodes_exchange_every_publish_exactly_once_in_order() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, sa) = start(&redis.url(), 0xa);
    let (b, sb) = start(&redis.url(), 0xb);
    a.want("room");
    b.want("room");
    assert!(wait_until(LONG, || up(&a)
        && up(&b)
        && redis.numsub("ringws:room") == 2));

    let room = topic("room");
    const N: usize = 300;
    for i in 0..N {
        assert!(a.publish(room.clone(), Bytes::from(format!("a{i}")), true));
        assert!(b.publish(room.clone(), Bytes::from(format!("b{i}")), true));
    }
    // A binary payload that is not UTF-8 travels as binary.
    assert!(a.publish(room.clone(), Bytes::from_static(&[0xff, 0x00, 0xfe]), false));
    assert!(sa.wait_for(N, LONG), "a got {}", sa.len());
    assert!(sb.wait_for(N + 1, LONG), "b got {}", sb.len());
    assert!(wait_until(LONG, || a.stats().own_echoes == N as u64 + 1
        && b.stats().own_echoes == N as u64));
    thread::sleep(Duration::from_millis(200)); // anything extra would show now

    let want_a: Vec<String> = (0..N).map(|i| format!("b{i}")).collect();
    assert_eq!(
        sa.texts(),
        want_a,
        "a sees b's publishes once each, in order, and none of its own"
    );
    let got_b = sb.all();
    assert_eq!(got_b.len(), N + 1);
    for (i, (t, p, text)) in got_b[..N].iter().enumerate() {
        assert_eq!(
            (t.as_str(), &p[..], *text),
            ("room", format!("a{i}").as_bytes(), true)
        );
    }
    assert_eq!(&got_b[N].1[..], &[0xff, 0x00, 0xfe]);
    assert!(!got_b[N].2, "binary stays binary");

    for (s, published, delivered) in [(a.stats(), N + 1, N), (b.stats(), N, N + 1)] {
        assert_eq!(s.published, published as u64);
        assert_eq!(s.delivered, delivered as u64);
        assert_eq!(s.received, delivered as u64);
        assert_eq!((s.lost, s.drop_repeat, s.drop_malformed), (0, 0, 0));
        assert_eq!(s.publish_drops(), 0);
        assert_eq!((s.connected, s.channels, s.subscribes), (1, 1, 1));
    }
}

#[test]
fn a_node_subscribes_only_topics_it_wants() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, sa) = start(&redis.url(), 1);
    let (b, sb) = start(&redis.url(), 2);
    a.want("only-a");
    a.want("only-a"); // a second worker of node a: still one subscription
    assert!(wait_until(LONG, || up(&a)
        && up(&b)
        && redis.numsub("ringws:only-a") == 1));
    let topics: Vec<String> = redis
        .channels("ringws:*")
        .into_iter()
        .filter(|c| !c.contains("~probe~"))
        .collect();
    assert_eq!(
        topics,
        ["ringws:only-a"],
        "b wants nothing, so it subscribed nothing"
    );
    assert_eq!(b.stats().channels, 0);
    assert_eq!(a.stats().channels, 1);

    // b can still publish to it, and a receives; b's own sink sees nothing.
    assert!(b.publish(topic("only-a"), Bytes::from_static(b"hi"), true));
    assert!(sa.wait_for(1, LONG));
    assert_eq!(sa.texts(), ["hi"]);
    // A topic nobody wants is published into the void: no subscriber anywhere, nothing delivered.
    assert!(a.publish(topic("nobody"), Bytes::from_static(b"x"), true));
    thread::sleep(Duration::from_millis(200));
    assert_eq!(sb.len(), 0);
    assert_eq!(sa.len(), 1);
    assert_eq!(redis.numsub("ringws:nobody"), 0);
}

#[test]
fn unsubscribe_waits_for_the_linger_and_flaps_cost_nothing() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, _sa) = start(&redis.url(), 1);
    a.want("t");
    assert!(wait_until(LONG, || redis.numsub("ringws:t") == 1));

    // Leave and come back inside the linger (400 ms): the channel never goes away.
    a.unwant("t");
    thread::sleep(Duration::from_millis(150));
    assert_eq!(redis.numsub("ringws:t"), 1);
    a.want("t");
    thread::sleep(Duration::from_millis(600));
    assert_eq!(redis.numsub("ringws:t"), 1);
    let s = a.stats();
    assert_eq!(
        (s.subscribes, s.unsubscribes),
        (1, 0),
        "the flap did not touch Redis"
    );

    // Leave for good: still subscribed early in the linger, gone after it. The instant is taken before the call,
    // which starts the linger, so `left` is never later than the linger's start.
    let left = Instant::now();
    a.unwant("t");
    thread::sleep(Duration::from_millis(150));
    assert_eq!(
        redis.numsub("ringws:t"),
        1,
        "unsubscribed before the linger ended"
    );
    assert!(wait_until(LONG, || redis.numsub("ringws:t") == 0));
    assert!(left.elapsed() >= Duration::from_millis(400));
    // The bridge counts the unsubscribe when Redis confirms it, a moment after Redis shows it.
    assert!(wait_until(LONG, || {
        let s = a.stats();
        (s.unsubscribes, s.channels) == (1, 0)
    }));
}

/// Publish "0", "1", ... on `a` every 2 ms until told to stop; returns how many publishes were attempted.
fn stream(a: Arc<Bridge>, stop: Arc<AtomicBool>, sent: Arc<AtomicU64>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let t = topic("s");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
            a.publish(t.clone(), Bytes::from(i.to_string()), true);
            i += 1;
            sent.store(i, Ordering::Relaxed);
            thread::sleep(Duration::from_millis(2));
        }
    })
}

fn indexes(sink: &Collect) -> Vec<u64> {
    sink.texts().iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn redis_restart_mid_stream_resumes_by_itself_counts_losses_and_never_duplicates() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, _sa) = start(&redis.url(), 1);
    let (b, sb) = start(&redis.url(), 2);
    let a = Arc::new(a);
    b.want("s");
    assert!(wait_until(LONG, || up(&a)
        && up(&b)
        && redis.numsub("ringws:s") == 1));
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let publisher = stream(a.clone(), stop.clone(), sent.clone());

    assert!(sb.wait_for(100, LONG));
    redis.stop();
    let cut = sent.load(Ordering::Relaxed);
    assert!(
        wait_until(LONG, || !up(&a) && !up(&b)),
        "both notice the crash"
    );
    thread::sleep(Duration::from_millis(300));
    redis.start_again();
    // Nobody calls anything: both reconnect, b re-subscribes, the stream flows again.
    let resumed = wait_until(LONG, || {
        indexes(&sb).iter().filter(|&&i| i > cut).count() >= 100
    });
    stop.store(true, Ordering::Relaxed);
    publisher.join().unwrap();
    assert!(resumed, "delivery did not resume");
    thread::sleep(Duration::from_millis(300)); // let the tail arrive

    let got = indexes(&sb);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "duplicate or reordered delivery"
    );
    let sent = sent.load(Ordering::Relaxed);
    let missing = sent - got.len() as u64;
    let (sa, sbs) = (a.stats(), b.stats());
    assert!(missing > 0, "the outage should have lost something");
    let counted = sa.publish_drops() + sbs.lost + sbs.drop_inbound_full;
    eprintln!(
        "sent {sent}, delivered {}, missing {missing}, counted {counted} (a drops {}, b lost {})",
        got.len(),
        sa.publish_drops(),
        sbs.lost
    );
    assert!(
        counted >= missing,
        "{missing} missing but only {counted} counted: a {sa:?} b {sbs:?}"
    );
    assert!(sa.sessions >= 2 && sbs.sessions >= 2);
    assert!(sbs.resubscribed >= 1, "b re-subscribed its channel");
    assert_eq!(sbs.drop_repeat, 0);
    assert_eq!(redis.numsub("ringws:s"), 1);
}

#[test]
fn redis_absent_at_start_then_started_delivery_begins() {
    let port = free_port();
    let Some(mut redis) = RedisServer::not_started(port) else {
        return;
    };
    let url = redis.url();
    let (a, _sa) = start(&url, 1);
    let (b, sb) = start(&url, 2);
    b.want("late");
    assert!(wait_until(LONG, || a.stats().connect_failures >= 2));
    assert_ne!(a.health(), Health::Up);
    assert!(!a.publish(topic("late"), Bytes::from_static(b"lost"), true));
    assert!(a.stats().drop_disconnected >= 1);

    redis.start_again();
    assert!(wait_until(LONG, || up(&a)
        && up(&b)
        && redis.numsub("ringws:late") == 1));
    assert!(a.publish(topic("late"), Bytes::from_static(b"first"), true));
    assert!(sb.wait_for(1, LONG));
    assert_eq!(sb.texts(), ["first"]);
    assert_eq!(
        b.stats().resubscribed,
        0,
        "the first session is not a re-subscribe"
    );
}

#[test]
fn a_deaf_broker_is_detected_by_the_probe_and_the_bridge_recovers() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, sa) = start(&redis.url(), 1);
    let (b, _sb) = start(&redis.url(), 2);
    a.want("d");
    assert!(wait_until(LONG, || up(&a)
        && up(&b)
        && redis.numsub("ringws:d") == 1));
    assert!(
        wait_until(LONG, || a.stats().probe_rtt_us > 0),
        "probes come back while healthy"
    );
    let failures = a.stats().probe_failures;

    // Stopped, not killed: every socket stays open, nothing answers.
    redis.pause();
    assert!(
        wait_until(LONG, || !up(&a)),
        "a deaf broker was not noticed"
    );
    assert!(a.stats().probe_failures > failures);
    redis.resume();
    assert!(wait_until(LONG, || up(&a) && up(&b)));
    assert!(wait_until(LONG, || redis.numsub("ringws:d") == 1));
    assert!(b.publish(topic("d"), Bytes::from_static(b"back"), true));
    assert!(sa.wait_for(1, LONG));
    assert_eq!(sa.texts(), ["back"]);
}

#[test]
fn shutdown_is_prompt_even_while_backing_off() {
    // Nothing listens there; after the first refusal the bridge sleeps 10-20 s, and shutdown must cut that short.
    let mut c = config(&format!("redis://127.0.0.1:{}", free_port()), 1);
    c.backoff = BackoffPolicy {
        base: Duration::from_secs(20),
        max: Duration::from_secs(20),
    };
    let a = Bridge::start(c, Arc::new(Collect::default())).unwrap();
    a.want("x");
    assert!(wait_until(LONG, || a.stats().connect_failures == 1));
    assert_eq!(a.health(), Health::Down);
    let t = Instant::now();
    a.shutdown();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown waited out the backoff ({:?})",
        t.elapsed()
    );
}

#[test]
fn reconnect_resubscribes_the_whole_wanted_set_in_batches() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let (a, _sa) = start(&redis.url(), 1);
    const TOPICS: usize = 600; // three SUBSCRIBE batches of at most 256
    for i in 0..TOPICS {
        a.want(&format!("t{i}"));
    }
    let ours = |r: &RedisServer| r.channels("ringws:t*").len();
    assert!(wait_until(LONG, || ours(&redis) == TOPICS));
    assert!(wait_until(LONG, || a.stats().channels == TOPICS as u64));
    assert_eq!(a.stats().resubscribed, 0);
    redis.stop();
    assert!(wait_until(LONG, || !up(&a)));
    // The fresh Redis knows no subscription; the bridge may already be re-subscribing by the time we could look,
    // so the proof that every channel came back through a re-subscribe is the bridge's counter below.
    redis.start_again();
    assert!(
        wait_until(LONG, || ours(&redis) == TOPICS),
        "not every channel came back"
    );
    let t = TOPICS as u64;
    assert!(wait_until(LONG, || {
        let s = a.stats();
        (s.resubscribed, s.channels) == (t, t)
    }));
}

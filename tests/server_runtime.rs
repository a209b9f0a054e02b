//! The runtime under abuse and load: bounded memory for clients that never read, slowloris, oversized
//! handshakes, resets mid-frame, capacity limits, 1,000 concurrent connections, graceful shutdown.
//! Every test checks that an unrelated healthy connection keeps echoing.

mod server_util;

use std::io::{ErrorKind, Write};
use std::time::{Duration, Instant};

use server_util::*;

fn metrics(srv: &ringws::server::ServerHandle) -> String {
    srv.context().metrics_text()
}

/// Poll `f` every 50 ms until it returns true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

#[test]
fn client_that_never_reads_is_paused_bounded_then_dropped() {
    let mut c = config();
    c.max_backpressure = 64 << 10;
    c.send_stall_timeout = Duration::from_secs(2);
    let srv = start(c);
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    // A small receive buffer on the misbehaving client so the server's queue fills quickly.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.into()).unwrap();
    let mut s: std::net::TcpStream = sock.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_head(&mut s).0, 101);
    s.set_nonblocking(true).unwrap();
    let msg = frame(true, 2, &[7u8; 16 << 10]);
    let mut written = 0usize;
    let mut last_progress = Instant::now();
    let mut off = 0;
    // Write (never read) until the server stops taking bytes for half a second.
    while last_progress.elapsed() < Duration::from_millis(500) && written < 512 << 20 {
        match s.write(&msg[off..]) {
            Ok(n) => {
                written += n;
                off = (off + n) % msg.len();
                last_progress = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    assert!(
        written < 512 << 20,
        "the server kept reading from a client that never reads"
    );
    assert_echo(&mut healthy, b"still here");
    // The server paused that connection and its queue stayed within the bound (plus one message).
    let m = metrics(&srv);
    assert!(
        metric(&m, "ringws_backpressure_pauses_total") >= 1,
        "wrote {written}: {m}"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let queued = metric(&metrics(&srv), "ringws_outbound_queued_bytes");
    assert!(
        queued <= (64 << 10) + (16 << 10) + 64,
        "queued {queued} bytes"
    );
    // No progress for send_stall_timeout: the connection is dropped.
    assert!(eventually(Duration::from_secs(6), || metric(
        &metrics(&srv),
        "ringws_send_stalls_total"
    ) >= 1));
    assert_echo(&mut healthy, b"and still here");
}

#[test]
fn writers_ahead_of_their_readers_get_every_echo_intact_and_in_order() {
    // Three connections on one worker write ~1.9 MB each of 1 B to 70 KB frames while their readers start late:
    // the queues pass half of max_backpressure, reads pause, and the bytes the kernel had already received wait
    // for the resume. Pausing must never drop or reorder an echo. The clients' small receive buffers keep the
    // kernel from absorbing the echoes (loopback buffers autotune to megabytes), so the server's queues do grow.
    let mut c = config();
    c.workers = 1;
    c.max_backpressure = 512 << 10;
    let srv = start(c);
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    flood_and_check_echoes(a, 3, 120, Duration::from_millis(300), Some(64 << 10));
    let m = metrics(&srv);
    assert_eq!(metric(&m, "ringws_dropped_messages_total"), 0, "{m}");
    assert!(metric(&m, "ringws_backpressure_pauses_total") >= 1, "{m}");
    assert_echo(&mut healthy, b"still here");
}

#[test]
fn slowloris_is_closed_at_the_handshake_timeout() {
    let mut c = config();
    c.handshake_timeout = Duration::from_secs(1);
    let srv = start(c);
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    let mut s = tcp(a);
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").unwrap();
    let t = Instant::now();
    let r = read_retrying(&mut s);
    assert!(
        matches!(r, Ok(0)) || matches!(&r, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(eventually(Duration::from_secs(2), || metric(
        &metrics(&srv),
        "ringws_handshake_timeouts_total"
    ) == 1));
    assert_echo(&mut healthy, b"fine");
}

#[test]
fn oversized_handshake_is_431() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    let big = format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let (st, _) = http(a, &big);
    assert!(st == 431 || st == 400, "status {st}");
    assert_echo(&mut healthy, b"fine");
}

#[test]
fn reset_in_the_middle_of_a_frame_costs_only_that_connection() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    for _ in 0..20 {
        let s = ws_raw(a, "/echo");
        let f = frame(true, 2, &[1u8; 1000]);
        (&s).write_all(&f[..500]).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s); // RST
    }
    assert!(eventually(Duration::from_secs(5), || metric(
        &metrics(&srv),
        "ringws_websockets"
    ) == 1));
    assert_echo(&mut healthy, b"fine");
}

#[test]
fn upgrades_over_max_connections_get_503_and_the_server_stays_up() {
    let mut c = config();
    c.workers = 1;
    c.max_connections_per_worker = 3;
    let srv = start(c);
    let a = srv.local_addr();
    let mut open: Vec<_> = (0..3).map(|_| ws_raw(a, "/echo")).collect();
    for _ in 0..50 {
        let (st, _) = http(
            a,
            "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        assert_eq!(st, 503);
    }
    assert_echo(&mut open[0], b"fine");
    drop(open.pop());
    assert!(eventually(Duration::from_secs(5), || metric(
        &metrics(&srv),
        "ringws_websockets"
    ) == 2));
    let mut again = ws_raw(a, "/echo");
    assert_echo(&mut again, b"room again");
    assert!(metric(&metrics(&srv), "ringws_rejected_capacity_total") >= 50);
}

#[test]
fn a_thousand_concurrent_connections_echo_correctly_across_workers() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut conns: Vec<_> = (0..1000).map(|_| ws_raw(a, "/echo")).collect();
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&frame(true, 1, format!("conn {i}").as_bytes()))
            .unwrap();
    }
    for (i, s) in conns.iter_mut().enumerate() {
        assert_eq!(read_frame(s), (0x81, format!("conn {i}").into_bytes()));
    }
    let m = metrics(&srv);
    let per_worker: Vec<u64> = (0..2)
        .map(|w| {
            metric(
                &m.lines()
                    .filter(|l| l.contains(&format!("worker=\"{w}\"")))
                    .collect::<Vec<_>>()
                    .join("\n"),
                "ringws_websockets",
            )
        })
        .collect();
    assert_eq!(per_worker.iter().sum::<u64>(), 1000, "{per_worker:?}");
    assert!(
        per_worker.iter().all(|&n| n > 0),
        "SO_REUSEPORT spread: {per_worker:?}"
    );
}

#[test]
fn graceful_shutdown_closes_websockets_with_1001() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut s = ws_raw(a, "/echo");
    assert_echo(&mut s, b"hello");
    srv.shutdown();
    assert_eq!(expect_close(&mut s), Some(1001));
    // Complete the handshake as a polite client would.
    s.write_all(&frame(true, 8, &1001u16.to_be_bytes()))
        .unwrap();
    srv.join().expect("workers exit cleanly");
    // The kernel releases the listening socket once the ring's cancelled accept is torn down.
    assert!(
        eventually(Duration::from_secs(3), || std::net::TcpStream::connect(a)
            .is_err()),
        "listener closed"
    );
}

#[test]
fn silent_connection_gets_a_ping_then_is_closed_at_the_idle_timeout() {
    let mut c = config();
    c.idle_timeout = Duration::from_secs(2);
    let srv = start(c);
    let a = srv.local_addr();
    let mut s = ws_raw(a, "/echo");
    let t = Instant::now();
    // Silent for half the idle timeout: the server pings.
    let (b0, p) = read_frame(&mut s);
    assert_eq!(b0, 0x89, "a ping, got {b0:#x} {p:?}");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "pinged too early: {:?}",
        t.elapsed()
    );
    // No pong and no data: closed with 1001 once the whole idle timeout has passed.
    assert_eq!(expect_close(&mut s), Some(1001));
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "closed too early: {:?}",
        t.elapsed()
    );
    assert!(metric(&metrics(&srv), "ringws_idle_closes_total") >= 1);
}

#[test]
fn answering_pings_keeps_a_connection_alive() {
    let mut c = config();
    c.idle_timeout = Duration::from_secs(2);
    let srv = start(c);
    let mut s = ws_raw(srv.local_addr(), "/echo");
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let (b0, p) = read_frame(&mut s);
        assert_eq!(b0, 0x89, "only pings arrive while the client answers them");
        s.write_all(&frame(true, 0xA, &p)).unwrap();
    }
    assert_echo(&mut s, b"still open after 2.5 idle timeouts");
}

//! Large echoes are sent straight from the receive buffer they arrived in (no copy into a send buffer): the
//! buffer is held until the echo is written, and a short send copies the rest out so no peer can keep the
//! worker's receive buffers; a send stuck in flight to a peer that does not read may hold buffers, but never more than
//! a quarter of the ring. With a receive ring of only 4 buffers, leaked holds starve every connection of the worker,
//! so these tests fail (by timeout) if holds are kept.

mod server_util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use server_util::*;

/// A small ring: 4 buffers of 64 KiB, one worker, so holds are scarce.
fn small_ring() -> ringws::server::Config {
    let mut c = config();
    c.workers = 1;
    c.recv_buffers = 4;
    c.recv_buffer_size = 64 << 10;
    c
}

/// Distinct, position-dependent content so a misplaced or stale byte is caught.
fn payload(conn: usize, i: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| {
            (k as u32)
                .wrapping_mul(31)
                .wrapping_add((conn * 7919 + i * 104_729) as u32) as u8
        })
        .collect()
}

fn echo_many(s: &mut TcpStream, conn: usize, n: usize) {
    for i in 0..n {
        // 4 KiB (the zero-copy threshold) to 60 KiB: whole frames in one buffer, and frames split across buffers.
        let len = 4096 + (i * 7_919 + conn * 3_571) % (56 << 10);
        let p = payload(conn, i, len);
        s.write_all(&frame(true, 0x2, &p)).unwrap();
        let (b0, got) = read_frame(s);
        assert_eq!(b0, 0x82, "connection {conn} message {i}");
        assert!(
            got == p,
            "connection {conn} message {i} ({len} B) came back different"
        );
    }
}

#[test]
fn large_echoes_come_back_intact_through_a_tiny_receive_ring() {
    let srv = start(small_ring());
    let a = srv.local_addr();
    let threads: Vec<_> = (0..4)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = ws_raw(a, "/echo");
                echo_many(&mut s, c, 300);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let m = srv.context().metrics_text();
    assert!(
        metric(&m, "ringws_zero_copy_sends_total") > 100,
        "large echoes were not sent from the receive buffer:\n{m}"
    );
}

#[test]
fn a_peer_that_stops_reading_holds_no_receive_buffer() {
    let mut c = small_ring();
    c.send_stall_timeout = Duration::from_secs(30);
    let srv = start(c);
    let a = srv.local_addr();
    // The stalled peer: a small receive buffer, sends big frames and never reads their echoes, so the server's
    // sends to it come up short and the rest of each echo has to be copied out of the receive buffer.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&a.into()).unwrap();
    let mut stalled: TcpStream = sock.into();
    stalled
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stalled
        .write_all(
            format!(
                "GET /echo HTTP/1.1\r\nHost: {a}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    // More than the socket buffers on both sides take: the server's sends to it come up short (and it is paused
    // by backpressure). Written from a thread, since the writes block once the server stops reading.
    let writer = std::thread::spawn(move || {
        for i in 0..96 {
            if stalled
                .write_all(&frame(true, 0x2, &payload(99, i, 48 << 10)))
                .is_err()
            {
                break;
            }
        }
        stalled
    });
    std::thread::sleep(Duration::from_millis(500));
    // Meanwhile a healthy connection on the same worker pushes ~10 MiB through the 256 KiB ring.
    let mut healthy = ws_raw(a, "/echo");
    echo_many(&mut healthy, 1, 250);
    // The gauge is sampled once a second: after the next sample, no receive buffer may still be held, although the
    // stalled peer's echoes are still queued.
    std::thread::sleep(Duration::from_millis(1200));
    let m = srv.context().metrics_text();
    println!(
        "zero-copy sends {}, spills {}, pauses {}",
        metric(&m, "ringws_zero_copy_sends_total"),
        metric(&m, "ringws_ring_spills_total"),
        metric(&m, "ringws_backpressure_pauses_total")
    );
    // Whether its sends came up short (and were copied out) or stay in flight depends on timing; either way:
    // Its echo stuck in flight may hold receive buffers, but at most a quarter of the ring (1 of 4 here): the
    // healthy connection above never ran out.
    assert!(
        metric(&m, "ringws_recv_buffers_held") <= 1,
        "a stalled peer holds more than a quarter of the receive ring"
    );
    drop(srv); // closes the stalled peer too, which ends the writer
    drop(writer.join().unwrap());
}

/// The receive ring is provided lazily: a worker starts with 8 buffers given to the kernel (so a quiet server never
/// touches the rest of the ring's memory) and gives more, doubling, only when a receive runs out; the echoes of a
/// flood that forces it to grow all come back intact. Under the light load after the flood it shrinks back to 8, and
/// grows again for the next flood.
#[test]
fn the_receive_ring_grows_only_when_receives_run_out() {
    let mut c = config();
    c.workers = 1;
    c.recv_buffers = 64;
    c.recv_buffer_size = 4096;
    let srv = start(c);
    let a = srv.local_addr();
    let provided = || {
        // Sampled once a second.
        std::thread::sleep(Duration::from_millis(1100));
        metric(
            &srv.context().metrics_text(),
            "ringws_recv_buffers_provided",
        )
    };
    let mut s = ws_raw(a, "/echo");
    for i in 0..20 {
        assert_echo(&mut s, format!("small {i}").as_bytes());
    }
    assert_eq!(
        provided(),
        8,
        "a light load needs no more than the first buffers"
    );
    // Three connections writing ~1.9 MB each through 4 KiB buffers: the kernel runs out of buffers.
    flood_and_check_echoes(a, 3, 120, Duration::from_millis(100), None);
    let m = srv.context().metrics_text();
    assert!(metric(&m, "ringws_recv_enobufs_total") >= 1, "{m}");
    let grown = provided();
    assert!((16..=64).contains(&grown), "{grown} buffers provided");
    assert_echo(&mut s, b"still here");
    // A light load again: a few sweeps later the ring is back at its first 8 buffers, the rest of its memory given
    // back. Buffers leave the cycle as they come back from the kernel, so the light load keeps them coming.
    let msg = vec![b'x'; 1000];
    let t0 = std::time::Instant::now();
    let mut now = grown;
    while now != 8 && t0.elapsed() < Duration::from_secs(15) {
        for _ in 0..100 {
            assert_echo(&mut s, &msg);
        }
        now = metric(
            &srv.context().metrics_text(),
            "ringws_recv_buffers_provided",
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(now, 8, "the ring shrinks back after the burst");
    // The buffers it took out serve the next burst: it grows again, every echo intact.
    let before = metric(&srv.context().metrics_text(), "ringws_recv_enobufs_total");
    flood_and_check_echoes(a, 3, 120, Duration::from_millis(100), None);
    let m = srv.context().metrics_text();
    assert!(metric(&m, "ringws_recv_enobufs_total") > before, "{m}");
    assert!(provided() >= 16);
    assert_echo(&mut s, b"still here after the second burst");
}

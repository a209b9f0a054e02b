//! `Config::flush_delay`: a connection's frames are held and leave together, intact and in order; with the
//! delay off (the default) every turn sends at once. Asserted by counting sends, not by timing: each message is
//! sent only after the server has counted the previous one, so without a delay every echo needs its own send.

mod server_util;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use ringws::server::ServerHandle;
use server_util::*;

fn server(delay: Duration) -> ServerHandle {
    let mut c = config();
    c.workers = 1;
    c.flush_delay = delay;
    start(c)
}

fn metrics(srv: &ServerHandle) -> String {
    srv.context().metrics_text()
}

/// Send `n` text messages one by one, each after the server has counted the one before (so each lands in its own
/// loop turn), then read the `n` echoes back. Returns the sends the server made for them.
fn echo_one_at_a_time(srv: &ServerHandle, s: &mut TcpStream, n: u64) -> u64 {
    let m0 = metrics(srv);
    let (in0, sends0) = (
        metric(&m0, "ringws_messages_in_total"),
        metric(&m0, "ringws_sends_total"),
    );
    for i in 0..n {
        s.write_all(&frame(true, 0x1, format!("message {i}").as_bytes()))
            .unwrap();
        let deadline = std::time::Instant::now() + TIMEOUT;
        while metric(&metrics(srv), "ringws_messages_in_total") < in0 + i + 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "message {i} was never counted"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for i in 0..n {
        assert_eq!(read_frame(s), (0x81, format!("message {i}").into_bytes()));
    }
    metric(&metrics(srv), "ringws_sends_total") - sends0
}

#[test]
fn without_a_delay_each_turn_sends_at_once() {
    let srv = server(Duration::ZERO);
    let mut s = ws_raw(srv.local_addr(), "/echo");
    assert_eq!(echo_one_at_a_time(&srv, &mut s, 8), 8);
    assert_eq!(metric(&metrics(&srv), "ringws_delayed_flushes_total"), 0);
}

#[test]
fn a_delay_holds_frames_and_sends_them_together_in_order() {
    // 1 s (the most allowed) is far longer than the eight exchanges with the in-process metrics take, so all
    // eight echoes are queued within one hold and leave in one send (two if a hold ends between them).
    let srv = server(Duration::from_secs(1));
    let mut s = ws_raw(srv.local_addr(), "/echo");
    let sends = echo_one_at_a_time(&srv, &mut s, 8);
    assert!((1..=2).contains(&sends), "{sends} sends for 8 echoes");
    assert!(metric(&metrics(&srv), "ringws_delayed_flushes_total") >= 1);
}

#[test]
fn delayed_frames_of_every_size_arrive_intact_and_in_order() {
    // The writers never wait for echoes, so many frames are queued while each hold lasts.
    let srv = server(Duration::from_millis(2));
    flood_and_check_echoes(srv.local_addr(), 3, 120, Duration::ZERO);
    assert_eq!(metric(&metrics(&srv), "ringws_dropped_messages_total"), 0);
}

#[test]
fn a_delay_over_one_second_is_refused() {
    let mut c = config();
    c.flush_delay = Duration::from_millis(1001);
    assert_eq!(c.validate().unwrap_err().field, "flush_delay");
}

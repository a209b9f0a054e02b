//! `Config::flush_delay` (coalescing): a worker gathers what arrives within the delay and answers it in one turn,
//! intact and in order; it still sleeps while idle; with the delay off (the default) every message is answered in
//! its own turn. Asserted by counting sends and loop turns, with the timing margins far apart (a 1 s window
//! against a burst of ~150 ms), never by measuring latency.

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
}

#[test]
fn a_delay_gathers_a_burst_into_one_turn_and_sends_its_echoes_together() {
    // Eight messages, each in its own write ~20 ms apart: all inside one 1 s window (or two, if a window ends
    // during the burst or the first message wakes an idle worker at once), so at most two sends carry the eight
    // echoes, which arrive intact and in order.
    let srv = server(Duration::from_secs(1));
    let mut s = ws_raw(srv.local_addr(), "/echo");
    let sends0 = metric(&metrics(&srv), "ringws_sends_total");
    for i in 0..8 {
        s.write_all(&frame(true, 0x1, format!("burst {i}").as_bytes()))
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..8 {
        assert_eq!(
            read_frame(&mut s),
            (0x81, format!("burst {i}").into_bytes())
        );
    }
    let sends = metric(&metrics(&srv), "ringws_sends_total") - sends0;
    assert!((1..=2).contains(&sends), "{sends} sends for 8 echoes");
}

#[test]
fn a_worker_with_a_delay_still_sleeps_while_idle() {
    // The delay bounds how long a wait gathers once woken; it is not a period: an idle worker makes no turns
    // beyond its once-a-second tick (a 1 ms period would make ~800 here).
    let srv = server(Duration::from_millis(1));
    let mut s = ws_raw(srv.local_addr(), "/echo");
    assert_echo(&mut s, b"awake");
    let turns0 = metric(&metrics(&srv), "ringws_loop_turns_total");
    std::thread::sleep(Duration::from_millis(800));
    assert_echo(&mut s, b"still answering");
    let turns = metric(&metrics(&srv), "ringws_loop_turns_total") - turns0;
    assert!(turns <= 6, "{turns} loop turns while idle");
}

#[test]
fn delayed_frames_of_every_size_arrive_intact_and_in_order() {
    // The writers never wait for echoes, so many frames are queued while each hold lasts.
    let srv = server(Duration::from_millis(2));
    flood_and_check_echoes(srv.local_addr(), 3, 120, Duration::ZERO, None);
    assert_eq!(metric(&metrics(&srv), "ringws_dropped_messages_total"), 0);
}

#[test]
fn a_delay_over_one_second_is_refused() {
    let mut c = config();
    c.flush_delay = Duration::from_millis(1001);
    assert_eq!(c.validate().unwrap_err().field, "flush_delay");
}

//! The demo binary's routes that the field's own benchmark clients use: an upgrade to `/` is an echo (uWebSockets'
//! `load_test` connects to `/`), while a plain `GET /` still serves the page; `/broadcast` publishes every message
//! to every `/broadcast` connection, the sender included, binary staying binary (uWebSockets' `broadcast_test`).

mod server_util;

use std::io::Write;

use server_util::*;

#[test]
fn an_upgrade_to_root_is_an_echo_and_a_plain_get_is_the_page() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut s = ws_raw(a, "/");
    assert_echo(&mut s, b"hello from a load client");
    s.write_all(&frame(true, 0x2, &[0, 1, 2, 255])).unwrap();
    assert_eq!(read_frame(&mut s), (0x82, vec![0, 1, 2, 255]));
    let (status, body) = get(a, "/");
    assert_eq!(status, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
}

#[test]
fn broadcast_reaches_every_connection_the_sender_included() {
    let srv = start(config());
    let a = srv.local_addr();
    // Two workers: with several connections, both workers hold subscribers.
    let mut conns: Vec<_> = (0..6).map(|_| ws_raw(a, "/broadcast")).collect();
    conns[0]
        .write_all(&frame(true, 0x1, b"to everyone"))
        .unwrap();
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(
            read_frame(c),
            (0x81, b"to everyone".to_vec()),
            "connection {i}"
        );
    }
    conns[5].write_all(&frame(true, 0x2, &[9, 8, 7])).unwrap();
    for (i, c) in conns.iter_mut().enumerate() {
        assert_eq!(
            read_frame(c),
            (0x82, vec![9, 8, 7]),
            "connection {i}: binary stays binary"
        );
    }
    // A plain GET to the route is told to upgrade.
    assert_eq!(get(a, "/broadcast").0, 426);
}

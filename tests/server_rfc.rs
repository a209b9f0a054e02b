//! The server against real clients over loopback: handshake, echo, fragmentation, control frames, close
//! handshake and the close code of every protocol violation. Grouped by RFC 6455 section.

mod server_util;

use std::io::Write;

use server_util::*;
use tungstenite::{Message, WebSocket};

fn client(addr: std::net::SocketAddr, path: &str) -> WebSocket<std::net::TcpStream> {
    let (ws, resp) =
        tungstenite::client(format!("ws://{addr}{path}"), tcp(addr)).expect("handshake");
    assert_eq!(resp.status(), 101);
    ws
}

// --- 4. Opening handshake -------------------------------------------------------------------------------

#[test]
fn handshake_rfc_example_key_gets_the_rfc_accept_value() {
    let srv = start(config());
    let mut s = tcp(srv.local_addr());
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101);
    assert!(
        head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
        "{head}"
    );
}

#[test]
fn plain_get_to_websocket_route_is_426_unknown_is_404_bad_upgrade_is_4xx() {
    let srv = start(config());
    let a = srv.local_addr();
    let (st, text) = get(a, "/echo");
    assert_eq!(st, 426, "{text}");
    assert!(text.to_ascii_lowercase().contains("upgrade: websocket"));
    assert_eq!(get(a, "/no-such-page").0, 404);
    assert_eq!(get(a, "/healthz").0, 200);
    // Missing key.
    let (st, _) = http(a, "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_eq!(st, 400);
    // Wrong version: 426 naming the version we speak.
    let (st, text) = http(
        a,
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    );
    assert_eq!(st, 426);
    assert!(text.contains("Sec-WebSocket-Version: 13"), "{text}");
    // Garbage.
    assert_eq!(http(a, "\x16\x03\x01 this is not http\r\n\r\n").0, 400);
    // Upgrade to a path with no WebSocket endpoint: rejected by the app's upgrade hook.
    let (st, _) = http(
        a,
        "GET /nope HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(st, 404);
}

#[test]
fn demo_page_and_stats_are_served_from_the_binary() {
    let srv = start(config());
    let a = srv.local_addr();
    let (st, text) = get(a, "/");
    assert_eq!(st, 200);
    assert!(text.contains("text/html"), "{text}");
    let (st, text) = get(a, "/stats");
    assert_eq!(st, 200);
    assert!(text.contains("\"connections\""), "{text}");
}

// --- 5.6 Data frames: echo at the length-encoding boundaries ---------------------------------------------

#[test]
fn echo_text_and_binary_at_length_boundaries() {
    let srv = start(config());
    let mut ws = client(srv.local_addr(), "/echo");
    for n in [0usize, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
        let text: String = (0..n).map(|i| (b'a' + (i % 26) as u8) as char).collect();
        ws.send(Message::text(text.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(text), "text of {n} bytes");
        let bin: Vec<u8> = (0..n).map(|i| (i * 7 + n) as u8).collect();
        ws.send(Message::binary(bin.clone())).unwrap();
        assert_eq!(
            ws.read().unwrap(),
            Message::binary(bin),
            "binary of {n} bytes"
        );
    }
}

#[test]
fn many_messages_in_one_write_are_all_echoed_in_order() {
    let srv = start(config());
    let mut s = ws_raw(srv.local_addr(), "/echo");
    let mut batch = Vec::new();
    for i in 0..500u32 {
        batch.extend(frame(true, 1, format!("msg-{i}").as_bytes()));
    }
    s.write_all(&batch).unwrap();
    for i in 0..500u32 {
        let (b0, p) = read_frame(&mut s);
        assert_eq!((b0, p), (0x81, format!("msg-{i}").into_bytes()));
    }
}

// --- 5.4 Fragmentation --------------------------------------------------------------------------------

#[test]
fn fragmented_message_with_interleaved_ping_is_reassembled() {
    let srv = start(config());
    let mut s = ws_raw(srv.local_addr(), "/echo");
    s.write_all(&frame(false, 1, b"Hel")).unwrap();
    s.write_all(&frame(true, 9, b"ping!")).unwrap();
    s.write_all(&frame(false, 0, b"lo, ")).unwrap();
    s.write_all(&frame(true, 0, "wörld".as_bytes())).unwrap();
    assert_eq!(
        read_frame(&mut s),
        (0x8a, b"ping!".to_vec()),
        "pong first, with the ping's payload"
    );
    assert_eq!(
        read_frame(&mut s),
        (0x81, "Hello, wörld".as_bytes().to_vec())
    );
}

#[test]
fn frames_split_byte_by_byte_are_handled() {
    let srv = start(config());
    let mut s = ws_raw(srv.local_addr(), "/echo");
    for b in frame(true, 2, &[1, 2, 3, 4, 5, 6, 7, 8, 9]) {
        s.write_all(&[b]).unwrap();
        s.flush().unwrap();
    }
    assert_eq!(read_frame(&mut s), (0x82, vec![1, 2, 3, 4, 5, 6, 7, 8, 9]));
}

// --- 5.5 Control frames -------------------------------------------------------------------------------

#[test]
fn ping_gets_pong_with_same_payload() {
    let srv = start(config());
    let mut ws = client(srv.local_addr(), "/echo");
    ws.send(Message::Ping(b"are you there".to_vec().into()))
        .unwrap();
    match ws.read().unwrap() {
        Message::Pong(p) => assert_eq!(&p[..], b"are you there"),
        other => panic!("unexpected {other:?}"),
    }
}

// --- 7. Closing the connection ------------------------------------------------------------------------

#[test]
fn close_handshake_echoes_the_code_and_server_closes_tcp() {
    let srv = start(config());
    let mut s = ws_raw(srv.local_addr(), "/echo");
    let mut p = 4001u16.to_be_bytes().to_vec();
    p.extend_from_slice(b"bye");
    s.write_all(&frame(true, 8, &p)).unwrap();
    assert_eq!(expect_close(&mut s), Some(4001));
    expect_eof(&mut s);
}

#[test]
fn tungstenite_client_close_completes_cleanly() {
    let srv = start(config());
    let mut ws = client(srv.local_addr(), "/echo");
    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Ok(_) => continue,
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("unclean close: {e}"),
        }
    }
}

// --- Protocol violations: each gets its close code, and nothing else is disturbed ---------------------

fn assert_violation(bytes: &[u8], code: u16) {
    let srv = start(config());
    let a = srv.local_addr();
    let mut healthy = ws_raw(a, "/echo");
    assert_echo(&mut healthy, b"before");
    let mut s = ws_raw(a, "/echo");
    s.write_all(bytes).unwrap();
    assert_eq!(expect_close(&mut s), Some(code), "violation {bytes:02x?}");
    expect_eof(&mut s);
    assert_echo(&mut healthy, b"after");
}

#[test]
fn unmasked_client_frame_is_1002() {
    assert_violation(&frame_raw(0x81, b"hi", None), 1002);
}

#[test]
fn reserved_opcode_is_1002() {
    assert_violation(&frame(true, 3, b""), 1002);
}

#[test]
fn rsv_bits_without_extension_are_1002() {
    assert_violation(&frame_raw(0xc1, b"x", Some([1, 2, 3, 4])), 1002);
}

#[test]
fn continuation_without_start_is_1002() {
    assert_violation(&frame(true, 0, b"x"), 1002);
}

#[test]
fn fragmented_ping_is_1002() {
    assert_violation(&frame(false, 9, b"x"), 1002);
}

#[test]
fn invalid_utf8_is_1007() {
    assert_violation(
        &frame(
            true,
            1,
            &[
                0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0, 0x80,
            ],
        ),
        1007,
    );
}

#[test]
fn invalid_utf8_split_across_fragments_is_1007() {
    let mut b = frame(false, 1, &[0xce, 0xba, 0xf4]);
    b.extend(frame(true, 0, &[0x90, 0x80, 0x80]));
    assert_violation(&b, 1007);
}

#[test]
fn frame_announcing_2_pow_63_bytes_is_rejected_without_allocating() {
    let mut b = vec![0x82, 0x80 | 127];
    b.extend_from_slice(&(1u64 << 63).to_be_bytes());
    b.extend_from_slice(&[1, 2, 3, 4]);
    let srv = start(config());
    let mut s = ws_raw(srv.local_addr(), "/echo");
    s.write_all(&b).unwrap();
    let code = expect_close(&mut s);
    assert!(matches!(code, Some(1002) | Some(1009)), "{code:?}");
}

#[test]
fn message_over_the_limit_is_1009_from_the_header() {
    let mut c = config();
    c.max_message_size = 1000;
    c.max_frame_size = 1000;
    let srv = start(c);
    let mut s = ws_raw(srv.local_addr(), "/echo");
    // Only the header of a 1001-byte frame: the limit is enforced before any payload arrives.
    let mut b = vec![0x82, 0x80 | 126];
    b.extend_from_slice(&1001u16.to_be_bytes());
    b.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&b).unwrap();
    assert_eq!(expect_close(&mut s), Some(1009));
}

#[test]
fn fragmented_message_over_the_aggregate_limit_is_1009() {
    let mut c = config();
    c.max_message_size = 1000;
    c.max_frame_size = 600;
    let srv = start(c);
    let mut s = ws_raw(srv.local_addr(), "/echo");
    s.write_all(&frame(false, 2, &[0u8; 600])).unwrap();
    s.write_all(&frame(true, 0, &[0u8; 600])).unwrap();
    assert_eq!(expect_close(&mut s), Some(1009));
}

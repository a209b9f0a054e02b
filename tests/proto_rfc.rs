//! RFC 6455 conformance of the sans-IO core, grouped by section. Every case runs whole, byte by byte and in halves
//! (see `assert_events` / `assert_failing`).

mod proto_util;

use std::time::{Duration, Instant};

use proto_util::*;
use ringws::proto::{decode_header, encode_header, write_frame, MAX_HEADER_LEN};
use ringws::proto::{is_valid_close_code, Connection, Limits, OpCode, Role, State};

const ROLES: [Role; 2] = [Role::Server, Role::Client];

/// A frame the peer of `role` would send.
fn f(role: Role, fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    frame_for(role, fin, op, payload)
}

/// Masking key per role for raw frames (servers receive masked frames).
fn key_for(role: Role) -> Option<[u8; 4]> {
    (role == Role::Server).then_some(KEY)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

mod framing_5_2 {
    use super::*;

    #[test]
    fn payload_lengths_7_16_and_64_bit() {
        for role in ROLES {
            for len in [0usize, 1, 125, 126, 127, 65535, 65536, 70000] {
                let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
                let bytes = f(role, true, OpCode::Binary, &payload);
                let mut conn = Connection::new(role, Limits::default());
                assert_eq!(
                    feed(&mut conn, &bytes),
                    [binary(&payload)],
                    "{role:?} {len}"
                );
                let mut conn = Connection::new(role, Limits::default());
                let cuts: Vec<usize> = (1..bytes.len()).step_by(997).collect();
                assert_eq!(feed_split(&mut conn, &bytes, &cuts), [binary(&payload)]);
            }
        }
    }

    #[test]
    fn header_split_one_byte_at_a_time() {
        for role in ROLES {
            for len in [5usize, 300, 70000] {
                let payload = vec![b'a'; len];
                let bytes = f(role, true, OpCode::Text, &payload);
                let mut conn = Connection::new(role, Limits::default());
                let hdr = MAX_HEADER_LEN.min(bytes.len());
                let cuts: Vec<usize> = (1..=hdr).collect();
                let s = String::from_utf8(payload).unwrap();
                assert_eq!(feed_split(&mut conn, &bytes, &cuts), [Ev::Text(s)]);
            }
        }
    }

    #[test]
    fn many_frames_in_one_read() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, true, OpCode::Text, b"one"),
                &f(role, true, OpCode::Binary, b"two"),
                &f(role, true, OpCode::Text, b""),
                &f(role, true, OpCode::Text, "Привет".as_bytes()),
            ]);
            assert_events(
                role,
                &bytes,
                &[text("one"), binary(b"two"), text(""), text("Привет")],
            );
        }
    }

    #[test]
    fn non_minimal_16_bit_length_is_1002() {
        for role in ROLES {
            let bytes = raw_frame(0x82, 126, &[0, 125], key_for(role), &[0; 125]);
            assert_failing(role, &bytes, 1002);
            let bytes = raw_frame(0x82, 126, &[0, 0], key_for(role), &[]);
            assert_failing(role, &bytes, 1002);
        }
    }

    #[test]
    fn non_minimal_64_bit_length_is_1002() {
        for role in ROLES {
            let ext = 65535u64.to_be_bytes();
            let bytes = raw_frame(0x82, 127, &ext, key_for(role), &[0; 16]);
            assert_failing(role, &bytes, 1002);
            let ext = 3u64.to_be_bytes();
            let bytes = raw_frame(0x82, 127, &ext, key_for(role), b"abc");
            assert_failing(role, &bytes, 1002);
        }
    }

    #[test]
    fn minimal_boundaries_are_accepted() {
        for role in ROLES {
            let p126 = vec![1u8; 126];
            let bytes = raw_frame(0x82, 126, &[0, 126], key_for(role), &p126);
            assert_events(role, &bytes, &[binary(&p126)]);
            let p = vec![2u8; 65536];
            let bytes = raw_frame(0x82, 127, &65536u64.to_be_bytes(), key_for(role), &p);
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(feed(&mut conn, &bytes), [binary(&p)]);
        }
    }

    #[test]
    fn length_with_msb_set_is_1002() {
        for role in ROLES {
            let ext = (1u64 << 63 | 70000).to_be_bytes();
            let bytes = raw_frame(0x82, 127, &ext, key_for(role), &[]);
            assert_failing(role, &bytes, 1002);
        }
    }

    #[test]
    fn reserved_bits_are_1002() {
        for role in ROLES {
            for rsv in [0x40u8, 0x20, 0x10, 0x70] {
                let bytes = raw_frame(0x81 | rsv, 2, &[], key_for(role), b"hi");
                assert_failing(role, &bytes, 1002);
            }
        }
    }

    #[test]
    fn rsv1_allowed_only_when_negotiated_and_only_on_first_data_frame() {
        for role in ROLES {
            let new = || {
                let mut c = Connection::new(role, Limits::default());
                c.set_rsv1_allowed(true);
                c
            };
            // A compressed text message: no UTF-8 check, delivered raw as binary.
            let bytes = raw_frame(0xC1, 2, &[], key_for(role), &[0xff, 0xfe]);
            assert_eq!(feed(&mut new(), &bytes), [binary(&[0xff, 0xfe])]);
            // RSV2/RSV3 stay forbidden.
            let bytes = raw_frame(0xA1, 2, &[], key_for(role), b"hi");
            assert!(matches!(feed(&mut new(), &bytes)[..], [Ev::Error(1002, _)]));
            // RSV1 on a control frame or a continuation is forbidden.
            let bytes = raw_frame(0xC9, 0, &[], key_for(role), b"");
            assert!(matches!(feed(&mut new(), &bytes)[..], [Ev::Error(1002, _)]));
            let bytes = cat(&[
                &raw_frame(0x41, 1, &[], key_for(role), b"a"),
                &raw_frame(0xC0, 1, &[], key_for(role), b"b"),
            ]);
            assert!(matches!(feed(&mut new(), &bytes)[..], [Ev::Error(1002, _)]));
            // Plain frames still work with the flag on.
            let bytes = f(role, true, OpCode::Text, b"plain");
            assert_eq!(feed(&mut new(), &bytes), [text("plain")]);
        }
    }

    #[test]
    fn reserved_opcodes_are_1002() {
        for role in ROLES {
            for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
                let bytes = raw_frame(0x80 | op, 0, &[], key_for(role), &[]);
                assert_failing(role, &bytes, 1002);
            }
        }
    }

    #[test]
    fn error_after_valid_frames_keeps_earlier_events() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, true, OpCode::Text, b"ok"),
                &raw_frame(0x83, 0, &[], key_for(role), &[]),
                &f(role, true, OpCode::Text, b"never"),
            ]);
            assert_failing_after(role, &bytes, &[text("ok")], 1002);
        }
    }

    #[test]
    fn encode_header_layouts() {
        let mut h = [0u8; MAX_HEADER_LEN];
        assert_eq!(encode_header(&mut h, true, OpCode::Text, 5, None), 2);
        assert_eq!(&h[..2], &[0x81, 5]);
        assert_eq!(encode_header(&mut h, false, OpCode::Binary, 126, None), 4);
        assert_eq!(&h[..4], &[0x02, 126, 0, 126]);
        assert_eq!(
            encode_header(&mut h, true, OpCode::Ping, 65536, Some([1, 2, 3, 4])),
            14
        );
        assert_eq!(&h[..14], &[0x89, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4]);
        let (d, n) = decode_header(&h).unwrap().unwrap();
        assert_eq!(
            (d.payload_len, n, d.mask, d.fin, d.opcode),
            (65536, 14, Some([1, 2, 3, 4]), true, 9)
        );
    }
}

mod masking_5_1 {
    use super::*;

    #[test]
    fn server_rejects_unmasked_frames() {
        assert_failing(Role::Server, &sframe(true, OpCode::Text, b"hi"), 1002);
        assert_failing(Role::Server, &sframe(true, OpCode::Ping, b""), 1002);
    }

    #[test]
    fn client_rejects_masked_frames() {
        assert_failing(Role::Client, &cframe(true, OpCode::Text, b"hi"), 1002);
        assert_failing(Role::Client, &cframe(true, OpCode::Close, &[]), 1002);
    }

    #[test]
    fn server_unmasks_with_every_key_phase() {
        // A frame split at every offset is unmasked identically (the key phase follows the bytes consumed).
        let payload: Vec<u8> = (0..37u8).collect();
        let bytes = cframe(true, OpCode::Binary, &payload);
        for cut in 1..bytes.len() {
            for cut2 in [cut + 1, cut + 3] {
                let mut conn = server();
                assert_eq!(
                    feed_split(&mut conn, &bytes, &[cut, cut2]),
                    [binary(&payload)]
                );
            }
        }
    }

    #[test]
    fn whole_frame_is_delivered_without_copy() {
        let mut data = cframe(true, OpCode::Binary, b"zero-copy payload");
        let range = data.as_ptr_range();
        let mut conn = server();
        let mut inside = None;
        conn.handle_read(&mut data, &mut |e| {
            if let ringws::proto::Event::Binary(b) = e {
                inside = Some(range.contains(&b.as_ptr()));
            }
        })
        .unwrap();
        assert_eq!(inside, Some(true), "payload must borrow the input");
        assert_eq!(&data[6..], b"zero-copy payload", "unmasked in place");
    }
}

mod fragmentation_5_4 {
    use super::*;

    #[test]
    fn text_in_three_fragments() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, b"Hel"),
                &f(role, false, OpCode::Continuation, b"lo, "),
                &f(role, true, OpCode::Continuation, b"world"),
            ]);
            assert_events(role, &bytes, &[text("Hello, world")]);
        }
    }

    #[test]
    fn binary_with_empty_fragments() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Binary, b""),
                &f(role, false, OpCode::Continuation, b"\x00\x01"),
                &f(role, false, OpCode::Continuation, b""),
                &f(role, true, OpCode::Continuation, b""),
            ]);
            assert_events(role, &bytes, &[binary(b"\x00\x01")]);
        }
    }

    #[test]
    fn control_frames_interleaved_in_a_fragmented_message() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, b"frag"),
                &f(role, true, OpCode::Ping, b"p1"),
                &f(role, false, OpCode::Continuation, b"men"),
                &f(role, true, OpCode::Pong, b"p2"),
                &f(role, true, OpCode::Continuation, b"ted"),
                &f(role, true, OpCode::Text, b"next"),
            ]);
            assert_events(
                role,
                &bytes,
                &[
                    Ev::Ping(b"p1".to_vec()),
                    Ev::Pong(b"p2".to_vec()),
                    text("fragmented"),
                    text("next"),
                ],
            );
        }
    }

    #[test]
    fn control_frame_split_across_reads_inside_fragmented_message() {
        for role in ROLES {
            let ping = vec![b'x'; 125];
            let first = f(role, false, OpCode::Binary, &[7u8; 300]);
            let ping_frame = f(role, true, OpCode::Ping, &ping);
            let last = f(role, true, OpCode::Continuation, &[8u8; 10]);
            let bytes = cat(&[&first, &ping_frame, &last]);
            let mut expected_msg = vec![7u8; 300];
            expected_msg.extend_from_slice(&[8u8; 10]);
            // Cut inside the first payload and inside the ping payload.
            let cuts = [100, first.len() + 50, first.len() + 90];
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(
                feed_split(&mut conn, &bytes, &cuts),
                [Ev::Ping(ping.clone()), binary(&expected_msg)]
            );
            assert_eq!(transmitted(&mut conn), [Ev::Pong(ping)]);
        }
    }

    #[test]
    fn continuation_without_start_is_1002() {
        for role in ROLES {
            assert_failing(role, &f(role, true, OpCode::Continuation, b"x"), 1002);
            let bytes = cat(&[
                &f(role, true, OpCode::Text, b"done"),
                &f(role, false, OpCode::Continuation, b"x"),
            ]);
            assert_failing_after(role, &bytes, &[text("done")], 1002);
        }
    }

    #[test]
    fn new_data_frame_inside_fragmented_message_is_1002() {
        for role in ROLES {
            for op in [OpCode::Text, OpCode::Binary] {
                let bytes = cat(&[
                    &f(role, false, OpCode::Text, b"a"),
                    &f(role, true, op, b"b"),
                ]);
                assert_failing(role, &bytes, 1002);
            }
        }
    }
}

mod control_frames_5_5 {
    use super::*;

    #[test]
    fn ping_is_answered_with_pong_echoing_payload() {
        for role in ROLES {
            for payload in [&b""[..], b"hello", &[0xAB; 125]] {
                let mut conn = Connection::new(role, Limits::default());
                let evs = feed(&mut conn, &f(role, true, OpCode::Ping, payload));
                assert_eq!(evs, [Ev::Ping(payload.to_vec())]);
                assert_eq!(transmitted(&mut conn), [Ev::Pong(payload.to_vec())]);
                assert_eq!(
                    conn.heap_bytes(),
                    0,
                    "the control queue is released once drained"
                );
                assert_eq!(conn.state(), State::Open);
            }
        }
    }

    #[test]
    fn every_ping_gets_a_pong() {
        let mut conn = server();
        let bytes = cat(&[
            &cframe(true, OpCode::Ping, b"1"),
            &cframe(true, OpCode::Ping, b"2"),
            &cframe(true, OpCode::Ping, b"3"),
        ]);
        assert_eq!(feed(&mut conn, &bytes).len(), 3);
        assert_eq!(
            transmitted(&mut conn),
            [
                Ev::Pong(b"1".to_vec()),
                Ev::Pong(b"2".to_vec()),
                Ev::Pong(b"3".to_vec())
            ]
        );
    }

    #[test]
    fn pong_is_reported_and_not_answered() {
        for role in ROLES {
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(
                feed(&mut conn, &f(role, true, OpCode::Pong, b"p")),
                [Ev::Pong(b"p".to_vec())]
            );
            let mut out = Vec::new();
            assert!(!conn.poll_transmit(&mut out));
        }
    }

    #[test]
    fn fragmented_control_frame_is_1002() {
        for role in ROLES {
            for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
                assert_failing(role, &f(role, false, op, b""), 1002);
            }
        }
    }

    #[test]
    fn control_frame_over_125_bytes_is_1002() {
        for role in ROLES {
            for op in [0x89u8, 0x8A, 0x88] {
                let bytes = raw_frame(op, 126, &[0, 126], key_for(role), &[0; 126]);
                assert_failing(role, &bytes, 1002);
            }
        }
    }

    #[test]
    fn queued_ping_is_sent() {
        let mut conn = server();
        assert!(conn.ping(b"keepalive"));
        assert!(!conn.ping(&[0; 126]));
        assert_eq!(transmitted(&mut conn), [Ev::Ping(b"keepalive".to_vec())]);
    }
}

mod utf8_5_6 {
    use super::*;

    #[test]
    fn valid_multibyte_text() {
        for role in ROLES {
            let s = "κόσμε 𝄞 € ascii";
            assert_events(role, &f(role, true, OpCode::Text, s.as_bytes()), &[text(s)]);
        }
    }

    #[test]
    fn invalid_text_is_1007() {
        for role in ROLES {
            for bad in [
                &b"\xff"[..],
                b"ab\xc0\xafcd",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"ok\xe2\x82",
            ] {
                assert_failing(role, &f(role, true, OpCode::Text, bad), 1007);
            }
        }
    }

    #[test]
    fn invalid_binary_is_fine() {
        for role in ROLES {
            assert_events(
                role,
                &f(role, true, OpCode::Binary, b"\xff\xfe"),
                &[binary(b"\xff\xfe")],
            );
        }
    }

    #[test]
    fn code_point_split_across_fragments() {
        for role in ROLES {
            let s = "a€b𝄞c";
            let b = s.as_bytes();
            for cut in 0..=b.len() {
                let bytes = cat(&[
                    &f(role, false, OpCode::Text, &b[..cut]),
                    &f(role, true, OpCode::Continuation, &b[cut..]),
                ]);
                assert_events(role, &bytes, &[text(s)]);
            }
        }
    }

    #[test]
    fn code_point_split_across_reads_inside_one_frame() {
        for role in ROLES {
            let s = "€€€𝄞𝄞";
            let bytes = f(role, true, OpCode::Text, s.as_bytes());
            for cut in 2..bytes.len() {
                let mut conn = Connection::new(role, Limits::default());
                assert_eq!(feed_split(&mut conn, &bytes, &[cut]), [text(s)]);
            }
        }
    }

    #[test]
    fn fails_fast_inside_a_frame_before_its_end_arrives() {
        for role in ROLES {
            let mut payload = b"valid start ".to_vec();
            payload.push(0xff);
            payload.extend_from_slice(&[b'a'; 1000]);
            let bytes = f(role, true, OpCode::Text, &payload);
            let mut conn = Connection::new(role, Limits::default());
            // Only the header and the first 20 payload bytes arrive.
            let evs = feed(&mut conn, &bytes[..bytes.len() - 990]);
            assert!(matches!(evs[..], [Ev::Error(1007, _)]), "{evs:?}");
        }
    }

    #[test]
    fn fails_fast_on_a_certainly_invalid_incomplete_sequence() {
        // F4 90 can never start a valid code point (> U+10FFFF): fail without waiting for more bytes.
        for role in ROLES {
            let bytes = f(role, false, OpCode::Text, b"ab\xf4\x90");
            assert_failing(role, &bytes, 1007);
            // E2 82 may still become valid: no error yet.
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(
                feed(&mut conn, &f(role, false, OpCode::Text, b"ab\xe2\x82")),
                []
            );
            assert_eq!(
                feed(&mut conn, &f(role, true, OpCode::Continuation, b"\xac")),
                [text("ab€")]
            );
        }
    }

    #[test]
    fn fails_fast_in_first_fragment() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, b"\xc3\x28"),
                &f(role, false, OpCode::Continuation, b"more"),
            ]);
            assert_failing(role, &bytes, 1007);
        }
    }

    #[test]
    fn split_code_point_survives_an_interleaved_ping_split_over_reads() {
        // The reassembly buffer holds the incomplete tail of "€" while the ping's payload is appended after it and
        // removed again; validation must resume at the tail, not after the ping bytes.
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, b"cost: \xe2\x82"),
                &f(role, true, OpCode::Ping, &[0xff; 40]),
                &f(role, true, OpCode::Continuation, b"\xac"),
            ]);
            assert_events(role, &bytes, &[Ev::Ping(vec![0xff; 40]), text("cost: €")]);
        }
    }

    #[test]
    fn incomplete_sequence_at_message_end_is_1007() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, b"x\xf0\x9d"),
                &f(role, true, OpCode::Continuation, b"\x84"),
            ]);
            assert_failing(role, &bytes, 1007);
        }
    }
}

mod closing_5_5_1_and_7_4 {
    use super::*;

    const VALID: [u16; 16] = [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ];
    const INVALID: [u16; 13] = [
        0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 5001, 65535,
    ];

    #[test]
    fn close_code_table() {
        for c in VALID {
            assert!(is_valid_close_code(c), "{c}");
        }
        for c in INVALID {
            assert!(!is_valid_close_code(c), "{c}");
        }
    }

    #[test]
    fn peer_close_is_echoed_and_then_closed() {
        for role in ROLES {
            for code in VALID {
                let mut conn = Connection::new(role, Limits::default());
                let bytes = f(role, true, OpCode::Close, &close_payload(code, b"bye"));
                assert_eq!(
                    feed(&mut conn, &bytes),
                    [Ev::Close(Some(code), "bye".into())]
                );
                assert_eq!(conn.state(), State::Closing);
                assert!(!conn.can_send());
                assert_eq!(
                    transmitted(&mut conn),
                    [Ev::Close(Some(code), String::new())]
                );
                assert_eq!(conn.state(), State::Closed);
            }
        }
    }

    #[test]
    fn empty_close_is_answered_with_1000() {
        for role in ROLES {
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(
                feed(&mut conn, &f(role, true, OpCode::Close, b"")),
                [Ev::Close(None, String::new())]
            );
            assert_eq!(
                transmitted(&mut conn),
                [Ev::Close(Some(1000), String::new())]
            );
            assert_eq!(conn.state(), State::Closed);
        }
    }

    #[test]
    fn invalid_close_codes_are_1002() {
        for role in ROLES {
            for code in INVALID {
                assert_failing(
                    role,
                    &f(role, true, OpCode::Close, &close_payload(code, b"")),
                    1002,
                );
            }
        }
    }

    #[test]
    fn one_byte_close_payload_is_1002() {
        for role in ROLES {
            assert_failing(role, &f(role, true, OpCode::Close, &[0x03]), 1002);
        }
    }

    #[test]
    fn close_reason_must_be_utf8() {
        for role in ROLES {
            assert_failing(
                role,
                &f(
                    role,
                    true,
                    OpCode::Close,
                    &close_payload(1000, b"\xce\xba\xff"),
                ),
                1007,
            );
            let ok = close_payload(1000, "κ".as_bytes());
            assert_events(
                role,
                &f(role, true, OpCode::Close, &ok),
                &[Ev::Close(Some(1000), "κ".into())],
            );
        }
    }

    #[test]
    fn nothing_is_delivered_after_the_peer_close() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, true, OpCode::Text, b"before"),
                &f(role, true, OpCode::Close, &close_payload(1001, b"")),
                &f(role, true, OpCode::Text, b"after"),
                &f(role, true, OpCode::Ping, b"after"),
                b"\xff\xff garbage is ignored too",
            ]);
            assert_events(
                role,
                &bytes,
                &[text("before"), Ev::Close(Some(1001), String::new())],
            );
        }
    }

    #[test]
    fn close_inside_fragmented_message_drops_the_partial_message() {
        for role in ROLES {
            let bytes = cat(&[
                &f(role, false, OpCode::Text, &[b'p'; 10_000]),
                &f(role, true, OpCode::Close, &close_payload(1000, b"")),
            ]);
            let mut conn = Connection::new(role, Limits::default());
            let cut = bytes.len() - 20;
            assert_eq!(
                feed_split(&mut conn, &bytes, &[cut]),
                [Ev::Close(Some(1000), String::new())]
            );
            // Only the queued close reply remains on the heap, not the 10 kB of the dropped message.
            assert!(conn.heap_bytes() < 1000, "{}", conn.heap_bytes());
        }
    }

    #[test]
    fn we_initiate_then_peer_answers() {
        for role in ROLES {
            let now = Instant::now();
            let mut conn = Connection::new(role, Limits::default());
            conn.close(1001, "going away", now);
            assert_eq!(conn.state(), State::Closing);
            assert!(!conn.can_send());
            assert_eq!(
                transmitted(&mut conn),
                [Ev::Close(Some(1001), "going away".into())]
            );
            assert_eq!(conn.state(), State::Closing);
            // Data (and pings) from the peer after our close are not delivered, and no pong is sent.
            let evs = feed(
                &mut conn,
                &cat(&[
                    &f(role, true, OpCode::Text, b"late data"),
                    &f(role, true, OpCode::Ping, b"late ping"),
                    &f(role, true, OpCode::Close, &close_payload(1001, b"")),
                ]),
            );
            assert_eq!(evs, [Ev::Close(Some(1001), String::new())]);
            assert_eq!(conn.state(), State::Closed);
            assert_eq!(transmitted(&mut conn), []);
            // A second close() is a no-op.
            conn.close(1000, "", now);
            assert_eq!(transmitted(&mut conn), []);
        }
    }

    #[test]
    fn peer_close_before_our_close_is_transmitted() {
        let now = Instant::now();
        let mut conn = server();
        conn.close(1000, "", now);
        feed(
            &mut conn,
            &cframe(true, OpCode::Close, &close_payload(1000, b"")),
        );
        assert_eq!(conn.state(), State::Closing, "ours is not sent yet");
        assert_eq!(
            transmitted(&mut conn),
            [Ev::Close(Some(1000), String::new())]
        );
        assert_eq!(conn.state(), State::Closed);
    }

    #[test]
    fn invalid_local_code_is_replaced_and_reason_truncated() {
        let mut conn = server();
        let long = "é".repeat(100); // 200 bytes
        conn.close(1005, &long, Instant::now());
        let sent = transmitted(&mut conn);
        match &sent[..] {
            [Ev::Close(Some(1000), r)] => assert_eq!(r, &"é".repeat(61)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn close_timeout() {
        let now = Instant::now();
        let limits = Limits {
            close_timeout: Duration::from_secs(3),
            ..Limits::default()
        };
        let mut conn = Connection::new(Role::Server, limits);
        assert_eq!(conn.poll_timeout(), None);
        conn.close(1000, "", now);
        assert_eq!(conn.poll_timeout(), Some(now + Duration::from_secs(3)));
        conn.handle_timeout(now + Duration::from_secs(2));
        assert_eq!(conn.state(), State::Closing);
        conn.handle_timeout(now + Duration::from_secs(3));
        assert_eq!(conn.state(), State::Closed);
        assert_eq!(conn.poll_timeout(), None);
        // Input after the timeout is ignored.
        assert_eq!(feed(&mut conn, &cframe(true, OpCode::Text, b"x")), []);
    }

    #[test]
    fn no_timeout_while_open_or_after_peer_close() {
        let now = Instant::now();
        let mut conn = server();
        conn.handle_timeout(now + Duration::from_secs(3600));
        assert_eq!(conn.state(), State::Open);
        feed(&mut conn, &cframe(true, OpCode::Close, b""));
        assert_eq!(conn.poll_timeout(), None);
    }
}

mod limits {
    use super::*;

    fn limited(role: Role, frame: usize, message: usize) -> Connection {
        Connection::new(
            role,
            Limits {
                max_frame_size: frame,
                max_message_size: message,
                ..Limits::default()
            },
        )
    }

    #[test]
    fn frame_too_big_is_1009_from_the_header_alone() {
        for role in ROLES {
            let mut conn = limited(role, 1000, 1 << 20);
            let bytes = f(role, true, OpCode::Binary, &[0u8; 1001]);
            let hdr = 2 + 2 + if role == Role::Server { 4 } else { 0 };
            let evs = feed(&mut conn, &bytes[..hdr]);
            assert!(matches!(evs[..], [Ev::Error(1009, _)]), "{evs:?}");
            let mut conn = limited(role, 1000, 1 << 20);
            assert_eq!(
                feed(&mut conn, &f(role, true, OpCode::Binary, &[0u8; 1000])).len(),
                1
            );
        }
    }

    #[test]
    fn message_too_big_is_1009_from_the_header_of_the_fragment_that_exceeds() {
        for role in ROLES {
            let mut conn = limited(role, 1 << 20, 1000);
            let first = f(role, false, OpCode::Text, &[b'a'; 600]);
            let second = f(role, true, OpCode::Continuation, &[b'a'; 401]);
            assert_eq!(feed(&mut conn, &first), []);
            let hdr = 4 + if role == Role::Server { 4 } else { 0 };
            let evs = feed(&mut conn, &second[..hdr]);
            assert!(matches!(evs[..], [Ev::Error(1009, _)]), "{evs:?}");
            // Exactly at the limit is fine.
            let mut conn = limited(role, 1 << 20, 1000);
            let ok = cat(&[&first, &f(role, true, OpCode::Continuation, &[b'a'; 400])]);
            assert_eq!(feed(&mut conn, &ok), [Ev::Text("a".repeat(1000))]);
        }
    }

    #[test]
    fn unfragmented_message_over_the_message_limit_is_1009() {
        for role in ROLES {
            let mut conn = limited(role, 1 << 20, 100);
            let evs = feed(&mut conn, &f(role, true, OpCode::Binary, &[0u8; 101]));
            assert!(matches!(evs[..], [Ev::Error(1009, _)]), "{evs:?}");
        }
    }

    #[test]
    fn huge_declared_length_is_1009_not_an_allocation() {
        let mut conn = server();
        let ext = (1u64 << 40).to_be_bytes();
        let evs = feed(&mut conn, &raw_frame(0x82, 127, &ext, Some(KEY), &[]));
        assert!(matches!(evs[..], [Ev::Error(1009, _)]), "{evs:?}");
    }
}

mod memory {
    use super::*;

    #[test]
    fn connection_size_is_reported_and_small() {
        let size = std::mem::size_of::<Connection>();
        println!("size_of::<Connection>() = {size} bytes");
        assert!(size <= 96, "{size}");
    }

    #[test]
    fn whole_frames_never_touch_the_heap() {
        let mut conn = server();
        let bytes: Vec<u8> = (0..100)
            .flat_map(|i| cframe(true, OpCode::Text, format!("msg {i}").as_bytes()))
            .collect();
        assert_eq!(feed(&mut conn, &bytes).len(), 100);
        assert_eq!(conn.heap_bytes(), 0);
    }

    #[test]
    fn idle_connection_holds_no_heap_after_a_fragmented_or_split_message() {
        for role in ROLES {
            let mut conn = Connection::new(role, Limits::default());
            assert_eq!(conn.heap_bytes(), 0);
            let big = vec![b'z'; 200_000];
            let bytes = cat(&[
                &f(role, false, OpCode::Text, &big),
                &f(role, true, OpCode::Continuation, b"!"),
            ]);
            let evs = feed_split(&mut conn, &bytes, &[1000, 150_000]);
            assert_eq!(evs.len(), 1);
            assert_eq!(conn.heap_bytes(), 0);
            // A message still in progress holds its bytes.
            feed(&mut conn, &f(role, false, OpCode::Binary, b"part"));
            assert!(conn.heap_bytes() >= 4);
        }
    }
}

mod round_trip {
    use super::*;

    #[test]
    fn client_frames_decode_in_server_role_and_back() {
        let msgs: [&[u8]; 4] = [b"", b"short", &[0xAA; 1000], &[0x55; 70_000]];
        for m in msgs {
            let mut v = Vec::new();
            ringws::proto::write_client_frame(&mut v, true, OpCode::Binary, m, [9, 8, 7, 6]);
            assert_eq!(feed(&mut server(), &v), [binary(m)]);
            let mut v = Vec::new();
            write_frame(&mut v, true, OpCode::Binary, m);
            assert_eq!(feed(&mut client(), &v), [binary(m)]);
        }
    }

    #[test]
    fn client_role_pongs_and_closes_are_masked() {
        let mut conn = client();
        feed(&mut conn, &sframe(true, OpCode::Ping, b"abc"));
        let mut out = Vec::new();
        conn.poll_transmit(&mut out);
        assert_eq!(out[1] & 0x80, 0x80, "client frames carry a mask");
        assert_eq!(feed(&mut server(), &out), [Ev::Pong(b"abc".to_vec())]);
    }
}

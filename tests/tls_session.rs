//! The sans-IO TLS session against an in-memory rustls client: handshakes (TLS 1.3 and 1.2), data both ways with the
//! bytes split at random points, resumption, close_notify, alerts, and bad input (plain HTTP, garbage, truncated
//! handshakes, a client that stops mid-record).

mod tls_util;

use proptest::prelude::*;
use ringws::tls::{NotTls, TlsError, MAX_PENDING_TLS};
use rustls::{AlertDescription, ProtocolVersion, SupportedProtocolVersion};
use std::io::Write;
use tls_util::*;

const VERSIONS: [(&SupportedProtocolVersion, ProtocolVersion); 2] = [
    (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
];

#[test]
fn handshake_and_echo_both_versions() {
    let (store, cert, _dir) = store();
    for (v, want) in VERSIONS {
        let mut p = pair(&store, &client_config(&cert.der, v));
        assert!(p.server.is_handshaking());
        assert_eq!(p.server.is_resumed(), None);
        p.handshake().unwrap();
        assert_eq!(
            p.handshake_events, 1,
            "handshake_completed is reported once"
        );
        assert_eq!(p.server.protocol_version(), Some(want));
        assert_eq!(p.server.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(p.client.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(p.server.is_resumed(), Some(false));
        assert_eq!(
            p.server.is_handed_over(),
            want == ProtocolVersion::TLSv1_3,
            "TLS 1.3 goes to the record layer after the handshake, TLS 1.2 stays with rustls"
        );
        p.client_sends(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        p.server_sends(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert_eq!(
            p.server.pending_len(),
            0,
            "nothing held after whole records"
        );
    }
}

#[test]
fn large_messages_cross_many_records() {
    let (store, cert, _dir) = store();
    for (v, _) in VERSIONS {
        let mut p = pair(&store, &client_config(&cert.der, v));
        p.handshake().unwrap();
        let big: Vec<u8> = (0..(1 << 20) + 17).map(|i| (i * 7 % 251) as u8).collect();
        p.client_sends(&big).unwrap();
        p.server_sends(&big).unwrap();
        p.server_sends(&[]).unwrap();
        assert_eq!(p.server.pending_len(), 0);
    }
}

#[test]
fn encrypt_before_handshake_is_refused() {
    let (store, _cert, _dir) = store();
    let mut s = store.acceptor().accept().unwrap();
    let mut out = Vec::new();
    assert!(matches!(
        s.encrypt(b"early", &mut out),
        Err(TlsError::Handshaking)
    ));
    assert!(out.is_empty());
    assert!(
        !s.close(&mut out).unwrap(),
        "no close_notify before the handshake"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

    /// The same conversation split at arbitrary points gives the same plaintext on both sides.
    #[test]
    fn any_split_gives_the_same_plaintext(
        tls13 in any::<bool>(),
        key_updates in any::<bool>(),
        in_place in any::<bool>(),
        cuts in prop::collection::vec(1usize..700, 1..12),
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..20_000), 1..5),
    ) {
        let (store, cert, _dir) = store();
        let v = if tls13 { VERSIONS[0].0 } else { VERSIONS[1].0 };
        let mut p = pair(&store, &client_config(&cert.der, v));
        p.cuts = cuts;
        p.in_place = in_place;
        p.handshake().unwrap();
        if key_updates {
            p.server.set_key_update_interval(3);
        }
        for m in &msgs {
            if key_updates && tls13 {
                p.client.refresh_traffic_keys().unwrap();
            }
            p.client_sends(m).unwrap();
            p.server_sends(m).unwrap();
        }
        // Several messages in one flight, then split.
        for m in &msgs {
            p.client.writer().write_all(m).unwrap();
        }
        let before = p.server_got.len();
        p.pump().unwrap();
        let all = msgs.concat();
        prop_assert_eq!(&p.server_got[before..], all.as_slice());
        prop_assert_eq!(p.server.pending_len(), 0);
    }

    /// Reads of many whole records at once (large cuts, messages over several records, key updates between them):
    /// the plaintext is decrypted and joined in the read's own bytes, in order, and none of it is copied out
    /// unless a record was completed from input held since the previous read.
    #[test]
    fn whole_records_are_decrypted_and_joined_in_place(
        key_update in any::<bool>(),
        cuts in prop::collection::vec(1usize..70_000, 1..6),
        msgs in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40_000), 1..6),
    ) {
        let (store, cert, _dir) = store();
        let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
        p.handshake().unwrap();
        prop_assert!(p.server.is_handed_over());
        p.cuts = cuts;
        p.in_place = true;
        for (i, m) in msgs.iter().enumerate() {
            if key_update && i == 1 {
                p.client.refresh_traffic_keys().unwrap();
            }
            p.client.writer().write_all(m).unwrap();
        }
        p.pump().unwrap();
        prop_assert_eq!(&p.server_got, &msgs.concat());
        prop_assert_eq!(p.server.pending_len(), 0);
        prop_assert_eq!(p.sink_without_held, 0, "plaintext of whole records stays in place");
    }
}

/// The record lengths in `ciphertext` (each record's header, in order).
fn record_lens(mut ciphertext: &[u8]) -> Vec<usize> {
    let mut lens = Vec::new();
    while ciphertext.len() >= 5 {
        let len = u16::from_be_bytes([ciphertext[3], ciphertext[4]]) as usize;
        lens.push(len);
        ciphertext = &ciphertext[5 + len..];
    }
    assert!(ciphertext.is_empty(), "whole records");
    lens
}

#[test]
fn encrypted_parts_share_records_up_to_16_kib() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    let payload: Vec<u8> = (0..16384u32).map(|i| (i * 13 % 251) as u8).collect();
    // Content + content type byte + 16-byte tag per record.
    let header = [0x82u8, 0x7e, 0x40, 0x00];
    let out = p.server_sends_parts(&[&header, &payload]).unwrap();
    assert_eq!(
        record_lens(&out),
        [16384 + 17, 4 + 17],
        "a 16 KiB payload behind its frame header: one full record and the 4 bytes left"
    );
    let out = p.server_sends_parts(&[&header, &payload[..8000]]).unwrap();
    assert_eq!(record_lens(&out), [8004 + 17], "one record for both parts");
    let out = p
        .server_sends_parts(&[b"", &payload[..10], b"", &payload, &payload[..3]])
        .unwrap();
    assert_eq!(record_lens(&out), [16384 + 17, 13 + 17]);
    assert!(p.server_sends_parts(&[b"", b""]).unwrap().is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Arbitrary bytes after a completed handshake (after some valid records, maybe inside a record-shaped header)
    /// end in an error or are held as an incomplete record; never a panic, never plaintext that was not sent.
    #[test]
    fn garbage_after_the_handshake_never_panics(
        tls13 in any::<bool>(),
        header in any::<bool>(),
        typ in prop::sample::select(vec![0x14u8, 0x15, 0x16, 0x17, 0x18, 0x00]),
        junk in prop::collection::vec(any::<u8>(), 0..600),
        cut in 1usize..64,
        in_place in any::<bool>(),
    ) {
        let (store, cert, _dir) = store();
        let v = if tls13 { VERSIONS[0].0 } else { VERSIONS[1].0 };
        let mut p = pair(&store, &client_config(&cert.der, v));
        p.in_place = in_place;
        p.handshake().unwrap();
        p.client_sends(b"valid first").unwrap();
        let mut bytes = Vec::new();
        if header {
            bytes.extend_from_slice(&[typ, 3, 3]);
            bytes.extend_from_slice(&(junk.len() as u16).to_be_bytes());
        }
        bytes.extend_from_slice(&junk);
        p.cuts = vec![cut];
        let before = p.server_got.clone();
        match p.feed_server(&bytes) {
            Ok(()) => prop_assert!(p.server.pending_len() <= bytes.len()),
            Err(e) => prop_assert!(!e.reason().is_empty()),
        }
        prop_assert_eq!(p.server_got, before, "no plaintext from garbage");
    }
}

#[test]
fn resumption_both_versions() {
    let (store, cert, _dir) = store();
    for (v, want) in VERSIONS {
        let cfg = client_config(&cert.der, v);
        let mut first = pair(&store, &cfg);
        first.handshake().unwrap();
        // TLS 1.3 tickets arrive after the handshake: let the client read them.
        first.client_sends(b"x").unwrap();
        assert_eq!(first.server.is_resumed(), Some(false));

        let mut second = pair(&store, &cfg);
        second.handshake().unwrap();
        assert_eq!(second.server.protocol_version(), Some(want));
        assert_eq!(second.server.is_resumed(), Some(true), "{want:?} resumes");
        second.client_sends(b"resumed").unwrap();
        second.server_sends(b"yes").unwrap();
    }
}

#[test]
fn resumption_survives_a_reload() {
    let (store, cert, _dir) = store();
    let cfg = client_config(&cert.der, &rustls::version::TLS13);
    let mut first = pair(&store, &cfg);
    first.handshake().unwrap();
    first.client_sends(b"x").unwrap();
    store.reload().unwrap();
    let mut second = pair(&store, &cfg);
    second.handshake().unwrap();
    assert_eq!(second.server.is_resumed(), Some(true));
}

#[test]
fn close_notify_both_ways() {
    let (store, cert, _dir) = store();
    for (v, _) in VERSIONS {
        let mut p = pair(&store, &client_config(&cert.der, v));
        p.handshake().unwrap();
        p.client.writer().write_all(b"last words").unwrap();
        p.client.send_close_notify();
        p.pump().unwrap();
        assert_eq!(p.server_got, b"last words");
        assert!(p.peer_closed, "close_notify is a clean close event");
        assert!(p.server.is_peer_closed());
        // The server may still answer, then closes.
        p.server_sends(b"bye").unwrap();
        let mut out = Vec::new();
        assert!(p.server.close(&mut out).unwrap());
        p.deliver_to_client(&out);
        assert!(p.client.process_new_packets().unwrap().peer_has_closed());
        assert!(matches!(
            p.server.encrypt(b"more", &mut out),
            Err(TlsError::Closed)
        ));
        assert!(
            !p.server.close(&mut out).unwrap(),
            "close_notify is sent once"
        );
        // Bytes after close_notify are ignored, not an error.
        p.feed_server(&[0x17, 3, 3, 0, 20]).unwrap();
        assert_eq!(p.server_got, b"last words");
    }
}

#[test]
fn server_close_first() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    let mut out = Vec::new();
    assert!(p.server.close(&mut out).unwrap());
    p.deliver_to_client(&out);
    assert!(p.client.process_new_packets().unwrap().peer_has_closed());
    p.client.send_close_notify();
    p.pump().unwrap();
    assert!(p.peer_closed);
}

#[test]
fn plain_http_on_the_tls_port() {
    let (store, _cert, _dir) = store();
    for cut in [1, 2, 100] {
        let mut p = Pair::new(
            client(&client_config(&make_cert().der, &rustls::version::TLS13)),
            store.acceptor().accept().unwrap(),
        );
        p.cuts = vec![cut];
        let err = p
            .feed_server(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_err();
        assert!(
            matches!(err, TlsError::NotTls(NotTls::PlainHttp)),
            "{err:?}"
        );
        assert_eq!(err.reason(), "plain_http");
        assert!(
            p.last_server_out.is_empty(),
            "nothing TLS is sent to a plain HTTP client"
        );
        // The session refuses anything further.
        assert!(matches!(
            p.feed_server(&[0x16, 3, 1]),
            Err(TlsError::Closed)
        ));
    }
}

#[test]
fn garbage_first_bytes() {
    let (store, _cert, _dir) = store();
    for bytes in [
        &[0u8, 1, 2, 3][..],
        &[0x80, 0x2e, 0x01],
        &[0x16, 0x02, 0x00],
        b"\r\n",
        &[0x17, 3, 3, 0, 5],
    ] {
        let mut s = store.acceptor().accept().unwrap();
        let mut out = Vec::new();
        let err = s
            .read_tls(&mut bytes.to_vec(), &mut out, &mut |_| {
                panic!("no plaintext")
            })
            .unwrap_err();
        assert!(
            matches!(err, TlsError::NotTls(NotTls::Garbage)),
            "{bytes:?}: {err:?}"
        );
        assert_eq!(err.reason(), "not_tls");
    }
    // One byte 0x16 is not enough to tell; the second decides.
    let mut s = store.acceptor().accept().unwrap();
    let mut out = Vec::new();
    s.read_tls(&mut [0x16], &mut out, &mut |_| ()).unwrap();
    let err = s.read_tls(&mut [0x01], &mut out, &mut |_| ()).unwrap_err();
    assert!(matches!(err, TlsError::NotTls(NotTls::Garbage)));
}

#[test]
fn bad_handshake_record_gets_an_alert() {
    let (store, _cert, _dir) = store();
    let mut s = store.acceptor().accept().unwrap();
    let mut out = Vec::new();
    // A handshake record carrying a ServerHello (type 2) instead of a ClientHello.
    let mut rec = vec![0x16, 3, 1, 0, 8, 2, 0, 0, 4, 3, 3, 0, 0];
    let err = s.read_tls(&mut rec, &mut out, &mut |_| ()).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert_eq!(err.reason(), "protocol");
    assert_eq!(
        out.first(),
        Some(&0x15),
        "a fatal alert record is queued: {out:?}"
    );
}

#[test]
fn oversized_record_is_refused() {
    let (store, _cert, _dir) = store();
    let mut s = store.acceptor().accept().unwrap();
    let mut out = Vec::new();
    let mut rec = vec![0x16, 3, 1, 0xff, 0xff];
    let err = s.read_tls(&mut rec, &mut out, &mut |_| ()).unwrap_err();
    assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    assert_eq!(s.pending_len(), 0);
}

#[test]
fn truncated_handshake_holds_only_the_fragment() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    let hello = p.client_output();
    p.feed_server(&hello[..hello.len() / 2]).unwrap();
    assert!(p.server.is_handshaking());
    assert_eq!(p.server.pending_len(), hello.len() / 2);
    assert!(
        p.last_server_out.is_empty(),
        "no answer to half a ClientHello"
    );
    // The rest arrives later: the handshake goes on.
    p.feed_server(&hello[hello.len() / 2..]).unwrap();
    p.handshake().unwrap();
    assert_eq!(p.server.pending_len(), 0);
}

#[test]
fn client_that_stops_mid_record() {
    let (store, cert, _dir) = store();
    for (v, _) in VERSIONS {
        let mut p = pair(&store, &client_config(&cert.der, v));
        p.handshake().unwrap();
        p.client.writer().write_all(&[b'a'; 3000]).unwrap();
        let rec = p.client_output();
        p.feed_server(&rec[..rec.len() - 1]).unwrap();
        assert!(
            p.server_got.is_empty(),
            "no plaintext from an incomplete record"
        );
        assert_eq!(p.server.pending_len(), rec.len() - 1);
        assert!(p.server.pending_len() < MAX_PENDING_TLS);
        // Meanwhile the server can still send.
        p.server_sends(b"ping").unwrap();
        p.feed_server(&rec[rec.len() - 1..]).unwrap();
        assert_eq!(p.server_got, vec![b'a'; 3000]);
        assert_eq!(
            p.server.pending_len(),
            0,
            "the held record is freed once complete"
        );
    }
}

#[test]
fn tampered_record_is_a_protocol_error() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    p.client.writer().write_all(b"secret").unwrap();
    let mut rec = p.client_output();
    let last = rec.len() - 1;
    rec[last] ^= 1;
    let err = p.feed_server(&rec).unwrap_err();
    assert!(
        matches!(err, TlsError::Protocol(rustls::Error::DecryptError)),
        "{err:?}"
    );
    assert!(p.server_got.is_empty());
    assert!(
        matches!(
            p.client_error,
            Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac))
        ),
        "the client is told: {:?}",
        p.client_error
    );
}

#[test]
fn client_alert_is_reported() {
    let (store, _cert, _dir) = store();
    // The client trusts another certificate: it aborts the handshake with an alert.
    let other = make_cert();
    let mut p = pair(&store, &client_config(&other.der, &rustls::version::TLS13));
    let hello = p.client_output();
    p.feed_server(&hello).unwrap();
    assert!(
        p.client_error.is_some(),
        "the client refuses the certificate"
    );
    let alert = p.client_output();
    let err = p.feed_server(&alert).unwrap_err();
    assert!(matches!(err, TlsError::PeerAlert(_)), "{err:?}");
    assert!(p.server.is_handshaking());
    assert_eq!(err.reason(), "peer_alert");
}

#[test]
fn alpn_without_http11_is_refused() {
    let (store, cert, _dir) = store();
    let mut cfg = (*client_config(&cert.der, &rustls::version::TLS13)).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let mut p = pair(&store, &std::sync::Arc::new(cfg));
    let err = p.pump().unwrap_err();
    assert_eq!(err.reason(), "incompatible", "{err:?}");
    assert!(
        matches!(
            p.client_error,
            Some(rustls::Error::AlertReceived(
                AlertDescription::NoApplicationProtocol
            ))
        ),
        "the client is told: {:?}",
        p.client_error
    );
}

#[test]
fn client_without_alpn_is_served() {
    let (store, cert, _dir) = store();
    let mut cfg = (*client_config(&cert.der, &rustls::version::TLS12)).clone();
    cfg.alpn_protocols.clear();
    let mut p = pair(&store, &std::sync::Arc::new(cfg));
    p.handshake().unwrap();
    assert_eq!(p.server.alpn_protocol(), None);
    p.client_sends(b"hi").unwrap();
}

/// Found by the `tls` fuzz target: a handshake message longer than its record, then an error, made the alert flush
/// call rustls with an empty buffer while its handshake joiner still pointed into the input, and rustls panicked.
#[test]
fn oversized_handshake_message_then_error_does_not_panic() {
    let (store, _cert, _dir) = store();
    let mut input = vec![
        0x16, 0x03, 0x01, 0x02, 0x00, 0x04, 0x03, 0x04, 0x03, 0x03, 0x00, 0x2d, 0x00, 0x02, 0x01,
        0x01,
    ];
    input.resize(0x205, 0);
    for cut in [input.len(), 7, 100, 300] {
        let mut s = store.acceptor().accept().unwrap();
        let mut out = Vec::new();
        let mut res = Ok(Default::default());
        for chunk in input.chunks(cut) {
            res = s.read_tls(&mut chunk.to_vec(), &mut out, &mut |_| {
                panic!("no plaintext")
            });
            if res.is_err() {
                break;
            }
        }
        let err = res.expect_err("refused");
        assert!(matches!(err, TlsError::Protocol(_)), "{err:?}");
    }
}

#[test]
fn key_updates_both_ways_after_the_hand_over() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    assert!(p.server.is_handed_over());
    for i in 0..4 {
        // The client asks for an update: the server takes new receive keys and answers with new send keys.
        p.client.refresh_traffic_keys().unwrap();
        p.client_sends(format!("after client key update {i}").as_bytes())
            .unwrap();
        p.server_sends(format!("answer {i}").as_bytes()).unwrap();
    }
    // The server updates its own keys every 2 records (in real use: before the cipher's confidentiality limit).
    p.server.set_key_update_interval(2);
    for i in 0..10 {
        p.server_sends(format!("server record {i}").as_bytes())
            .unwrap();
        p.client_sends(b"still reading").unwrap();
    }
    assert!(p.client_error.is_none());
    assert_eq!(p.server.pending_len(), 0);
}

#[test]
fn records_after_the_hand_over_are_checked() {
    let (store, cert, _dir) = store();
    let cfg = client_config(&cert.der, &rustls::version::TLS13);
    // A record claiming more than 16 KiB + 256 of ciphertext.
    let mut p = pair(&store, &cfg);
    p.handshake().unwrap();
    let err = p.feed_server(&[0x17, 3, 3, 0x41, 0x01]).unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::Protocol(rustls::Error::PeerSentOversizedRecord)
        ),
        "{err:?}"
    );
    assert!(
        matches!(
            p.client_error,
            Some(rustls::Error::AlertReceived(
                AlertDescription::RecordOverflow
            ))
        ),
        "{:?}",
        p.client_error
    );
    // An unprotected record type after the handshake.
    let mut p = pair(&store, &cfg);
    p.handshake().unwrap();
    let err = p.feed_server(&[0x16, 3, 3, 0, 1, 0]).unwrap_err();
    assert_eq!(err.reason(), "protocol", "{err:?}");
    assert!(
        matches!(
            p.client_error,
            Some(rustls::Error::AlertReceived(
                AlertDescription::UnexpectedMessage
            ))
        ),
        "{:?}",
        p.client_error
    );
    // A protected record too short to hold a tag.
    let mut p = pair(&store, &cfg);
    p.handshake().unwrap();
    let err = p.feed_server(&[0x17, 3, 3, 0, 3, 1, 2, 3]).unwrap_err();
    assert_eq!(err.reason(), "protocol", "{err:?}");
}

#[test]
fn every_tls13_suite_after_the_hand_over() {
    let (store, cert, _dir) = store();
    for suite in ["AES_128_GCM", "AES_256_GCM", "CHACHA20_POLY1305"] {
        let mut p = pair(&store, &client_config_suite(&cert.der, suite));
        p.cuts = vec![1, 5, 300];
        p.handshake().unwrap();
        assert!(p.server.is_handed_over(), "{suite}");
        assert!(
            format!("{:?}", p.client.negotiated_cipher_suite().unwrap().suite()).contains(suite),
            "{suite} negotiated"
        );
        let big: Vec<u8> = (0..40_000).map(|i| (i % 253) as u8).collect();
        p.client_sends(&big).unwrap();
        p.server_sends(&big).unwrap();
        p.client.refresh_traffic_keys().unwrap();
        p.client_sends(b"after a key update").unwrap();
        p.server_sends(b"ok").unwrap();
    }
}

#[test]
fn server_prefers_aes_128_gcm_but_serves_clients_without_it() {
    let (store, cert, _dir) = store();
    // rustls' default client order puts AES-256-GCM first; the server's order decides.
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    let suite = p.client.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    for only in ["AES_256_GCM", "CHACHA20"] {
        let mut p = pair(&store, &client_config_suite(&cert.der, only));
        p.handshake().unwrap();
        let suite = format!("{:?}", p.client.negotiated_cipher_suite().unwrap().suite());
        assert!(suite.contains(only), "{suite}");
    }
}

#[test]
fn only_a_busy_session_keeps_expanded_keys_and_drops_them_when_idle() {
    let (store, cert, _dir) = store();
    let mut p = pair(&store, &client_config(&cert.der, &rustls::version::TLS13));
    p.handshake().unwrap();
    p.client_sends(b"GET /echo HTTP/1.1\r\n\r\n").unwrap();
    p.server_sends(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        .unwrap();
    assert!(
        !p.server.holds_keys(),
        "a session used once or twice expands keys per call"
    );
    for i in 0..10u8 {
        p.client_sends(&[i; 100]).unwrap();
        p.server_sends(&[i; 100]).unwrap();
    }
    assert!(p.server.holds_keys(), "a busy session keeps them");
    p.server.sweep();
    assert!(p.server.holds_keys(), "busy since the last sweep: kept");
    p.client_sends(b"one more").unwrap();
    p.server_sends(b"one more").unwrap();
    p.server.sweep();
    assert!(
        !p.server.holds_keys(),
        "nearly idle since the last sweep: dropped"
    );
    // Busy again, with key updates both ways: the kept keys follow them.
    p.server.set_key_update_interval(3);
    for i in 0..20u8 {
        if i % 5 == 0 {
            p.client.refresh_traffic_keys().unwrap();
        }
        p.client_sends(&[i; 3000]).unwrap();
        p.server_sends(&[i; 20000]).unwrap();
    }
    assert!(p.server.holds_keys());
}

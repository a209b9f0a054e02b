//! Opening handshake tests (RFC 6455 section 4), grouped by section.

use ringws::handshake::{
    accept_key, check_head, parse_request, reason_phrase, validate_upgrade, write_accept_response,
    write_response, BodyLength, ClientHandshake, HttpError, Request, DEFAULT_MAX_REQUEST_SIZE,
};

const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid request head with the given header lines (each without CRLF) replacing the defaults of the same name.
fn request_with(overrides: &[(&str, Option<&str>)]) -> String {
    let mut lines: Vec<(String, String)> = vec![
        ("Host".into(), "server.example.com".into()),
        ("Upgrade".into(), "websocket".into()),
        ("Connection".into(), "Upgrade".into()),
        ("Sec-WebSocket-Key".into(), RFC_KEY.into()),
        ("Sec-WebSocket-Version".into(), "13".into()),
    ];
    for (name, value) in overrides {
        lines.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            lines.push((name.to_string(), v.to_string()));
        }
    }
    let mut s = String::from("GET /chat HTTP/1.1\r\n");
    for (n, v) in lines {
        s += &format!("{n}: {v}\r\n");
    }
    s + "\r\n"
}

fn parse(s: &str) -> Request {
    let (req, n) = parse_request(s.as_bytes(), DEFAULT_MAX_REQUEST_SIZE)
        .expect("parses")
        .expect("complete");
    assert_eq!(n, s.len());
    req
}

fn status_of(s: &str) -> u16 {
    validate_upgrade(&parse(s)).unwrap_err().status
}

// ---- 1.3 / 4.2.2: the accept key ----

#[test]
fn rfc_6455_example_accept_key() {
    assert_eq!(accept_key(RFC_KEY.as_bytes()), RFC_ACCEPT);
    let up = validate_upgrade(&parse(&request_with(&[]))).unwrap();
    assert_eq!(up.accept, RFC_ACCEPT);
}

#[test]
fn rfc_6455_example_request() {
    let s = "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let req = parse(s);
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/chat");
    assert_eq!(req.version, 1);
    assert!(req.is_upgrade());
    assert_eq!(req.header("HOST"), Some("server.example.com"));
    assert!(req
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    let up = validate_upgrade(&req).unwrap();
    assert_eq!(up.accept, RFC_ACCEPT);
    assert_eq!(up.origin.as_deref(), Some("http://example.com"));
    assert_eq!(up.protocols, ["chat", "superchat"]);
    assert!(up.extensions.is_empty());
}

// ---- 4.2.1: parsing the request head ----

#[test]
fn partial_input_byte_by_byte() {
    let s = request_with(&[]);
    let b = s.as_bytes();
    for i in 0..b.len() {
        assert_eq!(
            parse_request(&b[..i], DEFAULT_MAX_REQUEST_SIZE)
                .unwrap()
                .map(|(_, n)| n),
            None,
            "prefix of {i} bytes"
        );
    }
    let (_, n) = parse_request(b, DEFAULT_MAX_REQUEST_SIZE).unwrap().unwrap();
    assert_eq!(n, b.len());
}

#[test]
fn trailing_bytes_are_not_consumed() {
    let s = request_with(&[]);
    let mut b = s.clone().into_bytes();
    b.extend_from_slice(&[0x81, 0x85, 1, 2, 3, 4]);
    let (_, n) = parse_request(&b, DEFAULT_MAX_REQUEST_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(n, s.len());
}

#[test]
fn oversized_head_is_431() {
    let big = "x".repeat(DEFAULT_MAX_REQUEST_SIZE);
    let s = request_with(&[("X-Big", Some(&big))]);
    // Complete but over the cap.
    let e = parse_request(s.as_bytes(), DEFAULT_MAX_REQUEST_SIZE).unwrap_err();
    assert_eq!(e.status, 431);
    // Incomplete, not yet at the cap: wait; at the cap: 431.
    let b = s.as_bytes();
    assert!(
        parse_request(&b[..DEFAULT_MAX_REQUEST_SIZE - 1], DEFAULT_MAX_REQUEST_SIZE)
            .unwrap()
            .is_none()
    );
    assert_eq!(
        parse_request(&b[..DEFAULT_MAX_REQUEST_SIZE], DEFAULT_MAX_REQUEST_SIZE)
            .unwrap_err()
            .status,
        431
    );
}

#[test]
fn head_exactly_at_cap_is_accepted() {
    let s = request_with(&[]);
    let r = parse_request(s.as_bytes(), s.len()).unwrap();
    assert!(r.is_some());
    assert_eq!(
        parse_request(s.as_bytes(), s.len() - 1).unwrap_err().status,
        431
    );
}

#[test]
fn too_many_headers_is_431() {
    let mut s = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        s += &format!("X-{i}: v\r\n");
    }
    s += "\r\n";
    assert_eq!(
        parse_request(s.as_bytes(), 1 << 20).unwrap_err().status,
        431
    );
}

#[test]
fn malformed_is_400() {
    for s in [
        "GET /chat HTTP/1.1\r\nHost server\r\n\r\n",
        "GET /chat HTTP/9.9\r\n\r\n",
        "\0\0\0\r\n\r\n",
        "GET /chat HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET\r\n\r\n",
    ] {
        assert_eq!(
            parse_request(s.as_bytes(), DEFAULT_MAX_REQUEST_SIZE).unwrap_err(),
            HttpError {
                status: 400,
                reason: "malformed request head"
            },
            "{s:?}"
        );
    }
}

#[test]
fn non_utf8_header_value_is_kept_lossily() {
    let mut b = b"GET / HTTP/1.1\r\nHost: a\r\nX-Latin: caf".to_vec();
    b.push(0xE9);
    b.extend_from_slice(b"\r\n\r\n");
    let (req, _) = parse_request(&b, DEFAULT_MAX_REQUEST_SIZE)
        .unwrap()
        .unwrap();
    assert!(req.header("x-latin").unwrap().starts_with("caf"));
}

// ---- 4.2.1: validating the upgrade, every rejection with its status ----

#[test]
fn method_not_get_is_405_with_allow() {
    let s = request_with(&[]).replacen("GET", "POST", 1);
    let r = validate_upgrade(&parse(&s)).unwrap_err();
    assert_eq!(r.status, 405);
    assert_eq!(r.headers, vec![("Allow", "GET".to_string())]);
}

#[test]
fn http_1_0_is_400() {
    let s = request_with(&[]).replacen("HTTP/1.1", "HTTP/1.0", 1);
    assert_eq!(status_of(&s), 400);
}

#[test]
fn missing_or_duplicate_host_is_400() {
    assert_eq!(status_of(&request_with(&[("Host", None)])), 400);
    let s = request_with(&[]).replacen("\r\n\r\n", "\r\nHost: other\r\n\r\n", 1);
    assert_eq!(status_of(&s), 400);
}

#[test]
fn missing_or_wrong_upgrade_is_400() {
    assert_eq!(status_of(&request_with(&[("Upgrade", None)])), 400);
    assert_eq!(status_of(&request_with(&[("Upgrade", Some("h2c"))])), 400);
    assert!(!parse(&request_with(&[("Upgrade", None)])).is_upgrade());
}

#[test]
fn missing_connection_upgrade_is_400() {
    assert_eq!(status_of(&request_with(&[("Connection", None)])), 400);
    assert_eq!(
        status_of(&request_with(&[("Connection", Some("keep-alive"))])),
        400
    );
    // A token is a whole list element, not a substring.
    assert_eq!(
        status_of(&request_with(&[("Connection", Some("upgrade-insecure"))])),
        400
    );
}

#[test]
fn wrong_version_is_426_with_version_header() {
    for v in [
        None,
        Some("8"),
        Some("12"),
        Some("14"),
        Some("13, 8"),
        Some(""),
    ] {
        let r =
            validate_upgrade(&parse(&request_with(&[("Sec-WebSocket-Version", v)]))).unwrap_err();
        assert_eq!(r.status, 426, "{v:?}");
        assert_eq!(r.headers, vec![("Sec-WebSocket-Version", "13".to_string())]);
    }
    // Repeated version header.
    let s = request_with(&[]).replacen("\r\n\r\n", "\r\nSec-WebSocket-Version: 13\r\n\r\n", 1);
    assert_eq!(status_of(&s), 426);
}

#[test]
fn bad_key_is_400() {
    for k in [
        None,
        Some(""),
        Some("not base64 at all!!!!!!!"),
        Some("dGhlIHNhbXBsZSBub25jZQ"),       // unpadded
        Some("dGhlIHNhbXBsZSBub25jZSE="),     // 17 bytes
        Some("dGhlIHNhbXBsZSBub25j"),         // 15 bytes
        Some("dGhlIHNhbXBsZSBub25jZQ==AAAA"), // trailing data
    ] {
        assert_eq!(
            status_of(&request_with(&[("Sec-WebSocket-Key", k)])),
            400,
            "{k:?}"
        );
    }
    let s = request_with(&[]).replacen(
        "\r\n\r\n",
        &format!("\r\nSec-WebSocket-Key: {RFC_KEY}\r\n\r\n"),
        1,
    );
    assert_eq!(status_of(&s), 400);
}

#[test]
fn rejection_write_is_a_complete_response() {
    let r = validate_upgrade(&parse(&request_with(&[(
        "Sec-WebSocket-Version",
        Some("8"),
    )])))
    .unwrap_err();
    let mut out = Vec::new();
    r.write(&mut out);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
    assert!(text.contains("\r\nConnection: close\r\n"));
    assert!(text.ends_with(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        r.reason.len(),
        r.reason
    )));
}

// ---- header case and token lists ----

#[test]
fn header_case_and_token_list_variations() {
    let s = "get /x HTTP/1.1\r\n".to_string();
    // Methods are case-sensitive (RFC 9110 9.1): lower-case `get` is not GET.
    let with_method = request_with(&[]).replacen("GET /chat HTTP/1.1\r\n", &s, 1);
    assert_eq!(status_of(&with_method), 405);

    let s = "GET /chat HTTP/1.1\r\nhOsT: h\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
             SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version:    13   \r\n\r\n";
    assert_eq!(validate_upgrade(&parse(s)).unwrap().accept, RFC_ACCEPT);

    for conn in [
        "upgrade",
        "UPGRADE",
        "keep-alive,upgrade",
        "Upgrade , keep-alive",
        " x ,  Upgrade  ",
    ] {
        assert!(
            validate_upgrade(&parse(&request_with(&[("Connection", Some(conn))]))).is_ok(),
            "{conn}"
        );
    }
    // Token spread across repeated Connection headers.
    let s = request_with(&[("Connection", Some("keep-alive"))]).replacen(
        "\r\n\r\n",
        "\r\nConnection: Upgrade\r\n\r\n",
        1,
    );
    assert!(validate_upgrade(&parse(&s)).is_ok());
}

#[test]
fn protocols_and_extensions_across_repeated_headers() {
    let s = request_with(&[("Sec-WebSocket-Protocol", Some(" chat ,superchat,, "))]).replacen(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: v3.json\r\nSec-WebSocket-Extensions: permessage-deflate; \
         client_max_window_bits, x-foo; a=\"1,2\"\r\nSec-WebSocket-Extensions: bar\r\nOrigin: https://o.example\r\n\r\n",
        1,
    );
    let up = validate_upgrade(&parse(&s)).unwrap();
    assert_eq!(up.protocols, ["chat", "superchat", "v3.json"]);
    assert_eq!(
        up.extensions,
        [
            "permessage-deflate; client_max_window_bits",
            "x-foo; a=\"1,2\"",
            "bar"
        ]
    );
    assert_eq!(up.origin.as_deref(), Some("https://o.example"));
}

// ---- RFC 9112 / RFC 9110: strict request framing (Host, Content-Length, Transfer-Encoding) ----

/// A plain request head: the request line, then these header lines (each `Name: value`), then the blank line.
fn head(line: &str, headers: &[&str]) -> String {
    let mut s = format!("{line}\r\n");
    for h in headers {
        s += h;
        s += "\r\n";
    }
    s + "\r\n"
}

/// The answer a server gives to a raw head: the parse error or `check_head`'s error status, or 0 when it is accepted.
fn head_status(raw: &str) -> u16 {
    match parse_request(raw.as_bytes(), DEFAULT_MAX_REQUEST_SIZE) {
        Err(e) => e.status,
        Ok(None) => panic!("incomplete head {raw:?}"),
        Ok(Some((req, _))) => check_head(&req).err().map_or(0, |e| e.status),
    }
}

#[test]
fn malformed_heads_are_400() {
    const GET: &str = "GET / HTTP/1.1";
    let cases: &[(&str, &[&str])] = &[
        // RFC 9112 3.2: Host required, unique and well-formed.
        (GET, &[]),
        (GET, &["Content-Length: 5"]),
        (GET, &["Host: example.com", "Host: example.org"]),
        (GET, &["Host: example.com", "Host: example.com"]),
        ("GET / HTTP/1.0", &["Host: a", "Host: b"]),
        (GET, &["Host: exa mple.com"]),
        (GET, &["Host: example.com/path"]),
        (GET, &["Host: user@example.com"]),
        (GET, &["Host: example.com:80:80"]),
        (GET, &["Host: example.com:http"]),
        (GET, &["Host: example.com:65536"]),
        (GET, &["Host: example.com:-1"]),
        (GET, &["Host: [::1"]),
        (GET, &["Host: [not-an-address]:80"]),
        (GET, &["Host: [::1]x"]),
        (GET, &["Host: a%zz"]),
        // RFC 9110 8.6: one non-negative decimal.
        (GET, &["Host: e", "Content-Length: -1234"]),
        (
            GET,
            &["Host: e", "Content-Length: -123456789123456789123456789"],
        ),
        (
            GET,
            &["Host: e", "Content-Length: 123456789123456789123456789"],
        ),
        (GET, &["Host: e", "Content-Length: 18446744073709551616"]),
        (GET, &["Host: e", "Content-Length: abc"]),
        (GET, &["Host: e", "Content-Length: +5"]),
        (GET, &["Host: e", "Content-Length: 0x10"]),
        (GET, &["Host: e", "Content-Length: 5.0"]),
        (GET, &["Host: e", "Content-Length: 1 2"]),
        (GET, &["Host: e", "Content-Length: "]),
        (GET, &["Host: e", "Content-Length: 5,"]),
        (GET, &["Host: e", "Content-Length: 5, 6"]),
        (GET, &["Host: e", "Content-Length: 5", "Content-Length: 6"]),
        // RFC 9112 6.1 / 6.3: Transfer-Encoding.
        (
            GET,
            &["Host: e", "Transfer-Encoding: chunked", "Content-Length: 5"],
        ),
        (
            GET,
            &["Host: e", "Content-Length: 0", "Transfer-Encoding: chunked"],
        ),
        (
            "POST / HTTP/1.0",
            &["Host: e", "Transfer-Encoding: chunked"],
        ),
        (GET, &["Host: e", "Transfer-Encoding: chunked, chunked"]),
        (
            GET,
            &[
                "Host: e",
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: gzip",
            ],
        ),
        (GET, &["Host: e", "Transfer-Encoding: "]),
        (GET, &["Host: e", "Transfer-Encoding: chunked,"]),
        // Rejected by the parser itself (httparse): bad names, control bytes, bare CR, space before the colon.
        (GET, &["Host: e", "X-Invalid[]: test"]),
        (GET, &["Host: e", "X-Bad-Control-Char: test\x07"]),
        (GET, &["Host : e"]),
        ("GET / HTTP/1.1\r\nHost: e\r\n\rSome-Header: Test", &[]),
        ("Extra lineGET / HTTP/1.1", &["Host: e"]),
        ("GET / ", &[]),
    ];
    for (line, headers) in cases {
        let raw = head(line, headers);
        assert_eq!(head_status(&raw), 400, "{raw:?}");
    }
}

#[test]
fn unknown_transfer_coding_is_501() {
    for te in ["gzip, chunked", "identity", "x-custom;p=1, chunked"] {
        let raw = head(
            "POST / HTTP/1.1",
            &["Host: e", &format!("Transfer-Encoding: {te}")],
        );
        assert_eq!(head_status(&raw), 501, "{te}");
    }
}

#[test]
fn valid_heads_and_their_body_length() {
    let cases: &[(&str, &[&str], BodyLength)] = &[
        ("GET / HTTP/1.1", &["Host: example.com"], BodyLength::None),
        (
            "GET / HTTP/1.1",
            &["hoSt:\texample.com", "empty:"],
            BodyLength::None,
        ),
        ("GET / HTTP/1.1", &["Host: "], BodyLength::None),
        (
            "GET / HTTP/1.1",
            &["Host: 127.0.0.1:1338"],
            BodyLength::None,
        ),
        ("GET / HTTP/1.1", &["Host: [::1]:1338"], BodyLength::None),
        ("GET / HTTP/1.1", &["Host: [2001:db8::1]"], BodyLength::None),
        (
            "GET / HTTP/1.1",
            &["Host: xn--bcher-kva.example:"],
            BodyLength::None,
        ),
        (
            "GET / HTTP/1.1",
            &["Host: a_b.example%41:65535"],
            BodyLength::None,
        ),
        ("GET / HTTP/1.0", &[], BodyLength::None),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 5"],
            BodyLength::Fixed(5),
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 0"],
            BodyLength::Fixed(0),
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 007"],
            BodyLength::Fixed(7),
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 18446744073709551615"],
            BodyLength::Fixed(u64::MAX),
        ),
        // RFC 9110 8.6: identical repeated values are one value (see `check_head`).
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 42, 42"],
            BodyLength::Fixed(42),
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Content-Length: 42", "content-length: 42"],
            BodyLength::Fixed(42),
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Transfer-Encoding: chunked"],
            BodyLength::Chunked,
        ),
        (
            "POST / HTTP/1.1",
            &["Host: e", "Transfer-Encoding: CHUNKED"],
            BodyLength::Chunked,
        ),
    ];
    for (line, headers, want) in cases {
        let raw = head(line, headers);
        let (req, _) = parse_request(raw.as_bytes(), DEFAULT_MAX_REQUEST_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(check_head(&req), Ok(*want), "{raw:?}");
    }
    assert!(!BodyLength::None.has_body());
    assert!(!BodyLength::Fixed(0).has_body());
    assert!(BodyLength::Fixed(1).has_body());
    assert!(BodyLength::Chunked.has_body());
}

#[test]
fn upgrade_with_a_body_is_400() {
    // The bytes after an accepted upgrade's head are frames: a body would be read as one.
    for extra in [
        "Content-Length: 5",
        "Transfer-Encoding: chunked",
        "Content-Length: -1",
    ] {
        let s = request_with(&[]).replacen("\r\n\r\n", &format!("\r\n{extra}\r\n\r\n"), 1);
        assert_eq!(status_of(&s), 400, "{extra}");
    }
    let s = request_with(&[]).replacen("\r\n\r\n", "\r\nContent-Length: 0\r\n\r\n", 1);
    assert!(validate_upgrade(&parse(&s)).is_ok());
    let s = request_with(&[("Host", Some("bad host"))]);
    assert_eq!(status_of(&s), 400);
}

// ---- responses ----

#[test]
fn accept_response_format() {
    let mut out = Vec::new();
    write_accept_response(&mut out, RFC_ACCEPT, Some("chat"), None);
    assert_eq!(
        out,
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {RFC_ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        )
        .as_bytes()
    );
}

#[test]
fn reason_phrases() {
    for (s, p) in [
        (101, "Switching Protocols"),
        (200, "OK"),
        (400, "Bad Request"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (405, "Method Not Allowed"),
        (426, "Upgrade Required"),
        (429, "Too Many Requests"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (503, "Service Unavailable"),
    ] {
        assert_eq!(reason_phrase(s), p);
        let mut out = Vec::new();
        write_response(&mut out, s, &[], b"");
        assert!(out.starts_with(format!("HTTP/1.1 {s} {p}\r\n").as_bytes()));
    }
}

#[test]
fn write_response_format_and_no_injection() {
    let mut out = Vec::new();
    write_response(
        &mut out,
        404,
        &[
            ("Content-Type", "text/plain"),
            ("X-Evil", "a\r\nSet-Cookie: b"),
        ],
        b"nope",
    );
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-Evil: aSet-Cookie: b\r\n\
         Content-Length: 4\r\nConnection: close\r\n\r\nnope"
    );
}

// ---- 4.1: the client side, and a full round trip ----

#[test]
fn round_trip_client_server_client() {
    let client = ClientHandshake::new(*b"0123456789abcdef");
    let mut req = Vec::new();
    client.write_request(&mut req, "localhost:9001", "/ws", &["chat", "superchat"]);
    let (parsed, n) = parse_request(&req, DEFAULT_MAX_REQUEST_SIZE)
        .unwrap()
        .unwrap();
    assert_eq!(n, req.len());
    assert_eq!(parsed.path, "/ws");
    let up = validate_upgrade(&parsed).unwrap();
    assert_eq!(up.protocols, ["chat", "superchat"]);
    assert_eq!(up.accept, client.expected_accept());

    let mut resp = Vec::new();
    write_accept_response(&mut resp, &up.accept, Some("superchat"), None);
    let head_len = resp.len();
    resp.extend_from_slice(&[0x81, 0x02, b'h', b'i']); // a frame right behind the head
    for i in 0..head_len {
        assert_eq!(client.parse_response(&resp[..i]), Ok(None), "prefix {i}");
    }
    assert_eq!(client.parse_response(&resp), Ok(Some(head_len)));
    let d = client.parse_response_details(&resp).unwrap().unwrap();
    assert_eq!(d.protocol.as_deref(), Some("superchat"));
}

#[test]
fn client_rejects_bad_responses() {
    let client = ClientHandshake::new([7; 16]);
    let acc = client.expected_accept().to_string();
    let ok = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {acc}\r\n\r\n");
    assert!(client.parse_response(ok.as_bytes()).unwrap().is_some());
    let cases: Vec<(String, u16)> = vec![
        (
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".into(),
            403,
        ),
        (ok.replace("Upgrade: websocket\r\n", ""), 101),
        (ok.replace("Connection: Upgrade", "Connection: close"), 101),
        (ok.replace(&acc, RFC_ACCEPT), 101),
        (
            ok.replace(&format!("Sec-WebSocket-Accept: {acc}\r\n"), ""),
            101,
        ),
        (
            ok.replace(
                "\r\n\r\n",
                "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n",
            ),
            101,
        ),
        (
            ok.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: a, b\r\n\r\n"),
            101,
        ),
        ("HTTP/1.1 1O1 x\r\n\r\n".into(), 0),
        ("garbage\r\n\r\n".into(), 0),
    ];
    for (resp, status) in cases {
        let e = client.parse_response(resp.as_bytes()).unwrap_err();
        assert_eq!(e.status, status, "{resp:?}: {e}");
    }
    let huge = format!(
        "HTTP/1.1 101 OK\r\nX: {}\r\n\r\n",
        "y".repeat(DEFAULT_MAX_REQUEST_SIZE)
    );
    assert_eq!(
        client.parse_response(huge.as_bytes()).unwrap_err().status,
        0
    );
}

#[test]
fn client_request_format() {
    let client = ClientHandshake::new(*b"the sample nonce");
    assert_eq!(client.key(), RFC_KEY);
    assert_eq!(client.expected_accept(), RFC_ACCEPT);
    let mut out = Vec::new();
    client.write_request(&mut out, "h", "", &[]);
    let s = String::from_utf8(out).unwrap();
    assert!(s.starts_with("GET / HTTP/1.1\r\nHost: h\r\n"));
    assert!(!s.contains("Sec-WebSocket-Protocol"));
    assert!(s.ends_with("\r\n\r\n"));
}

// ---- robustness ----

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600), cap in 0usize..700) {
            if let Ok(Some((req, n))) = parse_request(&data, cap) {
                prop_assert!(n <= data.len() && n <= cap);
                let _ = validate_upgrade(&req);
            }
            let _ = ClientHandshake::new([1; 16]).parse_response(&data);
        }

        #[test]
        fn mutated_valid_request_never_panics(pos in 0usize..200, byte in any::<u8>(), cut in 0usize..220) {
            let mut b = request_with(&[("Sec-WebSocket-Protocol", Some("a, b"))]).into_bytes();
            let pos = pos % b.len();
            b[pos] = byte;
            b.truncate(cut.min(b.len()));
            if let Ok(Some((req, _))) = parse_request(&b, DEFAULT_MAX_REQUEST_SIZE) {
                let _ = validate_upgrade(&req);
            }
        }
    }
}

#[test]
fn client_offers_extensions_and_reads_the_selection() {
    let client =
        ClientHandshake::new([3; 16]).with_extensions(ringws::deflate::negotiate::CLIENT_OFFER);
    let mut req = Vec::new();
    client.write_request(&mut req, "localhost", "/echo", &[]);
    let (parsed, _) = parse_request(&req, DEFAULT_MAX_REQUEST_SIZE)
        .unwrap()
        .unwrap();
    let up = validate_upgrade(&parsed).unwrap();
    assert_eq!(
        up.extensions,
        ["permessage-deflate; client_max_window_bits"]
    );

    let answer = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    let mut resp = Vec::new();
    write_accept_response(&mut resp, &up.accept, None, Some(answer));
    let d = client.parse_response_details(&resp).unwrap().unwrap();
    assert_eq!(d.extensions.as_deref(), Some(answer));
    // No selection: no extension.
    let mut plain = Vec::new();
    write_accept_response(&mut plain, &up.accept, None, None);
    assert_eq!(
        client
            .parse_response_details(&plain)
            .unwrap()
            .unwrap()
            .extensions,
        None
    );
    // The same selection without an offer fails the handshake (RFC 6455 4.1).
    let bare = ClientHandshake::new([3; 16]);
    assert!(bare.parse_response_details(&resp).is_err());
}

//! Opening handshakes per second on the server side: parse the head, validate the upgrade (which computes the accept
//! key), write the 101 response. Also the pieces alone. Throughput is in handshakes (elements).
//!
//! `taskset -c 1 cargo bench --bench handshake -- --measurement-time 2 --warm-up-time 1`
//! (`RINGWS_BENCH_CLOCK=thread-cpu` measures thread CPU time instead of wall time, as in `benches/unmask.rs`)

#[macro_use]
mod common;

use criterion::measurement::Measurement;
use criterion::{black_box, Criterion, Throughput};
use ringws::handshake::{
    accept_key, parse_request, validate_upgrade, write_accept_response, ClientHandshake,
    DEFAULT_MAX_REQUEST_SIZE,
};

/// What a current browser sends (14 header lines, ~560 bytes).
const BROWSER_REQUEST: &[u8] = b"GET /chat?room=1 HTTP/1.1\r\n\
Host: ws.example.com:9001\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: https://www.example.com\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\
Sec-WebSocket-Protocol: chat, superchat\r\n\r\n";

fn bench_handshake<M: Measurement>(c: &mut Criterion<M>) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));

    let mut out = Vec::with_capacity(256);
    g.bench_function("server_full", |b| {
        b.iter(|| {
            let (req, n) = parse_request(black_box(BROWSER_REQUEST), DEFAULT_MAX_REQUEST_SIZE)
                .unwrap()
                .unwrap();
            let up = validate_upgrade(&req).unwrap();
            out.clear();
            let proto = up.protocols.first().map(String::as_str);
            write_accept_response(&mut out, &up.accept, proto, None);
            black_box((n, out.len()))
        })
    });
    g.bench_function("parse_request", |b| {
        b.iter(|| parse_request(black_box(BROWSER_REQUEST), DEFAULT_MAX_REQUEST_SIZE))
    });
    let (req, _) = parse_request(BROWSER_REQUEST, DEFAULT_MAX_REQUEST_SIZE)
        .unwrap()
        .unwrap();
    g.bench_function("validate_upgrade", |b| {
        b.iter(|| validate_upgrade(black_box(&req)))
    });
    g.bench_function("accept_key", |b| {
        b.iter(|| accept_key(black_box(b"dGhlIHNhbXBsZSBub25jZQ==")))
    });

    let client = ClientHandshake::new(*b"0123456789abcdef");
    let mut resp = Vec::new();
    write_accept_response(&mut resp, client.expected_accept(), None, None);
    g.bench_function("client_parse_response", |b| {
        b.iter(|| client.parse_response(black_box(&resp)))
    });
    g.finish();
}

bench_main!(bench_handshake);

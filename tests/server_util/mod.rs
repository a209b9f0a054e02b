//! Helpers for the integration tests: start the demo server in-process on a free loopback port, speak raw
//! frames over TCP, and read the server's frames back. Every read has a timeout so no test can hang.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

#[path = "../../src/bin/ringws/app.rs"]
mod app;
use app::DemoApp;

/// The page's files, embedded as the binary embeds them.
mod assets {
    include!(concat!(env!("OUT_DIR"), "/static_files.rs"));
}
use ringws::server::{Config, Server, ServerHandle};

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub fn config() -> Config {
    let mut c = Config::default();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.workers = 2;
    c.pin_workers = false;
    c
}

pub fn start(c: Config) -> ServerHandle {
    Server::new(c, DemoApp::new(assets::FILES))
        .expect("valid config")
        .start()
        .expect("server starts")
}

pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// The status code of an HTTP response text (0 if there is none).
fn status_of(text: &str) -> u16 {
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Read an HTTP response head (and nothing after it); returns (status, head text).
pub fn read_head(s: &mut TcpStream) -> (u16, String) {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(0) => break,
            Ok(_) => buf.push(b[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => panic!(
                "reading response head: {e} (got {:?})",
                String::from_utf8_lossy(&buf)
            ),
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    (status_of(&text), text)
}

/// Send a raw HTTP request and return (status, whole response as text) reading until the server closes.
pub fn http(addr: SocketAddr, req: &str) -> (u16, String) {
    let mut s = tcp(addr);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    (status_of(&text), text)
}

pub fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

/// Open a WebSocket with a raw handshake; returns the stream positioned after the 101 head.
pub fn ws_raw(addr: SocketAddr, path: &str) -> TcpStream {
    let mut s = tcp(addr);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let (status, head) = read_head(&mut s);
    assert_eq!(status, 101, "upgrade refused: {head}");
    s
}

/// A client frame, masked with a fixed key (tests want reproducible bytes).
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_raw(
        if fin { 0x80 } else { 0 } | opcode,
        payload,
        Some([0x37, 0xfa, 0x21, 0x3d]),
    )
}

/// Any frame: first byte as given, masked with `key` or unmasked.
pub fn frame_raw(b0: u8, payload: &[u8], key: Option<[u8; 4]>) -> Vec<u8> {
    let mut v = vec![b0];
    let m = if key.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        v.push(m | n as u8);
    } else if n < 65536 {
        v.push(m | 126);
        v.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match key {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

/// Read one server frame: (fin+opcode byte, payload). Panics on timeout.
pub fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut p = vec![0u8; len];
    s.read_exact(&mut p).expect("frame payload");
    (h[0], p)
}

/// Read frames until a close frame; return its status code (None for an empty close).
pub fn expect_close(s: &mut TcpStream) -> Option<u16> {
    loop {
        let (b0, p) = read_frame(s);
        if b0 & 0x0f == 0x8 {
            return if p.len() >= 2 {
                Some(u16::from_be_bytes([p[0], p[1]]))
            } else {
                None
            };
        }
    }
}

/// After the close handshake the server closes TCP: the next read sees EOF (or a reset).
pub fn expect_eof(s: &mut TcpStream) {
    match read_retrying(s) {
        Ok(0) => {}
        Ok(n) => panic!("expected EOF, got {n} more bytes"),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("expected EOF, got {e}"),
    }
}

/// One `read`, retried on EINTR.
pub fn read_retrying(s: &mut TcpStream) -> std::io::Result<usize> {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// Send a text message on a raw stream and check the echo.
pub fn assert_echo(s: &mut TcpStream, payload: &[u8]) {
    s.write_all(&frame(true, 1, payload)).unwrap();
    let (b0, p) = read_frame(s);
    assert_eq!(b0, 0x81);
    assert_eq!(p, payload);
}

/// Value of a metric summed over workers.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// `conns` connections to `/echo`, each writing `per_conn` binary frames of 1 B to 70 KB without waiting for
/// echoes, while its reader starts `reader_lag` late and then reads them back: every echo must come back intact
/// and in order. The server's queues fill and its reads pause; nothing may be lost or reordered. `client_rcvbuf`
/// caps each client's socket receive buffer (so the kernel cannot absorb the echoes and the server's queues must
/// grow).
pub fn flood_and_check_echoes(
    a: SocketAddr,
    conns: usize,
    per_conn: usize,
    reader_lag: Duration,
    client_rcvbuf: Option<usize>,
) {
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = ws_raw(a, "/echo");
                if let Some(n) = client_rcvbuf {
                    socket2::SockRef::from(&s).set_recv_buffer_size(n).unwrap();
                }
                let mut r = s.try_clone().unwrap();
                let msgs: Vec<Vec<u8>> = (0..per_conn)
                    .map(|i| {
                        let len = [1, 125, 126, 4096, 20_000, 70_000][(i + c) % 6];
                        (0..len).map(|k| (k * 31 + i * 7 + c) as u8).collect()
                    })
                    .collect();
                let sent = msgs.clone();
                let w = std::thread::spawn(move || {
                    for p in &sent {
                        s.write_all(&frame(true, 0x2, p)).unwrap();
                    }
                });
                std::thread::sleep(reader_lag);
                for (i, p) in msgs.iter().enumerate() {
                    let (b0, got) = read_frame(&mut r);
                    assert_eq!(b0, 0x82, "connection {c} message {i}");
                    assert!(
                        &got == p,
                        "connection {c} message {i}: {} bytes came back for {}",
                        got.len(),
                        p.len()
                    );
                }
                w.join().unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

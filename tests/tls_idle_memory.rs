//! Idle wss connections against the real binary (one worker, TLS): the server's resident memory per idle TLS
//! WebSocket is measured from /proc like `tests/idle_memory.rs` and reported. 1,000 connections by default (full
//! TLS 1.3 handshakes in a debug build take a while); `RINGWS_TLS_IDLE_CONNS=10000` for the figure in
//! perf/tls-choice.md.

mod tls_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tls_util::*;

struct Server(Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn upgrade(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut s = rustls::StreamOwned::new(client(cfg), tcp);
    s.write_all(
        b"GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 256];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "server closed during the handshake");
        head.extend_from_slice(&b[..n]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

fn echo(s: &mut Tls, p: &[u8]) {
    let mut f = vec![0x82, 0x80 | p.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(p);
    s.write_all(&f).unwrap();
    let mut r = vec![0u8; 2 + p.len()];
    s.read_exact(&mut r).unwrap();
    assert_eq!(&r[2..], p, "frame {r:?}");
}

#[test]
fn idle_wss_connections_hold_no_buffers() {
    let conns: usize = std::env::var("RINGWS_TLS_IDLE_CONNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a live local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(
        lim.rlim_cur as usize >= conns + 100,
        "RLIMIT_NOFILE hard limit {} < {}",
        lim.rlim_cur,
        conns + 100
    );
    let dir = TempDir::new("idle");
    let cert = make_cert();
    let files = write_cert(&dir, &cert);
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_ringws"))
        // No idle pings: a slow machine may take longer than half the idle timeout to open them all.
        .args([
            "--workers",
            "1",
            "--no-pin",
            "--idle-timeout",
            "0",
            "--port",
            &port.to_string(),
        ])
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .arg("--max-connections")
        .arg((conns + 1000).to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let srv = Server(child);
    let pid = srv.0.id();
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Full handshakes only (no resumption), as a crowd of new clients would do.
    let mut cfg = (*client_config(&cert.der, &rustls::version::TLS13)).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    // Warm up: a few connections, and 8 MiB through one so every receive-ring buffer has been touched.
    let mut open: Vec<Tls> = (0..100).map(|_| upgrade(port, &cfg)).collect();
    let big = vec![b'x'; 60 << 10];
    for _ in 0..140 {
        let mut f = vec![0x82, 0x80 | 126];
        f.extend_from_slice(&(big.len() as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&big);
        open[0].write_all(&f).unwrap();
        let mut r = vec![0u8; 4 + big.len()];
        open[0].read_exact(&mut r).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes(pid);
    let start = Instant::now();
    open.extend((100..conns).map(|_| upgrade(port, &cfg)));
    let took = start.elapsed();
    std::thread::sleep(Duration::from_millis(2200));
    let after = rss_bytes(pid);
    let per = after.saturating_sub(before) as f64 / (conns - 100) as f64;
    println!(
        "server RSS {:.1} MiB -> {:.1} MiB with {conns} idle wss connections: {per:.0} bytes per connection \
         ({} handshakes + upgrades in {took:?})",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        conns - 100
    );
    // The goal is <= 2 KiB (perf/tls-choice.md: ~1.1-1.3 KiB measured; a plain connection is ~215 B of it).
    assert!(per <= 2048.0, "{per:.0} B per idle wss connection");
    for (i, s) in open.iter_mut().enumerate().step_by(499) {
        echo(s, format!("{i}").as_bytes());
    }
}

//! Idle wss connections against the real binary (one worker, TLS): the server's resident memory per idle TLS
//! WebSocket is measured from /proc like `tests/idle_memory.rs` and reported. 1,000 connections by default (full
//! TLS 1.3 handshakes in a debug build take a while); `RINGWS_TLS_IDLE_CONNS=10000` for the figure in
//! perf/tls-choice.md.

mod memory_util;
mod tls_util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memory_util::*;
use tls_util::*;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn upgrade(port: u16, cfg: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    upgrade_stream(rustls::StreamOwned::new(client(cfg), tcp))
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
    let limit = raise_nofile_limit();
    assert!(
        limit >= conns + 100,
        "RLIMIT_NOFILE hard limit {limit} < {}",
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
    wait_listening(port);
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

//! Both floor servers echo every byte in order, over many connections and across buffer boundaries, and `tcp_load`
//! drives them without mismatches. Loopback only; every socket has a 10 s timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a server on an ephemeral port; its first stderr line says "... listening on ADDR, ...".
fn start(bin: &str) -> Server {
    let mut child = Command::new(bin)
        .arg("127.0.0.1:0")
        .env("FLOOR_BUFS", "4")
        .env("FLOOR_BUF_SIZE", "4096")
        .env("FLOOR_READ_BUF", "4096")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn server");
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, addr }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Send `total` bytes in chunks of varying size from one thread while this one reads the echo; compare all.
fn echo_stream(addr: SocketAddr, total: usize, seed: u8) {
    let s = connect(addr);
    let data: Vec<u8> = (0..total)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    let mut w = s.try_clone().unwrap();
    let out = data.clone();
    let writer = std::thread::spawn(move || {
        let sizes = [1usize, 7, 4095, 4096, 4097, 20, 16384, 65536];
        let (mut off, mut k) = (0, 0);
        while off < out.len() {
            let n = sizes[k % sizes.len()].min(out.len() - off);
            w.write_all(&out[off..off + n]).unwrap();
            off += n;
            k += 1;
        }
    });
    let mut got = vec![0u8; total];
    (&s).read_exact(&mut got).unwrap();
    writer.join().unwrap();
    assert!(got == data, "echo differs from what was sent");
}

fn check_server(bin: &str) {
    let srv = start(bin);
    // Several connections at once, each larger than the whole (4 x 4 KiB) receive buffer ring.
    let addr = srv.addr;
    let hs: Vec<_> = (0..4)
        .map(|i| std::thread::spawn(move || echo_stream(addr, 300_000, i)))
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    // A peer that leaves without a word does not disturb the next one.
    drop(connect(addr));
    let s = connect(addr);
    (&s).write_all(b"ping").unwrap();
    let mut b = [0u8; 4];
    (&s).read_exact(&mut b).unwrap();
    assert_eq!(&b, b"ping");
    // The load client runs against it without mismatches.
    let out = Command::new(env!("CARGO_BIN_EXE_tcp_load"))
        .args([
            "--conns",
            "4",
            "--size",
            "100",
            "--duration",
            "300ms",
            "--warmup",
            "100ms",
            "--json",
        ])
        .arg("--server-pid")
        .arg(srv.child.id().to_string())
        .arg(addr.to_string())
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "tcp_load failed: {json} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json.contains("\"mismatches\":0") && json.contains("\"errors_total\":0"),
        "{json}"
    );
    assert!(
        !json.contains("\"server_cpu_us_per_msg\":null"),
        "server CPU not measured: {json}"
    );
}

#[test]
fn uring_echo_echoes_everything() {
    check_server(env!("CARGO_BIN_EXE_uring_echo"));
}

#[test]
fn tokio_uring_echo_echoes_everything() {
    check_server(env!("CARGO_BIN_EXE_tokio_uring_echo"));
}

#[test]
fn tcp_load_fails_without_a_server() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_tcp_load"))
        .args(["--conns", "1", "--duration", "100ms", "--warmup", "0s"])
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

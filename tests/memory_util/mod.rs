//! Helpers of the memory tests (`idle_memory`, `tls_idle_memory`): the server process, its RSS, a free port, an
//! upgrade to `/echo` over any stream.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::process::Child;

/// The server process, killed when dropped.
pub struct Server(pub Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn rss_bytes(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Upgrade `s` to a WebSocket on `/echo` and read the 101 head.
pub fn upgrade_stream<S: Read + Write>(s: S) -> S {
    upgrade_stream_with(s, "").0
}

/// Upgrade `s` to a WebSocket on `/echo` with `extra` header lines (each ending in CRLF) and return it with the 101
/// head.
pub fn upgrade_stream_with<S: Read + Write>(mut s: S, extra: &str) -> (S, String) {
    let req = format!(
        "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 256];
    while !head.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).unwrap();
        assert!(n > 0, "server closed during the handshake");
        head.extend_from_slice(&b[..n]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    (s, head)
}

/// Raises the soft limit on open files to the hard limit and returns it.
pub fn raise_nofile_limit() -> usize {
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
    lim.rlim_cur as usize
}

/// Waits (up to 10 s) until something accepts TCP connections on `port`.
pub fn wait_listening(port: u16) {
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

//! The server over TLS on loopback: https and wss on one listener, real clients (rustls + tungstenite, Python
//! `websockets`, `openssl s_client`), resumption, plain HTTP and garbage on the TLS port, stalled handshakes, the
//! handshake cap, certificate reload (library call, and SIGHUP to the binary), a bad certificate at start.

mod server_util;
mod tls_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringws::server::{Config, ServerHandle};
use rustls::ClientConfig;
use tls_util::*;
use tungstenite::Message;

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

struct TlsServer {
    handle: ServerHandle,
    cert: TestCert,
    dir: TempDir,
}

fn start(tune: impl FnOnce(&mut Config)) -> TlsServer {
    let dir = TempDir::new("server");
    let cert = make_cert();
    let files = write_cert(&dir, &cert);
    let mut c = server_util::config();
    c.workers = 1;
    c.tls = Some(files);
    tune(&mut c);
    TlsServer {
        handle: server_util::start(c),
        cert,
        dir,
    }
}

impl TlsServer {
    fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
    fn client(&self) -> Arc<ClientConfig> {
        client_config(&self.cert.der, &rustls::version::TLS13)
    }
    /// A counter from /metrics (summed over workers), read in-process (no connection, so no handshake slot).
    fn metric(&self, name: &str) -> u64 {
        self.handle
            .context()
            .metrics_text()
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
    /// Waits (up to 5 s) until a metric satisfies `ok`: workers publish their counters once per loop turn.
    fn wait_metric(&self, name: &str, ok: impl Fn(u64) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok(self.metric(name)) {
            assert!(
                Instant::now() < deadline,
                "{name} stayed at {}",
                self.metric(name)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(server_util::TIMEOUT)).unwrap();
    s.set_write_timeout(Some(server_util::TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn tls_connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Result<Tls, std::io::Error> {
    let conn = client(cfg);
    let mut s = rustls::StreamOwned::new(conn, tcp(addr));
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock)?;
    }
    Ok(s)
}

/// GET over https with `Connection: close`; the whole response as text.
fn https_get(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str) -> String {
    let mut s = tls_connect(addr, cfg).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out)
        .expect("the response ends with close_notify");
    String::from_utf8_lossy(&out).into_owned()
}

fn wss(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> tungstenite::WebSocket<Tls> {
    let s = tls_connect(addr, cfg).unwrap();
    let (ws, resp) = tungstenite::client::client("wss://localhost/echo", s).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

fn echo(ws: &mut tungstenite::WebSocket<Tls>, payload: Vec<u8>) {
    ws.send(Message::Binary(payload.clone().into())).unwrap();
    match ws.read().unwrap() {
        Message::Binary(b) => assert!(
            b[..] == payload[..],
            "echo differs ({} bytes)",
            payload.len()
        ),
        m => panic!("unexpected {m:?}"),
    }
}

/// Reads until EOF or error; true if the server closed the connection within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let start = Instant::now();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if start.elapsed() > within {
            return false;
        }
    }
}

#[test]
fn https_and_wss_on_one_listener() {
    let srv = start(|_| {});
    for v in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let cfg = client_config(&srv.cert.der, v);
        let page = https_get(srv.addr(), &cfg, "/healthz");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        let mut ws = wss(srv.addr(), &cfg);
        assert_eq!(ws.get_ref().conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        for n in [0, 1, 125, 126, 16 * 1024, 70_000] {
            echo(&mut ws, (0..n).map(|i| i as u8).collect());
        }
        ws.close(None).unwrap();
        while ws.read().is_ok() {}
    }
    srv.wait_metric("ringws_tls_handshakes_total", |v| v >= 4);
    srv.wait_metric("ringws_tls_handshakes_in_progress", |v| v == 0);
}

/// Large echoes over wss: records are decrypted in the receive buffer and a payload still lying there is sent
/// from it (sealed into the send buffer, its one copy); messages pipelined so reads hold many records, some of
/// them cut between reads, and sizes around the 16 KiB record limit.
#[test]
fn wss_large_echoes_are_parsed_and_sent_from_the_receive_buffer() {
    let srv = start(|_| {});
    let mut ws = wss(srv.addr(), &srv.client());
    for _ in 0..20 {
        echo(&mut ws, vec![7u8; 16 * 1024]);
    }
    srv.wait_metric("ringws_zero_copy_sends_total", |v| v >= 1);
    let sizes = [
        4096usize, 16380, 16384, 16385, 30_000, 65_000, 200_000, 5000, 1,
    ];
    let msgs: Vec<Vec<u8>> = (0..3)
        .flat_map(|round| sizes.map(move |n| (0..n).map(|i| (i * 31 + round) as u8).collect()))
        .collect();
    for m in &msgs {
        ws.send(Message::Binary(m.clone().into())).unwrap();
    }
    for m in &msgs {
        match ws.read().unwrap() {
            Message::Binary(b) => assert!(b[..] == m[..], "echo differs ({} bytes)", m.len()),
            other => panic!("unexpected {other:?}"),
        }
    }
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
}

#[test]
fn wss_echo_with_python_websockets() {
    let srv = start(|_| {});
    let script = r#"
import asyncio, os, ssl, sys
from websockets.asyncio.client import connect
async def main(url, ca):
    ctx = ssl.create_default_context(cafile=ca)
    async with connect(url, ssl=ctx, max_size=None, open_timeout=10, close_timeout=5) as ws:
        for n in [0, 1, 125, 126, 65535, 65536, 1 << 20]:
            data = os.urandom(n)
            await ws.send(data)
            back = await asyncio.wait_for(ws.recv(), 10)
            assert back == data, (n, len(back))
        await ws.send("h\u00e9llo")
        assert await asyncio.wait_for(ws.recv(), 10) == "h\u00e9llo"
    print("echo ok")
asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 60))
"#;
    let ca = srv.dir.path("cert.pem");
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(format!("wss://localhost:{}/echo", srv.addr().port()))
        .arg(&ca)
        .output()
        .expect("python3 runs (scripts/test.sh installs the websockets package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'websockets"),
        "Python websockets is missing: python3 -m pip install 'websockets>=13'"
    );
    assert!(out.status.success(), "python websockets failed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "echo ok");
}

/// `openssl s_client` sends a request; returns its whole output.
fn s_client(addr: SocketAddr, ca: &std::path::Path, extra: &[&str]) -> String {
    let mut child = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "localhost",
            "-ign_eof",
        ])
        .arg("-CAfile")
        .arg(ca)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "s_client did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn openssl_s_client_tls13_and_resumption() {
    let srv = start(|_| {});
    let ca = srv.dir.path("cert.pem");
    let sess = srv.dir.path("session.pem");
    let sess = sess.to_str().unwrap();
    let first = s_client(
        srv.addr(),
        &ca,
        &["-tls1_3", "-alpn", "http/1.1", "-sess_out", sess],
    );
    assert!(first.contains("New, TLSv1.3"), "{first}");
    assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
    assert!(first.contains("HTTP/1.1 200 OK"), "{first}");
    let second = s_client(srv.addr(), &ca, &["-tls1_3", "-sess_in", sess]);
    assert!(second.contains("Reused, TLSv1.3"), "{second}");
    assert!(second.contains("HTTP/1.1 200 OK"), "{second}");
    let tls12 = s_client(srv.addr(), &ca, &["-tls1_2"]);
    assert!(tls12.contains("TLSv1.2"), "{tls12}");
    assert!(tls12.contains("HTTP/1.1 200 OK"), "{tls12}");
    srv.wait_metric("ringws_tls_resumed_total", |v| v >= 1);
}

#[test]
fn bad_clients_are_closed_and_others_keep_echoing() {
    let srv = start(|c| c.handshake_timeout = Duration::from_secs(1));
    let cfg = srv.client();
    let mut good = wss(srv.addr(), &cfg);
    echo(&mut good, b"before".to_vec());

    // Plain HTTP: a 400 that says why, then the close.
    let mut plain = tcp(srv.addr());
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("speaks TLS"), "{answer}");
    echo(&mut good, b"after plain http".to_vec());

    // Garbage: closed at once.
    let mut garbage = tcp(srv.addr());
    garbage.write_all(&[0u8, 1, 2, 3, 4, 5]).unwrap();
    assert!(closed_within(&mut garbage, Duration::from_secs(2)));

    // A truncated ClientHello, and a client that completes the handshake then stops mid-record: both closed by
    // the handshake timeout (it covers the TLS handshake and the request head).
    let mut hello = client(&cfg);
    let mut bytes = Vec::new();
    hello.write_tls(&mut bytes).unwrap();
    let mut truncated = tcp(srv.addr());
    truncated.write_all(&bytes[..bytes.len() / 2]).unwrap();
    let mut mid = tls_connect(srv.addr(), &cfg).unwrap();
    mid.sock
        .write_all(&[0x17, 0x03, 0x03, 0x01, 0x00, 0xaa])
        .unwrap();
    echo(&mut good, b"while they stall".to_vec());
    assert!(
        closed_within(&mut truncated, Duration::from_secs(4)),
        "truncated handshake closed"
    );
    assert!(
        closed_within(&mut mid.sock, Duration::from_secs(4)),
        "stalled record closed"
    );

    echo(&mut good, b"after all of them".to_vec());
    srv.wait_metric("ringws_tls_plain_http_total", |v| v == 1);
    srv.wait_metric("ringws_tls_not_tls_total", |v| v == 1);
    srv.wait_metric("ringws_handshake_timeouts_total", |v| v >= 2);
    srv.wait_metric("ringws_tls_handshakes_in_progress", |v| v == 0);
}

#[test]
fn tls_failure_on_an_open_websocket_closes_only_it() {
    let srv = start(|_| {});
    let cfg = srv.client();
    let mut good = wss(srv.addr(), &cfg);
    let mut bad = wss(srv.addr(), &cfg);
    echo(&mut bad, b"fine so far".to_vec());
    // A forged application-data record: the server cannot decrypt it and drops the connection.
    bad.get_mut()
        .sock
        .write_all(
            &[0x17, 0x03, 0x03, 0x00, 0x20]
                .iter()
                .copied()
                .chain([7u8; 32])
                .collect::<Vec<_>>(),
        )
        .unwrap();
    let mut sock = bad.get_ref().sock.try_clone().unwrap();
    assert!(closed_within(&mut sock, Duration::from_secs(4)));
    echo(&mut good, b"unaffected".to_vec());
    srv.wait_metric("ringws_tls_errors_total", |v| v >= 1);
}

#[test]
fn handshake_cap_closes_connections_over_it() {
    let srv = start(|c| c.max_tls_handshakes_per_worker = 1);
    let stalled = tcp(srv.addr());
    srv.wait_metric("ringws_tls_handshakes_in_progress", |v| v == 1);
    let mut over = tcp(srv.addr());
    assert!(
        closed_within(&mut over, Duration::from_secs(3)),
        "a connection over the cap is closed"
    );
    srv.wait_metric("ringws_tls_handshakes_capped_total", |v| v == 1);
    drop(stalled);
    // Once the stalled one is gone, handshakes are admitted again.
    srv.wait_metric("ringws_tls_handshakes_in_progress", |v| v == 0);
    assert!(https_get(srv.addr(), &srv.client(), "/healthz").starts_with("HTTP/1.1 200"));
}

#[test]
fn reload_keeps_open_connections_and_serves_the_new_certificate() {
    let srv = start(|_| {});
    let old_cfg = srv.client();
    let mut before = wss(srv.addr(), &old_cfg);
    echo(&mut before, b"one".to_vec());

    // A bad file: the reload fails, naming it, and the old certificate stays.
    std::fs::write(srv.dir.path("cert.pem"), "garbage").unwrap();
    let store = srv.handle.tls().expect("a TLS server has a store");
    let e = store.reload().unwrap_err();
    assert!(e.to_string().contains("cert.pem"), "{e}");
    assert!(https_get(srv.addr(), &old_cfg, "/healthz").starts_with("HTTP/1.1 200"));

    let new = make_cert();
    write_cert(&srv.dir, &new);
    store.reload().unwrap();
    echo(&mut before, b"still here after the reload".to_vec());

    let new_cfg = client_config(&new.der, &rustls::version::TLS13);
    let after = tls_connect(srv.addr(), &new_cfg).unwrap();
    assert_eq!(after.conn.peer_certificates().unwrap()[0], new.der);
    // A client without a session to resume (one that has would resume: ticket keys outlive a reload).
    let fresh_old = client_config(&srv.cert.der, &rustls::version::TLS13);
    assert!(
        tls_connect(srv.addr(), &fresh_old).is_err(),
        "the old certificate is no longer served"
    );
    echo(&mut before, b"and still".to_vec());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Child(std::process::Child);
impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn binary_reloads_on_sighup_and_refuses_a_bad_certificate() {
    let dir = TempDir::new("bin");
    let old = make_cert();
    let files = write_cert(&dir, &old);
    let bin = env!("CARGO_BIN_EXE_ringws");

    // A missing key: a clear message naming the file, exit code 3.
    let out = Command::new(bin)
        .args(["--port", "0", "--workers", "1", "--no-pin", "--tls-cert"])
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(dir.path("missing-key.pem"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing-key.pem") && err.contains("cannot read"),
        "{err}"
    );

    let port = free_port();
    let child = Child(
        Command::new(bin)
            .args(["--port", &port.to_string(), "--workers", "1", "--no-pin"])
            .env("RINGWS_TLS_CERT", &files.cert)
            .env("RINGWS_TLS_KEY", &files.key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let old_cfg = client_config(&old.der, &rustls::version::TLS13);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut before = loop {
        if TcpStream::connect(addr).is_ok() {
            break wss(addr, &old_cfg);
        }
        assert!(Instant::now() < deadline, "the binary did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    echo(&mut before, b"before SIGHUP".to_vec());

    let new = make_cert();
    write_cert(&dir, &new);
    // SAFETY: kill(2) on the pid of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) }, 0);
    let new_cfg = client_config(&new.der, &rustls::version::TLS13);
    let deadline = Instant::now() + Duration::from_secs(5);
    let after = loop {
        if let Ok(s) = tls_connect(addr, &new_cfg) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(after.conn.peer_certificates().unwrap()[0], new.der);
    echo(&mut before, b"after SIGHUP".to_vec());
}

//! Runs the `loadtest` binary over wss:// against the real ringws server (the demo app) with a certificate made at
//! test time (rcgen): every mode with the CA trusted (`--ca-file`), `--insecure`, the handshake mode with and
//! without resumption, and a CA that did not sign the server's certificate (every connection fails as `tls`, a
//! clear message, exit status 1). Never a speed bar.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../src/bin/ringws/app.rs"]
mod app;
use app::DemoApp;
use ringws::server::{Config, Server, ServerHandle};
use ringws::tls::TlsFiles;

struct Fixture {
    port: u16,
    /// The CA file to trust (the server's self-signed certificate).
    ca: PathBuf,
    /// A certificate that did not sign the server's.
    other_ca: PathBuf,
    _server: ServerHandle,
}

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("loadtest-wss-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The TLS server shared by the tests of this file.
fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let d = dir();
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names.clone()).unwrap();
        let files = TlsFiles {
            cert: d.join("cert.pem"),
            key: d.join("key.pem"),
        };
        std::fs::write(&files.cert, ck.cert.pem()).unwrap();
        std::fs::write(&files.key, ck.signing_key.serialize_pem()).unwrap();
        let other = rcgen::generate_simple_self_signed(names).unwrap();
        let other_ca = d.join("other.pem");
        std::fs::write(&other_ca, other.cert.pem()).unwrap();
        let mut c = Config::default();
        c.bind = "127.0.0.1:0".parse().unwrap();
        c.workers = 2;
        c.pin_workers = false;
        c.tls = Some(files.clone());
        let server = Server::new(c, DemoApp::new(&[])).unwrap().start().unwrap();
        Fixture {
            port: server.local_addr().port(),
            ca: files.cert,
            other_ca,
            _server: server,
        }
    })
}

fn run(path: &str, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let f = fixture();
    let url = format!("wss://127.0.0.1:{}{path}", f.port);
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &url, "--duration", "1s", "--warmup", "200ms"])
        .args(["--json", "--quiet", "--no-pin", "--connect-timeout", "5s"])
        .args(extra)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), v, stderr)
}

fn ca() -> String {
    fixture().ca.display().to_string()
}

fn assert_clean(code: i32, v: &serde_json::Value) {
    assert_eq!(v["mismatches"], 0, "{v:#}");
    assert_eq!(v["errors_total"], 0, "{v:#}");
    assert!(v["received"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn echo_with_ca_file() {
    let ca = ca();
    let (code, v, _) = run("/echo", &["--ca-file", &ca, "--conns", "8", "--size", "20"]);
    assert_clean(code, &v);
    assert_eq!(v["connected"], 8);
    assert!(v["latency_us"]["count"].as_u64().unwrap() > 0);
    // Large messages: many TLS records per message, several messages per receive.
    let (code, v, _) = run(
        "/echo",
        &[
            "--ca-file",
            &ca,
            "--conns",
            "2",
            "--size",
            "200000",
            "--binary",
        ],
    );
    assert_clean(code, &v);
}

#[test]
fn rate_flood_and_pubsub_with_ca_file() {
    let ca = ca();
    let (code, v, _) = run(
        "/echo",
        &[
            "--ca-file",
            &ca,
            "--mode",
            "rate",
            "--rate",
            "500",
            "--conns",
            "4",
        ],
    );
    assert_clean(code, &v);
    let (code, v, _) = run(
        "/echo",
        &["--ca-file", &ca, "--mode", "flood", "--conns", "2"],
    );
    assert_clean(code, &v);
    let (code, v, _) = run(
        "/chat",
        &[
            "--ca-file",
            &ca,
            "--mode",
            "pubsub",
            "--conns",
            "4",
            "--rate",
            "200",
        ],
    );
    assert_clean(code, &v);
}

#[test]
fn insecure_accepts_the_certificate() {
    let (code, v, _) = run("/echo", &["--insecure", "--conns", "3"]);
    assert_clean(code, &v);
}

#[test]
fn handshake_mode_full_and_resumed() {
    let ca = ca();
    let (code, v, _) = run(
        "/echo",
        &["--ca-file", &ca, "--mode", "handshake", "--conns", "2"],
    );
    assert_eq!(code, 0, "{v:#}");
    assert!(v["handshakes"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(v["resumed"], 0, "{v:#}");
    let (code, v, _) = run(
        "/echo",
        &[
            "--ca-file",
            &ca,
            "--mode",
            "handshake",
            "--conns",
            "2",
            "--resume",
        ],
    );
    assert_eq!(code, 0, "{v:#}");
    let n = v["handshakes"].as_u64().unwrap();
    // The first connection of each client thread (before a ticket arrived) may be a full handshake; all of those
    // fall into the warm-up unless the machine is very slow, so only "most" are asserted.
    assert!(n > 0 && v["resumed"].as_u64().unwrap() * 2 >= n, "{v:#}");
}

#[test]
fn wrong_ca_fails_every_connection_as_tls() {
    let other = fixture().other_ca.display().to_string();
    let (code, v, stderr) = run("/echo", &["--ca-file", &other, "--conns", "5"]);
    assert_eq!(code, 1, "{v:#}");
    assert_eq!(v["connected"], 0, "{v:#}");
    assert_eq!(v["connect_failed"], 5, "{v:#}");
    let tls = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "tls")
        .map(|e| e["count"].as_u64().unwrap());
    assert_eq!(tls, Some(5), "{v:#}");
    assert!(
        stderr.contains("TLS failed: invalid peer certificate"),
        "{stderr}"
    );
}

#[test]
fn wss_needs_a_trust_choice() {
    let f = fixture();
    let url = format!("wss://127.0.0.1:{}/echo", f.port);
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ca-file PATH"));
}

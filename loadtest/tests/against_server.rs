//! Runs the `loadtest` binary briefly against the real ringws server (the demo app: `/echo`, `/chat`), started
//! in-process on an ephemeral loopback port, and checks that every echo was verified and something was measured.
//! Never a speed bar.

use std::net::TcpListener;
use std::process::Command;
use std::sync::OnceLock;

#[path = "../../src/bin/ringws/app.rs"]
mod app;
use app::DemoApp;
use ringws::server::{Config, Server, ServerHandle};

fn start_server() -> ServerHandle {
    let mut c = Config::default();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.workers = 2;
    c.pin_workers = false;
    Server::new(c, DemoApp::new(&[])).unwrap().start().unwrap()
}

/// The ringws server shared by the tests of this file; returns its port.
fn server() -> u16 {
    static SERVER: OnceLock<ServerHandle> = OnceLock::new();
    SERVER.get_or_init(start_server).local_addr().port()
}

/// A second, independent server (its topics are not shared with the first).
fn other_server() -> u16 {
    static SERVER: OnceLock<ServerHandle> = OnceLock::new();
    SERVER.get_or_init(start_server).local_addr().port()
}

fn run(port: u16, extra: &[&str]) -> (i32, serde_json::Value) {
    run_path(port, "/echo", extra)
}

fn run_path(port: u16, path: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &url,
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--json",
            "--quiet",
            "--no-pin",
        ])
        .args(extra)
        .output()
        .expect("run loadtest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), v)
}

fn assert_clean(code: i32, v: &serde_json::Value) {
    assert_eq!(v["mismatches"], 0, "{v:#}");
    assert_eq!(v["errors_total"], 0, "{v:#}");
    assert!(v["received"].as_u64().unwrap() > 0, "{v:#}");
    assert!(v["msgs_per_s"].as_f64().unwrap() > 0.0, "{v:#}");
    assert_eq!(code, 0, "{v:#}");
}

#[test]
fn echo_text_and_binary() {
    let port = server();
    let (code, v) = run(port, &["--conns", "8", "--size", "20"]);
    assert_clean(code, &v);
    assert_eq!(v["connected"], 8);
    assert!(v["latency_us"]["count"].as_u64().unwrap() > 0);

    let (code, v) = run(
        port,
        &[
            "--conns",
            "3",
            "--size",
            "70000",
            "--binary",
            "--inflight",
            "4",
            "--threads",
            "2",
        ],
    );
    assert_clean(code, &v);
}

#[test]
fn flood_and_rate() {
    let port = server();
    let (code, v) = run(port, &["--mode", "flood", "--conns", "4", "--size", "200"]);
    assert_clean(code, &v);
    let (code, v) = run(
        port,
        &[
            "--mode", "rate", "--rate", "2000", "--conns", "5", "--size", "3",
        ],
    );
    assert_clean(code, &v);
    // Open loop: about rate x duration messages.
    let n = v["received"].as_u64().unwrap();
    assert!((1000..=3000).contains(&n), "{v:#}");
}

#[test]
fn refused_connections_are_reported() {
    // A port with no listener: every connect fails, nothing is echoed, exit status 1.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (code, v) = run(port, &["--conns", "3"]);
    assert_eq!(code, 1);
    assert_eq!(v["connect_failed"], 3);
    assert_eq!(v["connected"], 0);
}

#[test]
fn refuses_non_loopback() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", "ws://192.0.2.1:80/", "--duration", "100ms"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn pubsub_deliveries() {
    let port = server();
    let (code, v) = run_path(
        port,
        "/chat",
        &[
            "--mode",
            "pubsub",
            "--conns",
            "5",
            "--publishers",
            "1",
            "--rate",
            "200",
            "--size",
            "40",
        ],
    );
    assert_clean(code, &v);
    // Every publish reaches the 5 subscribers and the publisher itself (it joins the room too).
    let fanout = v["fanout"].as_f64().unwrap();
    assert!((5.0..=7.0).contains(&fanout), "{v:#}");
    assert!(v["latency_us"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn several_urls_spread_subscribers_and_keep_publishers_on_the_first() {
    // Two servers that share nothing: 4 subscribers alternate between them, the publisher joins the first, so a
    // publish reaches the 2 subscribers there and the publisher itself (3), never the 2 on the other server.
    let (a, b) = (server(), other_server());
    let other = format!("ws://127.0.0.1:{b}/broadcast");
    let me = std::process::id().to_string();
    let (code, v) = run_path(
        a,
        "/broadcast",
        &[
            "--url",
            &other,
            "--mode",
            "pubsub",
            "--conns",
            "4",
            "--rate",
            "200",
            "--sub-msg",
            "",
            "--pub-template",
            "{payload}",
            "--server-pid",
            &me,
            "--server-pid",
            &me,
        ],
    );
    assert_clean(code, &v);
    assert_eq!(v["connected"], 5, "{v:#}");
    let fanout = v["fanout"].as_f64().unwrap();
    assert!((2.5..=3.5).contains(&fanout), "{v:#}");
    let servers = v["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{v:#}");
    assert!(
        servers.iter().all(|s| s["cpu_s"].as_f64().is_some()),
        "{v:#}"
    );
    assert_eq!(v["server_pid"], servers[0]["pid"]);
}

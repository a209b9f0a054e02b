//! `loadtest --deflate` against the real ringws server (the demo app) in shared and dedicated compression mode,
//! started in-process on ephemeral loopback ports: every mode negotiates, compresses what it sends, inflates and
//! checks every echo, and reports the parameters; against a server with compression off it says "not negotiated".
//! Never a speed bar.

use std::process::Command;
use std::sync::OnceLock;

#[path = "../../src/bin/ringws/app.rs"]
mod app;
use app::DemoApp;
use ringws::deflate::Compression;
use ringws::server::{Config, Server, ServerHandle};

fn start(compression: Compression) -> ServerHandle {
    let mut c = Config::default();
    c.bind = "127.0.0.1:0".parse().unwrap();
    c.workers = 2;
    c.pin_workers = false;
    c.compression = compression;
    Server::new(c, DemoApp::new(&[])).unwrap().start().unwrap()
}

/// One server per compression mode, shared by the tests of this file; returns its port.
fn port(mode: &str) -> u16 {
    static SHARED: OnceLock<ServerHandle> = OnceLock::new();
    static DEDICATED: OnceLock<ServerHandle> = OnceLock::new();
    static OFF: OnceLock<ServerHandle> = OnceLock::new();
    let h = match mode {
        "shared" => SHARED.get_or_init(|| start(Compression::Shared)),
        "dedicated" => DEDICATED.get_or_init(|| start(Compression::Dedicated { window_bits: 12 })),
        _ => OFF.get_or_init(|| start(Compression::Off)),
    };
    h.local_addr().port()
}

fn run(port: u16, path: &str, extra: &[&str], json: bool) -> (i32, String, String) {
    let url = format!("ws://127.0.0.1:{port}{path}");
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--url",
            &url,
            "--duration",
            "700ms",
            "--warmup",
            "200ms",
            "--quiet",
            "--no-pin",
        ])
        .args(json.then_some("--json"))
        .args(extra)
        .output()
        .expect("run loadtest");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run_json(port: u16, path: &str, extra: &[&str]) -> (i32, serde_json::Value) {
    let (code, stdout, stderr) = run(port, path, extra, true);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, v)
}

/// Every echo checked and nothing wrong; the extension negotiated on every connection; both directions compressed.
fn assert_compressed(code: i32, v: &serde_json::Value, conns: u64) {
    assert_eq!(v["mismatches"], 0, "{v:#}");
    assert_eq!(v["errors_total"], 0, "{v:#}");
    assert!(v["received"].as_u64().unwrap() > 0, "{v:#}");
    assert_eq!(code, 0, "{v:#}");
    let d = &v["deflate"];
    assert_eq!(d["negotiated"], true, "{v:#}");
    assert_eq!(d["negotiated_conns"], conns, "{v:#}");
    assert_eq!(d["declined_conns"], 0, "{v:#}");
    assert!(d["sent_compressed"].as_u64().unwrap() > 0, "{v:#}");
    assert!(d["received_compressed"].as_u64().unwrap() > 0, "{v:#}");
    // The payload pattern is a repeated alphabet: both directions shrink.
    assert!(d["sent_ratio"].as_f64().unwrap() < 0.8, "{v:#}");
    assert!(d["received_ratio"].as_f64().unwrap() < 0.8, "{v:#}");
}

#[test]
fn shared_mode_echo_rate_flood() {
    let p = port("shared");
    let (code, v) = run_json(p, "/echo", &["--deflate", "--conns", "4", "--size", "300"]);
    assert_compressed(code, &v, 4);
    let params = &v["deflate"]["params"];
    assert_eq!(params["server_no_context_takeover"], true, "{v:#}");
    assert_eq!(params["client_no_context_takeover"], true, "{v:#}");

    let (code, v) = run_json(
        p,
        "/echo",
        &[
            "--deflate",
            "--mode",
            "flood",
            "--conns",
            "3",
            "--size",
            "1000",
            "--binary",
        ],
    );
    assert_compressed(code, &v, 3);
    let (code, v) = run_json(
        p,
        "/echo",
        &[
            "--deflate",
            "--mode",
            "rate",
            "--rate",
            "2000",
            "--conns",
            "5",
            "--size",
            "200",
        ],
    );
    assert_compressed(code, &v, 5);
    let (code, v) = run_json(
        p,
        "/echo",
        &[
            "--deflate",
            "--json-payload",
            "--conns",
            "2",
            "--size",
            "16384",
        ],
    );
    assert_compressed(code, &v, 2);
}

#[test]
fn dedicated_mode_keeps_context_and_large_messages_round_trip() {
    let p = port("dedicated");
    let (code, v) = run_json(p, "/echo", &["--deflate", "--conns", "4", "--size", "300"]);
    assert_compressed(code, &v, 4);
    let params = &v["deflate"]["params"];
    assert_eq!(params["server_no_context_takeover"], false, "{v:#}");
    assert_eq!(params["client_no_context_takeover"], false, "{v:#}");
    assert_eq!(params["client_max_window_bits"], 12, "{v:#}");

    // Larger than the server's receive buffers and the 64 KiB zlib-rs step: several reads per message.
    let (code, v) = run_json(
        p,
        "/echo",
        &[
            "--deflate",
            "--conns",
            "2",
            "--size",
            "100000",
            "--inflight",
            "2",
            "--threads",
            "2",
        ],
    );
    assert_compressed(code, &v, 2);

    // Asking for no context takeover and a smaller window: the server keeps to the offer.
    let (code, v) = run_json(
        p,
        "/echo",
        &[
            "--deflate-no-context-takeover",
            "--deflate-server-window-bits",
            "10",
            "--conns",
            "2",
            "--size",
            "500",
        ],
    );
    assert_compressed(code, &v, 2);
    let params = &v["deflate"]["params"];
    assert_eq!(params["server_no_context_takeover"], true, "{v:#}");
    assert!(
        params["server_max_window_bits"].as_u64().unwrap() <= 10,
        "{v:#}"
    );
}

#[test]
fn pubsub_compressed_in_both_modes() {
    for mode in ["shared", "dedicated"] {
        let (code, v) = run_json(
            port(mode),
            "/chat",
            &[
                "--deflate",
                "--mode",
                "pubsub",
                "--conns",
                "5",
                "--publishers",
                "2",
                "--rate",
                "400",
                "--size",
                "300",
            ],
        );
        assert_compressed(code, &v, 7);
        assert!(v["fanout"].as_f64().unwrap() > 4.0, "{mode}: {v:#}");
    }
}

#[test]
fn a_server_that_declines_is_reported_not_negotiated() {
    let p = port("off");
    let (code, v) = run_json(p, "/echo", &["--deflate", "--conns", "3", "--size", "200"]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["mismatches"], 0, "{v:#}");
    let d = &v["deflate"];
    assert_eq!(d["negotiated"], false, "{v:#}");
    assert_eq!(d["declined_conns"], 3, "{v:#}");
    assert_eq!(d["sent_compressed"], 0, "{v:#}");
    let (code, text, stderr) = run(p, "/echo", &["--deflate", "--conns", "3"], false);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        text.contains(
            "deflate:  not negotiated: the server declined the offer on all 3 connections"
        ),
        "{text}"
    );
    // Without --deflate there is no deflate section at all.
    let (_, v) = run_json(p, "/echo", &["--conns", "1"]);
    assert!(v["deflate"].is_null(), "{v:#}");
}

#[test]
fn bad_window_option_is_a_clear_error() {
    let (code, _, stderr) = run(1, "/echo", &["--deflate-client-window-bits", "16"], false);
    assert_eq!(code, 2);
    assert!(stderr.contains("8..=15"), "{stderr}");
}

//! Runs the `loadtest` binary briefly against a small in-test echo server (tungstenite, one thread per connection, on an
//! ephemeral loopback port) and checks that every echo was verified and something was measured. Never a speed bar.

use std::net::TcpListener;
use std::process::Command;
use std::thread;

use tungstenite::Message;

/// Start an echo server; returns its port. Threads live until the process exits.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                loop {
                    match ws.read() {
                        Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                            if ws.send(m).is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    port
}

fn run(port: u16, extra: &[&str]) -> (i32, serde_json::Value) {
    let url = format!("ws://127.0.0.1:{port}/echo");
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
    let port = echo_server();
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
    let port = echo_server();
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

/// A minimal topic server: a text containing `"join"` subscribes the connection; any other text is delivered to every
/// subscriber (the sender included), wrapped like the ringws chat does.
fn pubsub_server() -> u16 {
    use std::sync::{Arc, Mutex};
    use tungstenite::protocol::Role;
    use tungstenite::WebSocket;
    type Members = Arc<Mutex<Vec<WebSocket<std::net::TcpStream>>>>;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let members: Members = Arc::new(Mutex::new(Vec::new()));
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let members = members.clone();
            thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let Ok(writer) = stream.try_clone() else {
                    return;
                };
                let Ok(mut ws) = tungstenite::accept(stream) else {
                    return;
                };
                let mut writer = Some(WebSocket::from_raw_socket(writer, Role::Server, None));
                loop {
                    match ws.read() {
                        Ok(Message::Text(t)) => {
                            if t.contains("\"join\"") {
                                if let Some(w) = writer.take() {
                                    members.lock().unwrap().push(w);
                                }
                            } else {
                                let out = format!(
                                    "{{\"type\":\"message\",\"room\":\"bench\",\"in\":{}}}",
                                    t.as_str()
                                );
                                let mut m = members.lock().unwrap();
                                for w in m.iter_mut() {
                                    let _ = w.send(Message::text(out.clone()));
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            });
        }
    });
    port
}

#[test]
fn pubsub_deliveries() {
    let port = pubsub_server();
    let (code, v) = run(
        port,
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
    // Every publish reaches the 5 subscribers and the publisher itself.
    let fanout = v["fanout"].as_f64().unwrap();
    assert!((5.0..=7.0).contains(&fanout), "{v:#}");
    assert!(v["latency_us"]["count"].as_u64().unwrap() > 0);
}

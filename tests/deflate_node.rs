//! A real client: Node `ws` with `perMessageDeflate` against the demo server's `/echo`, in shared and dedicated
//! compression mode. The client script (`tests/node_ws/echo.mjs`) echoes text and binary messages from 1 B to
//! 300 KiB, whole and fragmented (ws compresses a fragmented message as one deflate stream), plus incompressible
//! bytes, and compares every echo byte for byte (ws compresses only messages of 1 KiB and more, its default
//! threshold); here we check the negotiated parameters and that the server both
//! inflated what ws compressed and compressed what it sent back (metrics).
//!
//! Needs `node` and `ws` installed in tests/node_ws (`npm ci` there; scripts/test.sh does it). When they are missing
//! the test fails if RINGWS_REQUIRE_NODE_WS=1 or CI is set (scripts/test.sh sets the former), and otherwise says
//! SKIPPED with the command that installs them.

mod server_util;

use std::path::Path;
use std::process::Command;

use ringws::server::Compression;
use server_util::*;

/// Whether node and the pinned `ws` are there; otherwise fail (CI) or explain (locally).
fn node_ws_ready(dir: &Path) -> bool {
    let node = Command::new("node").arg("--version").output();
    let problem = if !matches!(&node, Ok(o) if o.status.success()) {
        Some("node is not installed")
    } else if !dir.join("node_modules/ws/package.json").exists() {
        Some("ws is not installed in tests/node_ws")
    } else {
        None
    };
    let Some(problem) = problem else {
        return true;
    };
    let required = std::env::var("RINGWS_REQUIRE_NODE_WS").is_ok_and(|v| v == "1")
        || std::env::var_os("CI").is_some();
    let how = "install Node.js >= 18, then run `npm ci` in tests/node_ws (scripts/test.sh does both checks)";
    assert!(!required, "the Node ws test cannot run: {problem}; {how}");
    eprintln!("SKIPPED: the Node ws test: {problem}; {how}");
    false
}

fn echo_with_node_ws(compression: Compression) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node_ws");
    if !node_ws_ready(&dir) {
        return String::new();
    }
    let mut c = config();
    c.compression = compression;
    let srv = start(c);
    let out = Command::new("node")
        .arg(dir.join("echo.mjs"))
        .arg(format!("ws://127.0.0.1:{}/echo", srv.local_addr().port()))
        .current_dir(&dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "Node ws echo failed: {stderr}{stdout}"
    );
    assert!(stdout.contains(r#""messages":19"#), "{stdout}");
    let m = srv.context().metrics_text();
    assert!(
        metric(&m, "ringws_inflate_messages_total") >= 10,
        "the server inflated what ws compressed: {m}"
    );
    assert!(
        metric(&m, "ringws_deflate_messages_total") >= 10,
        "the server compressed its echoes: {m}"
    );
    stdout
}

#[test]
fn node_ws_shared_mode() {
    let out = echo_with_node_ws(Compression::Shared);
    if !out.is_empty() {
        // ws offers `permessage-deflate; client_max_window_bits`; shared mode: no context takeover either way.
        assert!(
            out.contains(
                r#""extensions":"permessage-deflate; server_no_context_takeover; client_no_context_takeover""#
            ),
            "{out}"
        );
    }
}

#[test]
fn node_ws_dedicated_mode() {
    let out = echo_with_node_ws(Compression::Dedicated { window_bits: 12 });
    if !out.is_empty() {
        // Context takeover both ways; the client's window limited to the server's 12 bits.
        assert!(
            out.contains(r#""extensions":"permessage-deflate; client_max_window_bits=12""#),
            "{out}"
        );
    }
}

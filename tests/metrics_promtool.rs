//! `/metrics` is valid Prometheus text: checked with `promtool check metrics` (Debian package `prometheus`;
//! `scripts/test.sh` installs it). Skips with a message only where promtool is not installed.

mod server_util;

use std::io::Write;
use std::process::{Command, Stdio};

use server_util::*;

#[test]
fn metrics_endpoint_passes_promtool_and_counts_traffic() {
    let srv = start(config());
    let a = srv.local_addr();
    let mut s = ws_raw(a, "/echo");
    for _ in 0..5 {
        assert_echo(&mut s, b"count me");
    }
    let (st, text) = get(a, "/metrics");
    assert_eq!(st, 200);
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    assert!(metric(body, "ringws_messages_in_total") >= 5, "{body}");
    assert!(metric(body, "ringws_accepted_total") >= 2);
    assert_eq!(metric(body, "ringws_workers"), 2);

    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED promtool check: `{promtool}` not runnable ({e}); install Debian's `prometheus` package");
            return;
        }
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

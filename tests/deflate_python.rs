//! A real client: Python `websockets` (permessage-deflate on by default) against the demo server's `/echo`. It
//! checks the negotiated extension, that compressible echoes arrive compressed (RSV1, seen by wrapping the
//! client's decoder) and decompress to what was sent, that incompressible ones arrive plain, and the server's
//! metrics show it inflated what the client compressed. Skipped, saying so, when python3 or websockets is missing
//! (scripts/test.sh installs websockets).

mod server_util;

use std::process::Command;

use server_util::*;

const SCRIPT: &str = r#"
import asyncio, json, os, sys
from websockets.asyncio.client import connect
from websockets.extensions import permessage_deflate as pmd

seen = []
orig = pmd.PerMessageDeflate.decode
def decode(self, frame, *args, **kw):
    if frame.opcode in (1, 2):
        seen.append(frame.rsv1)
    return orig(self, frame, *args, **kw)
pmd.PerMessageDeflate.decode = decode

async def main(url):
    async with connect(url, max_size=None, open_timeout=10, close_timeout=5) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions")
        compressible = [json.dumps({"id": i, "user": "user_%d" % (i % 7), "event": "click", "value": i * 3}) * 20
                        for i in range(20)]
        compressible.append("x" * 200000)
        incompressible = [os.urandom(n) for n in (100, 5000, 70000)]
        rsv = {}
        for m in compressible + incompressible:
            seen.clear()
            await ws.send(m)
            back = await asyncio.wait_for(ws.recv(), 10)
            assert back == m, ("echo differs", len(m), len(back))
            rsv[len(m)] = seen[-1] if seen else None
        assert all(rsv[len(m)] for m in compressible), ("compressible echo not compressed", rsv)
        assert not any(rsv[len(m)] for m in incompressible), ("incompressible echo compressed", rsv)
        print(json.dumps({"extensions": ext, "messages": len(rsv)}))

asyncio.run(asyncio.wait_for(main(sys.argv[1]), 60))
"#;

#[test]
fn python_websockets_negotiates_and_echoes_decompress_to_what_was_sent() {
    let has = Command::new("python3")
        .args(["-c", "import websockets.asyncio.client"])
        .output();
    if !matches!(&has, Ok(o) if o.status.success()) {
        eprintln!(
            "SKIPPED: python3 with websockets >= 13 is missing (python3 -m pip install 'websockets>=13')"
        );
        return;
    }
    let srv = start(config());
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(format!("ws://127.0.0.1:{}/echo", srv.local_addr().port()))
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python websockets failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // websockets offers `permessage-deflate; client_max_window_bits`; shared mode answers with no context
    // takeover both ways.
    assert!(
        stdout.contains(
            r#""extensions": "permessage-deflate; server_no_context_takeover; client_no_context_takeover""#
        ),
        "{stdout}"
    );
    let m = srv.context().metrics_text();
    assert!(
        metric(&m, "ringws_inflate_messages_total") >= 21,
        "the server inflated what the client compressed: {m}"
    );
    assert!(metric(&m, "ringws_deflate_messages_total") >= 21, "{m}");
    srv.shutdown();
}

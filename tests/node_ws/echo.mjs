// Echo through ringws with Node `ws` as the client, permessage-deflate on (tests/deflate_node.rs runs this).
// Usage: node echo.mjs ws://127.0.0.1:PORT/echo
// Sends text and binary messages of several sizes (up to 300 KiB), whole and fragmented (ws compresses the fragments
// of one message as one deflate stream), waits for each echo and compares it byte for byte. Prints one JSON line
// {"extensions": <the server's Sec-WebSocket-Extensions>, "messages": N} and exits 0, or prints the failure and exits 1. Bounded in time.
import WebSocket from 'ws';

const url = process.argv[2];
const timer = setTimeout(() => fail('timed out after 60 s'), 60000);

function fail(msg) {
  console.error(`node ws echo: ${msg}`);
  process.exit(1);
}

// JSON-like compressible text of about n bytes.
function jsonText(n, seed) {
  const words = ['alpha', 'beta', 'gamma', 'delta', 'click', 'view', 'user', 'room'];
  let s = '';
  let x = seed;
  while (s.length < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    s += JSON.stringify({ id: x % 100000, event: words[x % 8], user: `user_${x % 97}`, ok: (x & 1) === 1 }) + ',';
  }
  return s.slice(0, n);
}

function binary(n, seed) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + seed + (i >> 5)) & 0x3f; // compressible bytes, all 0..63
  return b;
}

const cases = [];
for (const n of [1, 20, 200, 2000, 16384, 70000, 300000]) {
  cases.push({ data: jsonText(n, n), fragments: 1 });
  cases.push({ data: binary(n, n), fragments: 1 });
}
for (const n of [5000, 100000]) {
  cases.push({ data: jsonText(n, n + 1), fragments: 4 });
  cases.push({ data: binary(n, n + 1), fragments: 3 });
}
// Not compressible: random bytes (the server sends these uncompressed; they must still round-trip).
const random = Buffer.alloc(80000);
for (let i = 0; i < random.length; i++) random[i] = Math.floor(Math.random() * 256);
cases.push({ data: random, fragments: 1 });

const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 64 << 20 });
let header = null;
ws.on('upgrade', (res) => {
  header = res.headers['sec-websocket-extensions'] ?? null;
});
ws.on('error', (e) => fail(`error: ${e.message}`));
ws.on('close', (code) => {
  if (!done) fail(`closed early with ${code}`);
});
let done = false;

function send(c) {
  const text = typeof c.data === 'string';
  const buf = text ? Buffer.from(c.data) : c.data;
  if (c.fragments === 1) {
    ws.send(c.data, { binary: !text, compress: true });
    return;
  }
  // Split on byte boundaries that may cut a UTF-8 sequence: the text is ASCII, so any cut is valid.
  const step = Math.ceil(buf.length / c.fragments);
  for (let off = 0; off < buf.length; off += step) {
    const fin = off + step >= buf.length;
    ws.send(buf.subarray(off, Math.min(off + step, buf.length)), { binary: !text, compress: true, fin });
  }
}

ws.on('open', async () => {
  if (ws.extensions !== 'permessage-deflate' || !header) {
    fail(`permessage-deflate not negotiated: ${JSON.stringify([ws.extensions, header])}`);
  }
  let i = 0;
  for (const c of cases) {
    const echo = new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data, isBinary })));
    send(c);
    const { data, isBinary } = await echo;
    const text = typeof c.data === 'string';
    if (isBinary === text) fail(`case ${i}: echo came back as ${isBinary ? 'binary' : 'text'}`);
    const want = text ? Buffer.from(c.data) : c.data;
    if (!Buffer.from(data).equals(want)) fail(`case ${i} (${want.length} B, ${c.fragments} fragments): echo differs`);
    i++;
  }
  done = true;
  console.log(JSON.stringify({ extensions: header, messages: i }));
  ws.close(1000);
  ws.on('close', () => {
    clearTimeout(timer);
    process.exit(0);
  });
});

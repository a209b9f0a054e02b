// Node `ws` echo server with permessage-deflate, the peer of perf/deflate.md. Usage: node ws-deflate-echo.js PORT
// ws's defaults (context takeover both ways, zlib level 6 (Z_DEFAULT_COMPRESSION), concurrency limit 10) except
// the threshold: 64 bytes, as ringws' default, instead of ws's 1024, so the 200-byte case is compressed too.
// Install ws in a copy: cp tests/node_ws/package*.json /tmp/ws-peer && (cd /tmp/ws-peer && npm ci), then run with
// NODE_PATH=/tmp/ws-peer/node_modules.
'use strict';
const { WebSocketServer } = require('ws');
const port = Number(process.argv[2] || 9100);
const wss = new WebSocketServer({
  host: '127.0.0.1',
  port,
  perMessageDeflate: { threshold: 64 },
  maxPayload: 100 * 1024 * 1024,
});
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => {
  console.log(`ws ${require('ws/package.json').version} (permessage-deflate) listening on ${port}`);
});

// Node `ws` echo server over https (node's own TLS, OpenSSL): the TLS peer of perf/tls.md.
// Usage: node ws-https-echo.js PORT CERT.pem KEY.pem
// Needs the `ws` package (npm install ws in a scratch directory; NODE_PATH or a node_modules next to this file).
// Defaults: no permessage-deflate, TLS 1.3 and 1.2, session tickets on (node's default), ALPN http/1.1.
'use strict';
const fs = require('fs');
const https = require('https');
const { WebSocketServer } = require('ws');
const [port, cert, key] = [Number(process.argv[2] || 9443), process.argv[3], process.argv[4]];
const server = https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['http/1.1'] });
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 100 * 1024 * 1024 });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
server.listen(port, '127.0.0.1', () => {
  console.log(`ws ${require('ws/package.json').version} over https on ${port}, node ${process.version}, OpenSSL ${process.versions.openssl}`);
});

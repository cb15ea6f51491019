// h2_upstream: an HTTP/2-over-TLS stand-in for fault_server's /ok and
// /delay routes, for bench/concurrency.
//
//   node bench/h2_upstream.js --cert CERT.pem --key KEY.pem [--listen 127.0.0.1:0]
//                             [--max-streams 128] [--h1-port-file F]
//
// Why it exists: 10,000 tool calls in flight through ferry over HTTP/1.1 on
// both sides would need ~20,000 sockets in the ferry process (one per client
// connection, one per upstream connection), and the hard open-files limit
// here is 20,000 per process.  Over HTTP/2, ferry's libcurl multiplexes the
// upstream requests as streams on a few TLS connections (CURLOPT_PIPEWAIT,
// h2 offered via ALPN), so ferry holds ~10,000 client sockets and only about
// 10,000 / 100 upstream ones.
//
// --max-streams is the SETTINGS_MAX_CONCURRENT_STREAMS it advertises; 128 by
// default, nginx's default (libcurl 7.88 also caps itself at 100 streams per
// connection unless told otherwise with CURLMOPT_MAX_CONCURRENT_STREAMS).
//
// Routes (GET):
//   /ok            200 {"ok":true}
//   /delay?ms=N    200 {"ok":true,"delayed_ms":N} after N ms (a timer)
//   anything else  404 {"error":"not found"}
//
// It also answers the same routes over cleartext HTTP/1.1 on a second port
// (same process, same handler), written to --h1-port-file, so the benchmark's
// direct baseline can drive this very upstream with loadgen, which speaks
// HTTP/1.1 only.
//
// Prints exactly one line "listening HOST:PORT" (the h2 port) on stdout once
// both ports are bound, and serves until SIGTERM or SIGINT.
'use strict';

const fs = require('fs');
const http = require('http');
const http2 = require('http2');

function arg(name, dflt) {
  const i = process.argv.indexOf(name);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : dflt;
}

const listen = arg('--listen', '127.0.0.1:0');
const colon = listen.lastIndexOf(':');
const host = listen.slice(0, colon);
const port = Number(listen.slice(colon + 1));
const h1PortFile = arg('--h1-port-file', null);

const OK = Buffer.from('{"ok":true}');

// One handler for both protocols: the compatibility API gives h2 streams the
// same (req, res) shape as http/1.1.
function handle(req, res) {
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  if (path === '/ok') {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': OK.length });
    res.end(OK);
    return;
  }
  if (path === '/delay') {
    const m = /(?:^|&)ms=(\d+)/.exec(q < 0 ? '' : req.url.slice(q + 1));
    const ms = m ? Number(m[1]) : 0;
    const body = Buffer.from(`{"ok":true,"delayed_ms":${ms}}`);
    setTimeout(() => {
      if (res.destroyed || res.writableEnded) return;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    }, ms);
    return;
  }
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end('{"error":"not found"}');
}

const h2 = http2.createSecureServer({
  key: fs.readFileSync(arg('--key')),
  cert: fs.readFileSync(arg('--cert')),
  settings: { maxConcurrentStreams: Number(arg('--max-streams', '128')) },
  maxSessionMemory: 64,
});
h2.on('request', handle);
h2.on('sessionError', () => {});

const h1 = http.createServer({ keepAliveTimeout: 120000 }, handle);
h1.maxRequestsPerSocket = 0;
h1.headersTimeout = 120000;
h1.requestTimeout = 0;

let bound = 0;
function ready() {
  if (++bound < 2) return;
  if (h1PortFile) fs.writeFileSync(h1PortFile, String(h1.address().port) + '\n');
  const a = h2.address();
  process.stdout.write(`listening ${a.address}:${a.port}\n`);
}
h2.listen({ host, port, backlog: 16384 }, ready);
h1.listen({ host, port: 0, backlog: 16384 }, ready);

function stop() {
  h1.close();
  h2.close();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

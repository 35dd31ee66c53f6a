// The endpoints shared by simple_cluster.js and many_accepts.js, the same as serverscope's
// Python models:
//   GET /                            -> 200 "hello from serverscope\n"
//   GET /work?cpu_ms=&io_ms=&bytes=  -> burn cpu_ms of CPU time, wait io_ms on a timer (the
//                                       event loop goes on), answer exactly `bytes` bytes
// Responses are Content-Length framed, with X-Worker: <pid of the serving process>.
// CPU time is process.cpuUsage(): Node 20 has no per-thread clock in JavaScript; a worker
// runs its JavaScript on one thread, so the difference is small (GC threads count too).
// A cpu_ms over --max-cpu-ms (10,000, the models' default) is 400.
// Work stops for a client that is gone, as the asyncio models do it: a burn blocks the
// event loop (that is the model), so no close can be seen during one; but a connection's
// pipelined /work requests run one per loop turn (setImmediate), so between two of them
// the loop reads the socket, and once the client has reset or closed it (Node's server
// takes a FIN as the end: httpAllowHalfOpen is off) the rest of the pipeline is dropped.
'use strict';
const http = require('node:http');

// SIGUSR1 (how `serverscope stack` reads a JavaScript stack) opens the inspector on a port
// the kernel picks, not 9229: every worker of a cluster, and any other Node on the
// machine, would ask for the same one and all but the first would fail.
process.debugPort = 0;

const MAX = { cpu_ms: 10000, io_ms: 60000, bytes: 16 * 1024 * 1024 };
const QUEUE = Symbol('work queue'); // a socket's /work requests, in order
const GONE = Symbol('client gone'); // set on a socket once its client has left
const TURN = Symbol('turn pending'); // a /work request of this socket ran this loop turn
const HELLO = Buffer.from('hello from serverscope\n');
let payload = null; // 16 MiB of 'x', made on first use

function parseOpts(argv) {
  const o = { host: '127.0.0.1', port: 8080, backlog: 511, workers: 4,
    keepaliveTimeout: 5, maxKeepaliveRequests: 0, timeout: 60, maxCpuMs: MAX.cpu_ms };
  const names = { '--host': 'host', '--port': 'port', '--backlog': 'backlog',
    '--workers': 'workers', '--keepalive-timeout': 'keepaliveTimeout',
    '--max-keepalive-requests': 'maxKeepaliveRequests', '--timeout': 'timeout',
    '--max-cpu-ms': 'maxCpuMs' };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || i + 1 >= argv.length) {
      process.stderr.write(`unknown option or missing value: ${argv[i]}\n`);
      process.exit(2);
    }
    o[key] = key === 'host' ? argv[i + 1] : Number(argv[i + 1]);
    if (key !== 'host' && !Number.isFinite(o[key])) {
      process.stderr.write(`bad value for ${argv[i]}: ${argv[i + 1]}\n`);
      process.exit(2);
    }
  }
  if (!(o.maxCpuMs >= 0 && o.maxCpuMs <= 600000)) {
    process.stderr.write(`bad value for --max-cpu-ms: ${o.maxCpuMs}\n`);
    process.exit(2);
  }
  MAX.cpu_ms = o.maxCpuMs;
  return o;
}

function reply(res, status, ctype, body) {
  res.writeHead(status, {
    'Server': 'serverscope-node',
    'Content-Type': ctype,
    'Content-Length': body.length,
    'X-Worker': String(process.pid),
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function burnCpu(ms) {
  if (ms <= 0) return;
  const start = process.cpuUsage();
  let x = 0;
  for (;;) {
    for (let i = 0; i < 2000; i++) x ^= i;
    const d = process.cpuUsage(start);
    if ((d.user + d.system) / 1000 >= ms) return x;
  }
}

function handle(req, res) {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return reply(res, 405, 'text/plain', Buffer.from('only GET and HEAD\n'));
  }
  const q = req.url.indexOf('?');
  const path = q < 0 ? req.url : req.url.slice(0, q);
  const query = q < 0 ? '' : req.url.slice(q + 1);
  if (path === '/') return reply(res, 200, 'text/plain', HELLO);
  if (path !== '/work') {
    return reply(res, 404, 'text/plain',
      Buffer.from('not found; try / or /work?cpu_ms=&io_ms=&bytes=\n'));
  }
  const p = { cpu_ms: 0, io_ms: 0, bytes: 0 };
  for (const pair of query ? query.split('&') : []) {
    const eq = pair.indexOf('=');
    if (eq < 0) return reply(res, 400, 'text/plain', Buffer.from('malformed query string\n'));
    const key = pair.slice(0, eq);
    const raw = pair.slice(eq + 1);
    if (!(key in p)) {
      return reply(res, 400, 'text/plain',
        Buffer.from(`unknown parameter '${key}'; use cpu_ms, io_ms, bytes\n`));
    }
    const v = raw.trim() === '' ? NaN : Number(raw);
    if (Number.isNaN(v)) {
      return reply(res, 400, 'text/plain', Buffer.from(`${key} must be a number, got '${raw}'\n`));
    }
    if (!(v >= 0 && v <= MAX[key])) {
      return reply(res, 400, 'text/plain',
        Buffer.from(`${key} must be between 0 and ${MAX[key]}, got ${raw}\n`));
    }
    p[key] = v;
  }
  if (!Number.isInteger(p.bytes)) {
    return reply(res, 400, 'text/plain', Buffer.from('bytes must be a whole number\n'));
  }
  const sock = req.socket;
  if (!sock[QUEUE]) {
    sock[QUEUE] = [];
    const gone = () => { sock[GONE] = true; sock[QUEUE].length = 0; };
    sock.once('close', gone);
    sock.once('end', gone);
  }
  sock[QUEUE].push({ res, p });
  if (!sock[TURN]) next(sock);
}

// The first /work request of `sock` waiting, now; those after it (a pipeline) wait for the
// loop to have read the socket since, so that a reset or a FIN is seen before the next
// burn. Two hops: a setImmediate made in the poll phase (the request's own callback) runs
// in the same turn's check phase; one made in the check phase runs after the next poll.
function next(sock) {
  const item = sock[QUEUE].shift();
  if (item && !sock[GONE]) work(sock, item);
  sock[TURN] = true;
  setImmediate(() => setImmediate(() => {
    sock[TURN] = false;
    if (sock[QUEUE].length && !sock[GONE]) next(sock);
  }));
}

function work(sock, { res, p }) {
  burnCpu(p.cpu_ms);
  if (p.bytes && payload === null) payload = Buffer.alloc(MAX.bytes, 'x');
  const body = p.bytes ? payload.subarray(0, p.bytes) : Buffer.alloc(0);
  const send = () => { if (!sock[GONE]) reply(res, 200, 'application/octet-stream', body); };
  if (p.io_ms > 0) setTimeout(send, p.io_ms);
  else send();
}

// An http.Server with Apache-like limits taken from the options.
function makeServer(o) {
  const server = http.createServer({ maxHeaderSize: 8192 }, handle);
  server.keepAliveTimeout = o.keepaliveTimeout * 1000;
  server.requestTimeout = o.timeout * 1000;
  server.headersTimeout = o.timeout * 1000;
  server.maxRequestsPerSocket = o.maxKeepaliveRequests; // 0: unlimited, as Node's default
  return server;
}

function listenFailed(o, err) {
  process.stderr.write(`cannot listen on ${o.host}:${o.port}: ${err.code || err.message}\n`);
  process.exit(err.code === 'EADDRINUSE' ? 98 : 1);
}

// Tell the launcher every worker is serving: it waits for this file (when it names one)
// rather than for the first answer, so a run does not start with workers still booting.
function announceReady() {
  const file = process.env.SERVERSCOPE_READY_FILE;
  if (file) require('node:fs').writeFileSync(file, `${process.pid}\n`);
}

module.exports = { parseOpts, makeServer, listenFailed, announceReady };

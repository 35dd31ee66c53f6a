// Node many_accepts.js (the seed: "hand-made cluster solution. Master process create
// server socket, spawn workers and close socket. Workers listen/accept on common server
// socket"). Written by hand as the seed says, not with the cluster module: the master
// listens, forks N workers with child_process.fork, sends each the listening handle
// (subprocess.send('server', server), Node's documented way to share a server), and once
// every worker holds it, closes its own copy. Each worker's event loop then accepts on the
// common socket, and the kernel decides who gets each connection (libuv drains the accept
// queue on each wake-up, so a woken worker takes a burst).
// (cluster with SCHED_NONE accepts the same way, but its primary keeps the socket open
// and the workers ask it for the handle on listen(); this is the seed's shape.)
//   node many_accepts.js --port P [--workers N (4)] [--host H] [--backlog B]
//        [--keepalive-timeout S] [--max-keepalive-requests N (0: unlimited)] [--timeout S]
// Workers exit when the master goes (their IPC channel disconnects).
'use strict';
const { fork } = require('node:child_process');
const net = require('node:net');
const { parseOpts, makeServer, listenFailed, announceReady } = require('./app.js');

if (process.argv[2] === '--worker') {
  const o = parseOpts(process.argv.slice(3));
  const http = makeServer(o);
  process.on('disconnect', () => process.exit(0));
  process.on('message', (msg, handle) => {
    if (msg === 'server') {
      // `handle` is a net.Server listening on the shared socket in this process
      handle.on('connection', (sock) => http.emit('connection', sock));
      // Receiving a server makes Node call listen() on it again with its default backlog
      // (511), which the kernel applies to the shared socket: say ours once more.
      if (handle._handle && handle._handle.listen) handle._handle.listen(o.backlog);
      process.send('ready');
    } else if (msg === 'conn') {
      http.emit('connection', handle); // accepted by the master before it closed its copy
    }
  });
} else {
  const o = parseOpts(process.argv.slice(2));
  const workers = [];
  const ready = [];
  const early = []; // accepted by the master before any worker held the socket
  let next = 0;
  const server = net.createServer({ pauseOnConnect: true }); // its bytes are the worker's
  // Until every worker holds the socket the master's own loop may accept: pass those on.
  const handOver = (sock) => ready[next++ % ready.length].send('conn', sock);
  server.on('connection', (sock) => (ready.length ? handOver(sock) : early.push(sock)));
  server.on('error', (err) => listenFailed(o, err));
  server.listen({ host: o.host, port: o.port, backlog: o.backlog }, () => {
    for (let i = 0; i < o.workers; i++) {
      const w = fork(__filename, ['--worker', ...process.argv.slice(2)]);
      workers.push(w);
      w.on('exit', (code, signal) => {
        process.stderr.write(`many_accepts: worker ${w.pid} exited (${signal || code})\n`);
      });
      w.on('message', (msg) => {
        if (msg !== 'ready') return;
        ready.push(w);
        while (early.length) handOver(early.shift());
        if (ready.length === o.workers) {
          server.close(); // the master's copy of the socket
          announceReady();
        }
      });
      w.send('server', server);
    }
  });
  const stop = () => {
    for (const w of workers) w.kill('SIGTERM');
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

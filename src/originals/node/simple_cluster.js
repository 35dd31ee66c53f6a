// Node simple_cluster.js (the seed: "cluster solution. Master process accepting
// connections and send request to workers through unix sockets"). The cluster module with
// round-robin scheduling (SCHED_RR, Node's default on Linux, set explicitly here): the
// primary owns the listening socket, accepts every connection, and passes its handle over
// the IPC channel (a Unix socket, SCM_RIGHTS) to the next worker in turn.
//   node simple_cluster.js --port P [--workers N (4)] [--host H] [--backlog B]
//        [--keepalive-timeout S] [--max-keepalive-requests N (0: unlimited)] [--timeout S]
// Workers exit when the primary goes (cluster workers leave on IPC disconnect).
'use strict';
const cluster = require('node:cluster');
const { parseOpts, makeServer, listenFailed, announceReady } = require('./app.js');

const o = parseOpts(process.argv.slice(2));
cluster.schedulingPolicy = cluster.SCHED_RR;

if (cluster.isPrimary) {
  for (let i = 0; i < o.workers; i++) cluster.fork();
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === o.workers) announceReady();
  });
  cluster.on('exit', (worker, code, signal) => {
    if (code === 98) process.exit(98); // the port was busy: every worker will say the same
    process.stderr.write(`simple_cluster: worker ${worker.process.pid} exited (${signal || code})\n`);
  });
} else {
  const server = makeServer(o);
  server.on('error', (err) => listenFailed(o, err));
  server.listen({ host: o.host, port: o.port, backlog: o.backlog });
}

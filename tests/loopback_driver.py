"""Run inside a network namespace by test_loopback_env.py: every HTTP client serverscope has,
with a proxy named in the environment, against a loopback server in the same namespace.

A small server on 127.0.0.1 answers `/` and a mod_status page (`?auto` and the HTML one).
For each proxy variable, at the same time: `serverscope load URL --engine httpx`, a
process reading mod_status as attach does (fetch, then the poller), and `serverscope fleet
--prometheus URL --once --json` (the server answers Prometheus's query API: no agent).
Prints one JSON line: what the server was asked, and each client's exit code and output.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections import Counter

PROXY = "http://10.0.0.1:3128"  # nothing answers there: no route leaves the namespace
VARS = ("http_proxy", "HTTP_PROXY", "ALL_PROXY", "all_proxy")
AUTO = b"ServerMPM: prefork\nBusyWorkers: 1\nIdleWorkers: 1\nScoreboard: W_\n"
HTML = b"<html><table><tr><td><b>0-0</b></td><td>4242</td></tr></table></html>"
READ_MOD_STATUS = """
import sys, time
from readers import modstatus, statuspoll
url = sys.argv[1]
assert modstatus.fetch(url).busy == 1
poller = statuspoll.StatusPoller(url, period_s=0.1)
deadline = time.monotonic() + 10
while poller.latest is None and time.monotonic() < deadline:
    poller.allow(True)  # as the sampler does after a sample that saw a free worker
    time.sleep(0.05)
poller.close()
assert poller.latest is not None, poller.error
print("mod_status read")
"""

hits: Counter[str] = Counter()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        # the poller marks its HTML request (?serverscope=...): counted as the page it is
        hits[self.path.split("?")[0] if "serverscope=" in self.path else self.path] += 1
        page = self.path.split("?")[0] if "serverscope=" in self.path else self.path
        body = {"/server-status?auto": AUTO, "/server-status": HTML}.get(page, b"hello\n")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # Prometheus's /api/v1/query: an empty vector
        hits[self.path] += 1
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    procs = {}
    for var in VARS:
        env = {**os.environ, var: PROXY}
        load = [sys.executable, "-m", "serverscope", "load", f"{base}/", "--engine", "httpx"]
        load += ["--clients", "2", "--duration", "1"]
        status = [sys.executable, "-c", READ_MOD_STATUS, f"{base}/server-status"]
        fleet = [sys.executable, "-m", "serverscope", "fleet", "--prometheus", base, "--once"]
        fleet.append("--json")
        for what, argv in (("load", load), ("mod_status", status), ("fleet", fleet)):
            procs[f"{what} {var}"] = subprocess.Popen(
                argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
    out = {}
    for name, p in procs.items():
        text, _ = p.communicate(timeout=60)
        out[name] = {"rc": p.returncode, "output": text[-2000:]}
    srv.shutdown()
    print(json.dumps({"hits": dict(hits), "clients": out}))


if __name__ == "__main__":
    main()

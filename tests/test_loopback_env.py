"""The loopback rule does not bend to the environment: with a proxy named in http_proxy,
HTTP_PROXY, ALL_PROXY or all_proxy, no serverscope HTTP client connects to it.

Seen before the fix: `serverscope load http://127.0.0.1:8080/ --engine httpx` with any of
them set made 56-64 connects to the proxy in 2 s (httpx reads the environment by default),
and mod_status was read through http_proxy (urllib's default opener). `fleet` reads
Prometheus with httpx too (trust_env off from its start). The clients run in a
network namespace with no route (tests/netns.py: nothing could leave the machine even
then), every connect(2) traced by strace.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netns
from loopback_driver import VARS

STRACE = shutil.which("strace")
DRIVER = Path(__file__).resolve().parent / "loopback_driver.py"
# strace's connect(2) on an AF_INET/AF_INET6 socket: the address it was asked for
CONNECT = re.compile(
    r"connect\(\d+, \{sa_family=AF_INET6?,.*?(?:inet_addr|inet_pton)\((?:AF_INET6, )?\"([^\"]+)\""
)


def off_loopback(trace: str) -> list[str]:
    """The connect(2) lines of an strace log whose address is not loopback."""
    bad = []
    for line in trace.splitlines():
        m = CONNECT.search(line)
        if m and not (m.group(1).startswith("127.") or m.group(1) in ("::1", "::ffff:127.0.0.1")):
            bad.append(line)
    return bad


def test_the_strace_reading_sees_a_connect_off_loopback():
    line = (
        "712 connect(7, {sa_family=AF_INET, sin_port=htons(3128), sin_addr=inet_addr("
        '"10.0.0.1")}, 16) = -1 ENETUNREACH (Network is unreachable)'
    )
    six = (
        "9 connect(3, {sa_family=AF_INET6, sin6_port=htons(80), sin6_flowinfo=htonl(0), "
        'inet_pton(AF_INET6, "2001:db8::1", &sin6_addr), sin6_scope_id=0}, 28) = -1'
    )
    lo = line.replace("10.0.0.1", "127.0.0.1")
    assert off_loopback("\n".join([line, six, lo])) == [line, six]


@pytest.mark.timeout(120)
@pytest.mark.skipif(STRACE is None, reason="needs strace (Debian package strace)")
@pytest.mark.skipif(netns.prefix()[0] is None, reason=netns.prefix()[1])
def test_no_client_connects_to_a_proxy_named_in_the_environment(tmp_path):
    trace = tmp_path / "connects"
    strace = [STRACE, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-e", "signal=none"]
    argv = netns.argv(*strace, "-o", str(trace), sys.executable, str(DRIVER))
    done = subprocess.run(argv, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    text = trace.read_text()
    bad = off_loopback(text)
    assert bad == [], f"{len(bad)} connects off loopback, the first: {bad[:3]}"
    assert "127.0.0.1" in text  # the trace saw the clients' connects
    for name, client in report["clients"].items():  # each did its work, on loopback
        assert client["rc"] == 0, (name, client["output"])
    hits = report["hits"]
    assert hits.get("/", 0) >= len(VARS), hits  # the load's requests arrived
    assert hits.get("/server-status?auto", 0) >= 2 * len(VARS), hits
    assert hits.get("/server-status", 0) >= len(VARS), hits
    assert hits.get("/api/v1/query", 0) >= len(VARS), hits  # each fleet asked, here

"""attach raises its soft open-file limit to the hard one: it keeps up to four /proc fds a
worker open (tree stat and schedstat, cgroup, syscall), ~1,000 at 250 workers, and past a
default soft limit of 1,024 those reads would turn to unknown."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

PROBE = """
import resource, subprocess, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
from sources.attach_source import AttachSource
try:
    src = AttachSource(pid=child.pid, exact_accepts=False)
    src.close()
finally:
    child.kill()
    child.wait()
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)
"""


def test_attach_raises_its_soft_open_file_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard <= 256:
        pytest.skip(f"the hard open-file limit is {hard}: nothing to raise")
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert out.returncode == 0, out.stderr
    soft, hard_seen = map(int, out.stdout.split())
    assert soft > 256 and soft == (hard_seen if hard_seen != resource.RLIM_INFINITY else 1 << 20)

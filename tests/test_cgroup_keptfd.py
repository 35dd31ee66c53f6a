"""CgroupCpuReader reads each process's /proc/PID/cgroup through an fd kept open: a process
moved to another cgroup is still seen there when its cgroup is next read (the kept fd
gives the file as it is now, not as it was when opened)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from plumbing.cgroupfs import CgroupError, LimitedCgroup
from readers.cgroupcpu import MOVED_S, CgroupCpuReader, cgroup_of

pytestmark = pytest.mark.timeout(30)


def test_a_moved_process_is_seen_in_its_new_cgroup_through_the_kept_fd() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        cg = LimitedCgroup(f"serverscope-test-keptfd-{os.getpid()}", None)
    except CgroupError as e:
        child.kill()
        child.wait()
        pytest.skip(str(e))
    reader = CgroupCpuReader()
    try:
        h = reader.hierarchy
        assert h is not None
        before = reader.read(0.0, [child.pid])
        assert [c.path for c in before] == [cgroup_of(child.pid, h)]
        cg.add(child.pid)
        assert cgroup_of(child.pid, h) == cg.path
        assert f"/proc/{child.pid}/cgroup" in reader._fds.fds  # read again through it
        after = reader.read(3 * MOVED_S, [child.pid])
        assert [(c.path, c.pids) for c in after] == [(cg.path, (child.pid,))]
    finally:
        child.kill()
        child.wait()
        reader.close()
        cg.remove()

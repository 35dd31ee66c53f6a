"""Which tree attach watches under a serverscope supervisor: the model root that is the
supervisor's own child, never one found deeper (`attach --pid 1` took, from the whole
machine's tree, some other serverscope's model root, and said "pid N has exited")."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import psutil
import pytest

from conftest import wait_until
from readers.attach_target import serverscope_root

# a process whose command line reads as a model root's: sh keeps running (`; :`), its
# argv carrying "-m servers.root"
ROOT = "sh -c 'sleep 60; :' -m servers.root"


@pytest.fixture
def tree() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        for kid in psutil.Process(p.pid).children(recursive=True):
            kid.kill()
        p.kill()
        p.wait()


def _started(tree: list[subprocess.Popen[bytes]], script: str) -> psutil.Process:
    p = subprocess.Popen(["sh", "-c", script])
    tree.append(p)
    proc = psutil.Process(p.pid)
    wait_until(
        lambda: any("servers.root" in c.cmdline() for c in proc.children(recursive=True)),
        10,
        "the model root started",
    )
    return proc


@pytest.mark.timeout(30)
def test_the_model_root_is_the_supervisors_own_child(tree) -> None:  # type: ignore[no-untyped-def]
    sup = _started(tree, f"{ROOT}; :")
    (root,) = [c for c in sup.children() if "servers.root" in c.cmdline()]
    assert serverscope_root(sup).pid == root.pid
    assert serverscope_root(root).pid == root.pid  # a model root is its own root


@pytest.mark.timeout(30)
def test_a_model_root_deeper_in_the_tree_is_not_taken(tree) -> None:  # type: ignore[no-untyped-def]
    top = _started(tree, f'sh -c "{ROOT}; :"; :')
    deep = [c for c in top.children(recursive=True) if "servers.root" in c.cmdline()]
    assert deep and all(c.ppid() != top.pid for c in deep)
    assert serverscope_root(top).pid == top.pid

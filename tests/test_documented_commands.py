"""Every command the README and docs/ show runs as written, and leaves no process behind.

The rules (which lines, how each kind of command is bounded, what is not run and why) are
docs/development.md's "Documented commands" table; this module and tests/doccommands.py
carry them out: `plan` reads the blocks, `regime`/`capped`/`fixture_port` rewrite a
command, the driver (`doccommands.drive`) runs it in a network namespace of its own
(tests/netns.py: the ports the docs name, 8080, 8000, 9464, are free whatever the host
runs, and nothing leaves the machine) and checks by pid that nothing it started is left.
A failure names every page and line that shows the command. `DOC_ONLY=docs/attach.md`
runs the commands of the pages whose path contains that text only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import netns
from doccommands import (
    ROOT,
    Documented,
    block_text,
    documented,
    extract,
    is_script,
    is_synopsis,
)

CAP_S = 1.0  # a documented --duration above this runs this long
JOBS = 3  # chains run at once (each mostly waits: see test_every_documented_command_runs)
FIXTURE_PORT = 8080  # where `attach --pid` finds its server (any port: the namespace is ours)
# `make` lines, not run here, and why
MAKE_LINES = {
    "make run": "`make setup` (which would reinstall the venv these tests run from), then "
    "`serverscope` with no arguments: that command is run here in its place",
    "make test": "the whole suite, this test among it",
    "make lint": "ruff and mypy: CI runs it before `make test`",
}
RUNS_INSTEAD = {"make run": "serverscope"}
# blocks another test runs as written and checks beyond their exit status (by the first
# command of the block): the test named, which must exist and read the page
RUN_ELSEWHERE = {
    "serverscope fix --model many_accepts --exclusive --workers 4 --load storm --clients 10 "
    "--rate 300 --duration 4 --json fix.json": "tests/test_fix.py::"
    "test_the_docs_commands_fix_skew_and_find_no_difference_between_two_same_runs",
    # a fault at 0.5 s: the --duration cap (CAP_S) would leave too little load after it
    "serverscope fix --model reuseport --workers 4 --load steady --clients 300 --rate 200 "
    "--close --duration 6 --fault pause:0@0.5 --json stall.json": "tests/test_fix.py::"
    "test_the_docs_stall_fix_pauses_the_same_worker_in_both_runs_and_the_queue_drains",
    # the fleet reads a Prometheus, which that test starts (with the page's scrape config)
    "serverscope fleet": "tests/test_fleet_docs.py::"
    "test_every_command_on_the_fleet_page_runs_as_written",
    # docs/production.md's fleet: three lab runs exporting, a Prometheus, the fleet screen
    "serverscope run --model many_accepts --exclusive --workers 4 --load burst --duration 300 "
    "--export 127.0.0.1:9464": "tests/test_fleet_docs.py::"
    "test_the_fleet_on_the_production_page_runs_as_written",
}
EXE = Path(sys.executable).with_name("serverscope")


@dataclass(frozen=True)
class Block:
    """The commands of one code block this test runs (those shown earlier left out), and
    every place each one is shown."""

    page: str
    line: int
    commands: tuple[Documented, ...]
    shown_at: dict[str, tuple[str, ...]]  # a command's text -> every page:line showing it

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"

    def places(self, d: Documented) -> str:
        return ", ".join(self.shown_at[" ".join(d.words)])


OUTPUT_OPTIONS = ("--json", "--csv", "--record", "--svg", "--before", "--after")


def writes_a_file(words: list[str]) -> bool:
    """A line naming a file it writes: a later line of its block may read it."""
    return any(
        w in OUTPUT_OPTIONS or w.startswith(tuple(o + "=" for o in OUTPUT_OPTIONS)) for w in words
    )


def blocks() -> list[Block]:
    """Every code block with a command, in page order; a command already shown in an earlier
    block runs there only, unless it writes a file (a later line may read it)."""
    docs = documented()
    shown_at: dict[str, list[str]] = {}
    for d in docs:
        shown_at.setdefault(" ".join(d.words), []).append(d.where)
    places = {k: tuple(v) for k, v in shown_at.items()}
    out: list[Block] = []
    seen: set[str] = set()
    by_block: dict[tuple[str, int], list[Documented]] = {}
    for d in docs:
        by_block.setdefault((d.page, d.block), []).append(d)
    for (page, line), found in by_block.items():
        keep = []
        for d in found:
            text = " ".join(d.words)
            if text not in seen or writes_a_file(d.words):
                keep.append(d)
            seen.add(text)
        if keep:
            out.append(Block(page, line, tuple(keep), places))
    return out


BLOCKS = blocks()


def _exe() -> list[str]:
    return [str(EXE)] if EXE.exists() else [sys.executable, "-m", "serverscope"]


@functools.cache
def _parser() -> argparse.ArgumentParser:
    from commands.main import build_parser

    return build_parser()


def _parse(words: list[str]) -> argparse.Namespace:
    argv = ["1" if w in ("PID", "TID") else w for w in words[1:]]
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # its usage line: the error says it
            return _parser().parse_args(argv)
    except SystemExit as e:
        raise AssertionError(f"serverscope's parser refuses it (exit {e.code})") from None


def regime(words: list[str]) -> str:
    a = _parse(words)
    if a.command is None or a.command == "replay":
        return "tui"
    if a.command == "demo":
        return "finite" if a.list or a.headless else "tui"
    if a.command == "attach":
        if a.once:
            return "finite"
        if a.no_ui or a.table or a.json:
            return "stream"
        return "tui"
    if a.command == "web":
        return "web"
    if a.command == "serve":
        return "finite" if a.list else "serve"
    return "finite"


def fixture_port(words: list[str]) -> int | None:
    """The port of the server this command expects to find running, if any."""
    a = _parse(words)
    if a.command == "attach":
        return a.port or FIXTURE_PORT
    if a.command == "stack":  # any process to read: the attach fixture's
        return FIXTURE_PORT
    if a.command == "load" and a.url:
        url = urlsplit(a.url)
        if url.hostname in ("127.0.0.1", "localhost", "::1"):
            return url.port or 80
    return None


def capped(words: list[str]) -> list[str]:
    out = list(words)
    for i, w in enumerate(out[:-1]):
        if w == "--duration" and float(out[i + 1]) > CAP_S:
            out[i + 1] = f"{CAP_S:g}"
    for option, name in (("--pid", "PID"), ("--tid", "TID")):
        if option in out and out[out.index(option) + 1].isdigit():
            out[out.index(option) + 1] = name  # an example pid or tid: the fixture's
    return out


def names_a_port(words: list[str]) -> bool:
    return (
        regime(words) == "web"
        or fixture_port(words) is not None
        or any(w in ("--port", "--export") for w in words)
    )


def missing_toolchain(words: list[str]) -> str | None:
    """Why the command cannot run here (None: it can): a model it names is an original
    whose toolchain this host lacks; the Debian package that brings it."""
    import originals
    from originals.registry import spec

    a = _parse(words)
    named = [getattr(a, "model", None) or "", *(getattr(a, "models", None) or "").split(",")]
    for name in named:
        if name and originals.is_original(name):
            t = spec(name).toolchain
            if not t.present:
                return f"{name} needs {t.command}: install the Debian package {t.package}"
    return None


# What a command may need that a host can lack: each check returns why the command cannot
# run here (naming what to install or enable), or None. A page whose commands need root, a
# cgroup or a kernel feature adds its check here, so that they skip with the reason only
# where they truly cannot run.
REQUIRES: list[Callable[[list[str]], str | None]] = [missing_toolchain]


def check_synopsis(words: list[str]) -> None:
    """Every option a usage line names is in its subcommand's --help (read in-process:
    the parser `serverscope` builds, without a process of its own)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        _parser().parse_args([words[1], "--help"])
    options = set(re.findall(r"--[a-z][\w-]*", " ".join(words)))
    missing = sorted(o for o in options if o not in out.getvalue())
    assert not missing, f"`serverscope {words[1]} --help` has no {', '.join(missing)}"


def check_make(line: str) -> str | None:
    """The command run in the make line's place (None: none), after checking its target."""
    target = line.split()[1]
    assert line in MAKE_LINES, f"{line!r}: run it here, or say in MAKE_LINES why not"
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, f"make has no target {target}: {dry.stderr.strip()}"
    return RUNS_INSTEAD.get(line)


def check_elsewhere(block: Block) -> None:
    """The block is run as written by the test RUN_ELSEWHERE names: it exists and reads
    this page."""
    path, _, name = RUN_ELSEWHERE[" ".join(block.commands[0].words)].partition("::")
    source = (ROOT / path).read_text(encoding="utf-8")
    assert f"def {name}(" in source, f"{path} has no test {name}"
    assert Path(block.page).name in source, f"{path} does not read {block.page}"


@dataclass
class Plan:
    """What the test does with the docs' commands: the chains the driver runs (each a list
    of commands run in order in one directory: a command reading a file an earlier line of
    its block wrote joins that line's chain), what is not run here and why, and the lines
    that are wrong as written."""

    chains: list[list[dict[str, Any]]] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)


def _written(words: list[str]) -> set[str]:
    return {words[i + 1] for i, w in enumerate(words[:-1]) if w in OUTPUT_OPTIONS}


def plan(blocks: list[Block], root: Path = ROOT) -> Plan:
    out = Plan()
    head, why_no_ns = netns.prefix()
    for block in blocks:
        if " ".join(block.commands[0].words) in RUN_ELSEWHERE:
            try:
                check_elsewhere(block)
            except AssertionError as e:
                out.wrong.append(f"{block.where}: {e}")
            continue
        if any(is_script(d) for d in block.commands) and block.commands[0].block:
            out.chains.append([script(block, root)])
            continue
        chains: list[tuple[set[str], list[dict[str, Any]]]] = []  # (files written, commands)
        order: dict[int, int] = {}  # id of a command -> its place in the block
        for d in block.commands:
            words = d.words
            try:
                if words[0] == "make":
                    instead = check_make(" ".join(words))
                    if instead is None:
                        continue
                    words = instead.split()
                if is_synopsis(words):
                    check_synopsis(words)
                    continue
                why = next((w for check in REQUIRES if (w := check(words))), None)
                if why is None and head is None and names_a_port(words):
                    why = f"names a port, which needs a network namespace of its own: {why_no_ns}"
                if why:
                    out.not_run.append(f"{block.places(d)}: {why}")
                    continue
                words = capped(words)
                command = {"words": words, "where": block.places(d), "regime": regime(words)}
                command["fixture_port"] = fixture_port(words)
            except AssertionError as e:
                out.wrong.append(f"{block.places(d)}: `{d.text}`: {e}")
                continue
            order[id(command)] = len(order)
            reads = set(words[2:])
            joined = [c for c in chains if c[0] & reads]  # every chain it reads a file of
            chains = [c for c in chains if not c[0] & reads]
            written = set().union(_written(words), *(c[0] for c in joined))
            merged = sorted((x for c in joined for x in c[1]), key=lambda x: order[id(x)])
            chains.append((written, [*merged, command]))
        out.chains += [commands for _, commands in chains]
    return out


def script(block: Block, root: Path = ROOT) -> dict[str, Any]:
    """A block written for a shell (variables, redirections, jobs) runs whole, as a reader
    pasting it would: `sh -ec`, in its own namespace and directory, `--duration` cut."""
    text = block_text(root / block.page, block.line)
    cut = re.sub(
        r"(--duration[ =])(\d+(?:\.\d+)?)",
        lambda m: m[1] + (f"{CAP_S:g}" if float(m[2]) > CAP_S else m[2]),
        text,
    )
    where = f"{block.where} (the block as a script)"
    return {"words": ["sh", "-ec", cut], "where": where, "regime": "script", "fixture_port": None}


def run_chain(commands: list[dict[str, Any]], cwd: Path) -> tuple[list[dict[str, Any]], str]:
    """(what each command cost, as the driver measured it; what failed, "" when nothing):
    the chain's commands in order, in a network namespace of their own."""
    cwd.mkdir()
    head, _ = netns.prefix()
    spec = {"exe": _exe(), "cwd": str(cwd), "commands": commands}
    driver = [sys.executable, str(Path(__file__).with_name("doccommands.py")), json.dumps(spec)]
    argv = [*head, *driver] if head is not None else driver
    limit = 120 * len(commands)  # the driver's own waits are shorter: past this it hangs
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return [], f"{commands[0]['where']}: the driver did not end in {limit} s"
    costs = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return costs, "" if done.returncode == 0 else done.stderr.strip()[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_every_documented_command_runs(tmp_path: Path) -> None:
    """Each chain in its own namespace and directory, JOBS at a time: most of a command's
    time is waiting (eBPF's start, --once's 3 s, a capped load), not CPU."""
    only = os.environ.get("DOC_ONLY", "")  # e.g. DOC_ONLY=docs/attach.md: those pages only
    todo = plan([b for b in BLOCKS if only in b.where])
    dirs = [tmp_path / str(i) for i in range(len(todo.chains))]
    with ThreadPoolExecutor(JOBS) as pool:
        done = list(pool.map(run_chain, todo.chains, dirs))
    costs = sorted((c for cost, _ in done for c in cost), key=lambda c: -c["wall_s"])
    for c in costs:
        print(f"{c['wall_s']:5.1f} s {c['cpu_s']:5.1f} s CPU  {c['where']}")
    print(f"{len(costs)} commands, {sum(c['cpu_s'] for c in costs):.1f} s of CPU in all")
    failed = [*todo.wrong, *(why for _, why in done if why)]
    assert not failed, "\n\n".join(failed)
    if todo.not_run:
        pytest.skip("not run here: " + "; ".join(todo.not_run))


def test_the_docs_show_the_commands_this_test_runs() -> None:
    """The reading itself: a change that hid the docs' commands would pass everything."""
    texts = {" ".join(d.words) for b in BLOCKS for d in b.commands}
    assert len(texts) >= 30, texts
    for must in ("serverscope web", "make test", "serverscope demo gil"):
        assert must in texts, must
    assert any(t.startswith("serverscope attach --pid") for t in texts)
    # every page with a shell block is read, README and docs/ alike, new pages too
    pages_read = {b.page for b in BLOCKS}
    assert {"README.md", "docs/attach.md", "docs/lab.md", "docs/fix-and-diff.md"} <= pages_read
    # a command shown twice runs once; one that writes a file runs where each block shows it
    shown = [" ".join(d.words) for d in documented()]
    assert len(shown) > len([d for b in BLOCKS for d in b.commands])


def test_reading_code_blocks() -> None:
    page = """Prose with serverscope in it, and `serverscope inline` code.

```sh
$ serverscope run --model single \\
    --duration 3   # a comment
curl http://127.0.0.1:8080/
```

```yaml
serverscope: not a command
```

    serverscope attach --port 8080   # an indented block

```
serverscope load URL [--preset P
                     --duration S]
make lint
serverscope fix: nothing to fix (output, not a command)
```
"""
    found = extract("p.md", page)
    assert [(d.line, d.words) for d in found] == [
        (4, ["serverscope", "run", "--model", "single", "--duration", "3"]),
        (13, ["serverscope", "attach", "--port", "8080"]),
        (16, ["serverscope", "load", "URL", "[--preset", "P", "--duration", "S]"]),
        (18, ["make", "lint"]),
    ]
    assert [is_synopsis(d.words) for d in found] == [False, False, True, False]


def test_a_line_reading_what_earlier_lines_wrote_runs_after_them_in_their_directory() -> None:
    page = """```sh
serverscope run --model single --duration 2 --record a.jsonl
serverscope demo --list
serverscope run --model single --duration 2 --record b.jsonl
serverscope diff a.jsonl b.jsonl --json d.json
serverscope replay d.json
serverscope run --model single --no-such-option
serverscope load URL [--preset P] --duration S
```
"""
    found = extract("p.md", page)
    block = Block("p.md", 1, tuple(found), {" ".join(d.words): (d.where,) for d in found})
    todo = plan([block])
    assert [[c["where"] for c in chain] for chain in todo.chains] == [
        ["p.md:3"],
        ["p.md:2", "p.md:4", "p.md:5", "p.md:6"],
    ]
    assert todo.chains[1][0]["words"][-3:] == ["1", "--record", "a.jsonl"]  # --duration cut
    assert [c["regime"] for c in todo.chains[1]] == ["finite", "finite", "finite", "tui"]
    assert len(todo.wrong) == 1 and todo.wrong[0].startswith("p.md:7: "), todo.wrong
    assert "parser refuses it" in todo.wrong[0]


def test_a_block_written_for_a_shell_runs_whole_as_a_script(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        """Text.

```sh
N=demo
serverscope "$N" --list > demos.txt   # a variable and a redirection: a script
grep -q skew demos.txt
```

```sh
serverscope run --model single --duration 30 --json "$N.json"
```
""",
        encoding="utf-8",
    )
    found = extract("p.md", page.read_text(encoding="utf-8"))
    assert [d.block for d in found] == [3, 9] and is_script(found[0])
    assert not is_script(extract("q.md", "```\nserverscope run --model single  # a; b\n```")[0])
    assert not is_script(extract("q.md", "```\nserverscope load URL [--engine a|b]\n```")[0])
    assert block_text(page, 3) == 'N=demo\nserverscope "$N" --list > demos.txt   # a ' + (
        "variable and a redirection: a script\ngrep -q skew demos.txt\n"
    )
    places = {" ".join(d.words): (d.where,) for d in found}
    blocks = [Block("p.md", d.block, (d,), places) for d in found]
    todo = plan(blocks, root=tmp_path)
    assert [[c["regime"] for c in chain] for chain in todo.chains] == [["script"], ["script"]]
    assert "--duration 1 --json" in todo.chains[1][0]["words"][2]  # cut, as a command's
    costs, failed = run_chain(todo.chains[0], tmp_path / "run")  # for real: sh finds ours
    assert not failed and len(costs) == 1, failed
    assert (tmp_path / "run" / "demos.txt").read_text().count("skew") >= 1


def _w(line: str) -> list[str]:
    return line.split()


def test_the_rules_for_a_command() -> None:
    assert capped(_w("serverscope run --duration 10 --json out.json"))[3] == "1"
    assert capped(_w("serverscope load URL --duration 0.5"))[-1] == "0.5"
    assert capped(_w("serverscope attach --pid 4321"))[-1] == "PID"
    assert capped(_w("serverscope stack --pid 4321 --tid 4325"))[-3:] == ["PID", "--tid", "TID"]
    assert fixture_port(_w("serverscope stack --pid 4321")) == FIXTURE_PORT
    assert writes_a_file(_w("serverscope run --record a.jsonl"))
    assert not writes_a_file(_w("serverscope replay a.jsonl"))
    assert regime(_w("serverscope demo skew")) == "tui"
    assert regime(_w("serverscope demo --list")) == "finite"
    assert regime(_w("serverscope attach --port 8080 --once --json")) == "finite"
    assert regime(_w("serverscope attach --port 8080 --table")) == "stream"
    assert regime(_w("serverscope serve many_accepts --port 8080")) == "serve"
    assert fixture_port(_w("serverscope attach --pid PID")) == FIXTURE_PORT
    assert fixture_port(_w("serverscope load http://127.0.0.1:8081/")) == 8081
    assert fixture_port(_w("serverscope run --model single")) is None
    assert shutil.which("make"), "make: the Makefile's targets are checked with make -n"

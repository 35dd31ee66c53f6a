"""Every command the README and docs/ show runs as written, and leaves no process behind.

Which lines: every line starting `serverscope` or `make` in a shell code block of
README.md or docs/*.md (fenced, with no language or sh, bash, console, text...; or indented
by four spaces; `tests/doccommands.py:extract`). The same command shown on several pages
runs once; a failure names every page and line that shows it.

How each runs (`tests/doccommands.py:drive`), in a network namespace of its own
(tests/netns.py), so the ports the docs name (8080, 8000, 9464) are free whatever the host
runs and nothing leaves the machine; through the installed `serverscope` script:
- a TUI (no subcommand, `demo NAME`, `attach` without --once/--table/--json/--no-ui)
  runs in a 120x36 pseudo-terminal until it has drawn its screen (and, for the lab and the
  demos, started its server), then gets `q` and must exit 0;
- `serve MODEL --port P` until GET / is answered on P; `web` until its page is served on
  --web-port (8000); `attach --table`/`--json` until three lines are out; an agent
  (`--no-ui --export`) until its /metrics answer: then SIGINT, and it must exit 0;
- everything else (`load`, `run`, `compare`, `--list`, `attach --once`) to its end: exit 0;
- a command that watches or loads a port it does not serve (`attach --port P`, `attach
  --pid`, `load URL`) gets a server started for it there first (for `load`, whose examples
  ask a model's /work, `serverscope serve single --port P`; for `attach`, Python's
  http.server); the `PID` of `--pid PID` (and the example pid 4321) becomes its pid;
- `--duration` above CAP_S seconds is cut to CAP_S (every load and run is bounded anyway;
  a TUI quits before its load would end);
- afterwards every process the command was seen to start, and the command itself, must be
  gone (by pid, within 10 s);
- a usage synopsis (`serverscope load URL [--preset P | ...]`: brackets, `|`, `...` or a
  placeholder such as URL) is not run: `serverscope SUBCOMMAND --help` must name every
  option it shows;
- `make` lines are not run (MAKE_LINES says why, one by one); their targets must exist
  (`make -n TARGET`);
- a command that needs a toolchain the host lacks (an original: gcc, nodejs, golang-go,
  apache2) skips, naming the Debian package; without network namespaces, the commands that
  name a port skip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import netns
from doccommands import ROOT, Documented, documented, extract, is_synopsis

CAP_S = 1.0  # a documented --duration above this runs this long
FIXTURE_PORT = 8080  # where `attach --pid` finds its server (any port: the namespace is ours)
# `make` lines, not run here, and why
MAKE_LINES = {
    "make run": "`make setup` (which would reinstall the venv these tests run from), then "
    "`serverscope` with no arguments: that command is run here in its place",
    "make test": "the whole suite, this test among it",
    "make lint": "ruff and mypy: CI runs it before `make test`",
}
RUNS_INSTEAD = {"make run": "serverscope"}
EXE = Path(sys.executable).with_name("serverscope")


@dataclass(frozen=True)
class Shown:
    """One command, and every place the docs show it."""

    text: str  # the command's words, joined
    at: tuple[Documented, ...]

    @property
    def where(self) -> str:
        return ", ".join(d.where for d in self.at)


def shown() -> list[Shown]:
    by_text: dict[str, list[Documented]] = {}
    for d in documented():
        by_text.setdefault(" ".join(d.words), []).append(d)
    return [Shown(text, tuple(at)) for text, at in by_text.items()]


SHOWN = shown()


def _exe() -> list[str]:
    return [str(EXE)] if EXE.exists() else [sys.executable, "-m", "serverscope"]


def _parse(words: list[str]):  # type: ignore[no-untyped-def]
    from commands.main import build_parser

    argv = ["1" if w == "PID" else w for w in words[1:]]
    try:
        return build_parser().parse_args(argv)
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
    if "--pid" in out and out[out.index("--pid") + 1].isdigit():
        out[out.index("--pid") + 1] = "PID"  # an example pid: the fixture's
    return out


def names_a_port(words: list[str]) -> bool:
    return (
        regime(words) == "web"
        or fixture_port(words) is not None
        or any(w in ("--port", "--export") for w in words)
    )


def needs_toolchain(words: list[str]) -> None:
    """Skip, naming the Debian package, when a model the command names is an original
    whose toolchain this host lacks."""
    import originals
    from originals.registry import spec

    a = _parse(words)
    named = [getattr(a, "model", None) or "", *(getattr(a, "models", None) or "").split(",")]
    for name in named:
        if name and originals.is_original(name):
            t = spec(name).toolchain
            if not t.present:
                pytest.skip(f"{name} needs {t.command}: install the Debian package {t.package}")


def check_synopsis(words: list[str]) -> None:
    help_text = subprocess.run(
        [*_exe(), words[1], "--help"], capture_output=True, text=True, timeout=60
    ).stdout
    options = set(re.findall(r"--[a-z][\w-]*", " ".join(words)))
    missing = sorted(o for o in options if o not in help_text)
    assert not missing, f"`serverscope {words[1]} --help` has no {', '.join(missing)}"


def check_make(line: str) -> str | None:
    """The command run in the make line's place (None: none), after checking its target."""
    target = line.split()[1]
    assert line in MAKE_LINES, f"{line!r}: run it here, or say in MAKE_LINES why not"
    dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode == 0, f"make has no target {target}: {dry.stderr.strip()}"
    return RUNS_INSTEAD.get(line)


def run_documented(words: list[str], tmp_path: Path) -> None:
    needs_toolchain(words)
    words = capped(words)
    head, why = netns.prefix()
    if head is None and names_a_port(words):
        pytest.skip(f"names a port, which needs a network namespace of its own: {why}")
    spec = {
        "exe": _exe(),
        "words": words,
        "regime": regime(words),
        "cwd": str(tmp_path),
        "fixture_port": fixture_port(words),
    }
    driver = [sys.executable, str(Path(__file__).with_name("doccommands.py")), json.dumps(spec)]
    argv = [*head, *driver] if head is not None else driver
    done = subprocess.run(argv, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    took = json.loads(done.stdout.splitlines()[-1])
    print(f"{' '.join(words)}: {took['wall_s']:.1f} s, {took['cpu_s']:.1f} s of CPU")


@pytest.mark.timeout(180)
@pytest.mark.parametrize("cmd", SHOWN, ids=[s.at[0].where for s in SHOWN])
def test_documented_command_runs(cmd: Shown, tmp_path: Path) -> None:
    words = cmd.at[0].words
    try:
        if words[0] == "make":
            instead = check_make(" ".join(words))
            if instead is None:
                return
            words = instead.split()
        if is_synopsis(words):
            check_synopsis(words)
        else:
            run_documented(words, tmp_path)
    except AssertionError as e:
        raise AssertionError(f"{cmd.where}: `{cmd.text}`: {e}") from None


def test_the_docs_show_the_commands_this_test_runs() -> None:
    """The reading itself: a change that hid the docs' commands would pass everything."""
    texts = {s.text for s in SHOWN}
    assert len(SHOWN) >= 30, texts
    for must in ("serverscope web", "make test", "serverscope demo gil"):
        assert must in texts, must
    assert any(t.startswith("serverscope attach --pid") for t in texts)


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


def _w(line: str) -> list[str]:
    return line.split()


def test_the_rules_for_a_command() -> None:
    assert capped(_w("serverscope run --duration 10 --json out.json"))[3] == "1"
    assert capped(_w("serverscope load URL --duration 0.5"))[-1] == "0.5"
    assert capped(_w("serverscope attach --pid 4321"))[-1] == "PID"
    assert regime(_w("serverscope demo skew")) == "tui"
    assert regime(_w("serverscope demo --list")) == "finite"
    assert regime(_w("serverscope attach --port 8080 --once --json")) == "finite"
    assert regime(_w("serverscope attach --port 8080 --table")) == "stream"
    assert regime(_w("serverscope serve many_accepts --port 8080")) == "serve"
    assert fixture_port(_w("serverscope attach --pid PID")) == FIXTURE_PORT
    assert fixture_port(_w("serverscope load http://127.0.0.1:8081/")) == 8081
    assert fixture_port(_w("serverscope run --model single")) is None
    assert shutil.which("make"), "make: the Makefile's targets are checked with make -n"

"""Every issue-18 bench, one after another on this machine, and the performance page
(docs/performance.md) in markdown: the machine and the date first, then each bench's
tables with each goal beside its figure (the benches print them; a missed goal says
"missed").

    .venv/bin/python bench/performance.py [--only peers,originals] [--out perf.md]
        [--doc docs/performance.md]

`--doc` replaces what lies between `<!-- performance -->` and `<!-- /performance -->`
in that page with the result (`--readme`, its old name, still works). Run it on a quiet
machine: the figures are ratios measured in one run, but the host's other load still
moves them (the load average before and after is printed). 11 minutes on the project's
2-core machine without bench_quit (under load 13-18); every bench is bounded by its own
timeout, and a bench that fails or is missing is said so in its section, never left out
silently. A bench that prints no markdown table is shown as its raw output.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BEGIN, END = "<!-- performance -->", "<!-- /performance -->"


@dataclass(frozen=True)
class Bench:
    key: str  # for --only
    title: str
    script: str
    args: tuple[str, ...] = ()
    timeout: float = 600.0
    what: str = ""


BENCHES = (
    Bench(
        "originals",
        "The models against their originals",
        "bench_originals.py",
        ("--duration", "5", "--rounds", "2"),
        what="wrk, same knobs, connections and duration on both sides; goal >= 0.5x each. "
        "CPU us/req is the server's own user+system CPU per request (all its processes), "
        "the evidence for what limits it.",
    ),
    Bench(
        "peers",
        "The models against uvicorn and gunicorn",
        "bench_peers.py",
        ("--duration", "5", "--rounds", "2"),
        what="async models against uvicorn (uvloop + httptools) with as many workers, "
        "keep-alive; blocking models against gunicorn sync/gthread, `Connection: close`; "
        "event against gthread under idle keep-alive clients. Goal >= 1.0x.",
    ),
    Bench("sampler", "Sampler", "bench_sampler.py", what="% of one core at 4 Hz."),
    Bench("sockdiag", "Attach at 50,000 TIME-WAIT sockets", "bench_sockdiag.py"),
    Bench("tui", "Start-up and the TUI's own cost", "bench_tui.py"),
    Bench(
        "loadgen",
        "Load generator",
        "bench_loadgen.py",
        ("--rounds", "2", "--skip-httpx"),
        what="the same server loaded by wrk and by the fast engine, one after the other.",
    ),
    Bench("quit", "Instant quit", "bench_quit.py", timeout=900.0),
    Bench(
        "phases",
        "Request-phase accounting (issue 16)",
        "bench_phases.py",
        what="what timing queue wait, in-server wait and service costs: per request in "
        "process, and many_accepts under wrk with the accounting on and off (goals: < 2 us "
        "a request, throughput within 3%).",
    ),
    Bench(
        "export",
        "Exporter",
        "bench_export.py",
        what="one scrape of `--export` at 250 workers (a synthetic snapshot).",
    ),
)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tables(out: str) -> list[str]:
    """The markdown tables in a bench's output (runs of lines starting with '|'), and its
    notes (lines starting with '> ', e.g. the peers' versions)."""
    found: list[str] = []
    block: list[str] = []
    for line in [*out.splitlines(), ""]:
        if line.startswith("> "):
            found.append(line)
        elif line.startswith("|"):
            block.append(line)
        elif block:
            if len(block) >= 3 and re.match(r"^\|[-:| ]+\|$", block[1]):
                found.append("\n".join(block))
            block = []
    return found


def run(b: Bench) -> tuple[str, float]:
    """The section for one bench and the seconds it took."""
    cmd = " ".join([f"bench/{b.script}", *b.args])
    head = f"### {b.title}\n\n`.venv/bin/python {cmd}`"
    if b.what:
        head += f": {b.what}"
    path = HERE / b.script
    if not path.exists():
        return f"{head}\n\n**not run**: bench/{b.script} does not exist in this tree.\n", 0.0
    t0 = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(path), *b.args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=b.timeout,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        took = time.monotonic() - t0
        partial = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else ""
        return (
            f"{head}\n\n**not finished**: stopped after {b.timeout:.0f} s.\n\n"
            f"```\n{partial.strip()}\n```\n",
            took,
        )
    took = time.monotonic() - t0
    found = tables(done.stdout)
    if any(f.startswith("|") for f in found):
        body = "\n\n".join(found)
    else:
        body = f"```\n{done.stdout.strip()}\n```"
    if done.returncode != 0:
        err = done.stderr.strip().splitlines()[-3:]
        body += f"\n\n**failed** (exit code {done.returncode}): " + " / ".join(err)
    return f"{head}\n\n{body}\n", took


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--only", help="comma-separated: " + ",".join(b.key for b in BENCHES))
    p.add_argument("--out", help="also write the markdown to this file")
    p.add_argument(
        "--doc", "--readme", dest="doc", help="replace this page's performance block with it"
    )
    a = p.parse_args()
    chosen = list(BENCHES)
    if a.only:
        keys = {k.strip() for k in a.only.split(",")}
        unknown = keys - {b.key for b in BENCHES}
        if unknown:
            p.error(f"--only: unknown bench {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHES if b.key in keys]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    before = load()
    sections = []
    t0 = time.monotonic()
    for b in chosen:
        print(f"running bench/{b.script} ...", file=sys.stderr, flush=True)
        text, took = run(b)
        print(f"  done in {took:.0f} s", file=sys.stderr, flush=True)
        sections.append(text)
    total = time.monotonic() - t0
    intro = (
        f"Measured on {machine()}, {when}, by `bench/performance.py` in {total / 60:.0f} "
        f"minutes, each bench after the other (load average before {before}, after "
        f"{load()}). The load generator (wrk or ours) runs on the same cores as the server."
    )
    md = intro + "\n\n" + "\n".join(sections)
    print(md)
    if a.out:
        Path(a.out).write_text(md)
    if a.doc:
        doc = Path(a.doc)
        text = doc.read_text()
        if BEGIN not in text or END not in text:
            print(f"performance: {a.doc} has no {BEGIN} ... {END} block", file=sys.stderr)
            return 2
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        doc.write_text(text[:start] + "\n" + md + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())

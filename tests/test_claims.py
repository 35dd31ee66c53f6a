"""`serverscope claims`: the field's published claims, measured; the CI runs the two short
ones (about 7 s) and checks every row against the experiment's own ground truth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from commands.main import main
from lab import claims

SRC = str(Path(__file__).resolve().parents[1] / "src")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "serverscope", "claims", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**env, "COLUMNS": "160"},
    )


def test_list_names_every_claim_and_a_bad_one_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["claims", "--list"]) == 0
    out = capsys.readouterr().out
    for key in claims.KEYS:
        assert key in out
    assert main(["claims", "--only", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown claim 'nope'" in err and "cloudflare-order" in err


def test_the_budget_leaves_out_what_would_end_past_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A claim is not started when its usual time would end past the budget: named, exit 1."""
    out = tmp_path / "out.json"
    assert main(["claims", "--only", "puma-3969", "--budget", "1", "--json", str(out)]) == 1
    assert "not run (budget 1 s): puma-3969" in capsys.readouterr().out
    assert json.loads(out.read_text())["skipped"] == ["puma-3969"]


@pytest.mark.solo  # counts of who accepted: the cores to themselves
@pytest.mark.slow
def test_the_orderings_and_the_node_docs_claims_run_and_say_why(tmp_path: Path) -> None:
    """The two short claims, as the docs show them: rows with ours and why; the counts are
    the scoreboard's (each worker's own), so 100 sequential connections sum to 100."""
    p = cli(
        "--only", "cloudflare-order", "--only", "node-docs", "--budget", "30",
        "--json", "claims.json", cwd=tmp_path,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    rows = {r["claim"]: r for r in json.loads((tmp_path / "claims.json").read_text())["claims"]}
    assert set(rows) == {"cloudflare-order", "node-docs"}
    order = rows["cloudflare-order"]
    fifo, lifo = (part.split()[-1] for part in order["ours"].split("; "))
    for counts in (fifo, lifo):
        assert sum(map(int, counts.split("/"))) == 100, order["ours"]
    # blocking accept is FIFO here whatever the machine: every worker waits its turn
    assert max(map(int, fifo.split("/"))) <= 35, order
    assert order["confirmed"] is not None and "top share" in order["why"]
    assert (
        rows["node-docs"]["confirmed"] is not None and "bursts over 70%" in rows["node-docs"]["why"]
    )
    assert "confirmed" in p.stdout

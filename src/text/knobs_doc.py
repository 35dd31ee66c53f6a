"""docs/knobs.md, written from the tables: the model knobs (`servers.knobs.KNOBS`, through
`lab.server`), each model's and original's own knobs and defaults, the load options
(`loadgen.options.LOAD_OPTIONS`) and the presets. Nothing in the page is typed by hand, so
it cannot drift from what the command line takes; tests/test_knobs.py fails when the
committed page differs from what this writes.

    python -m text.knobs_doc docs/knobs.md      (no path: to stdout)
"""

from __future__ import annotations

import sys
from pathlib import Path

from lab.server import KNOB, KNOBS, ModelEntry, catalogue
from loadgen.levels import PRESET_HELP, PRESETS
from loadgen.options import LOAD_OPTIONS
from plumbing.settings import Setting

REGENERATE = "python -m text.knobs_doc docs/knobs.md"
KINDS = {int: "whole number", float: "number", str: "text", bool: "switch"}
UNITS = {"s": "seconds", "ms": "milliseconds", "req/s": "requests a second"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _flag(s: Setting) -> str:
    if s.kind is bool:
        return f"`{s.option}`" + (f" / `{s.off_flag}`" if s.off_flag else "")
    return f"`{s.option} {s.placeholder}`" + "".join(f" (or `{a}`)" for a in s.aliases)


def _kind(s: Setting) -> str:
    kind = KINDS[s.kind]
    return f"{kind}, {UNITS[s.unit]}" if s.unit else kind


def _default(s: Setting, per_model: str) -> str:
    if s.default is None:
        return per_model if s.per_model else (s.none_means or "none")
    shown = f"`{s.show(s.default)}`"
    return f"{shown}, or the model's own" if s.per_model else shown


def _knob_rows() -> list[str]:
    rows = [
        "| flag | Apache | type | range | default | what it does |",
        "|---|---|---|---|---|---|",
    ]
    for k in KNOBS:
        cells = (_flag(k), k.directive, _kind(k), k.range_text(), _default(k, "the model's"))
        rows.append("| " + " | ".join(_cell(c) for c in (*cells, k.help)) + " |")
    return rows


def _model_row(e: ModelEntry) -> str:
    own = ", ".join(f"`{k.option}` {e.default_text(k.name)}" for k in e.own_knobs) or "none"
    common = ", ".join(f"`{KNOB[name].option}` {e.default_text(name)}" for name in e.own_defaults)
    what = e.summary if not e.original else f"{e.summary} (model `{e.twin}`)"
    return f"| `{e.name}` | {_cell(own)} | {_cell(common)} | {_cell(what)} |"


def _load_rows() -> list[str]:
    rows = ["| flag | type | range | default | what it does |", "|---|---|---|---|---|"]
    for o in LOAD_OPTIONS:
        cells = (_flag(o), _kind(o), o.range_text(), _default(o, ""), o.help)
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _preset_rows() -> list[str]:
    rows = ["| preset | the options it sets | what it shows |", "|---|---|---|"]
    for name, level in PRESETS.items():
        options = f"{level.with_(name='custom').flags()} --duration {level.duration:g}"
        rows.append(f"| `{name}` | `{options.strip()}` | {_cell(PRESET_HELP[name])} |")
    return rows


def render() -> str:
    entries = catalogue()
    every = [f"`{k.option}`" for k in KNOBS if all(e.takes(k.name) for e in entries)]
    lines = [
        "# Knobs and load options",
        "",
        f"<!-- Generated from the tables by `{REGENERATE}`; do not edit by hand: "
        "tests/test_knobs.py fails when this page differs from what the tables give. -->",
        "",
        "Each model knob and each load option is declared once, in a table "
        "(`src/servers/knobs.py`, `src/loadgen/options.py`); the command line, the TUI's "
        "choosers, the one-line message for a bad value and this page are read from it. "
        f"Regenerate this page with `{REGENERATE}`.",
        "",
        "## Model knobs",
        "",
        "`serverscope` (the live lab), `serve`, `run`, `compare` and `web` take these. A "
        "model refuses a knob it does not have, and a value out of range, in one line "
        "naming the flag.",
        "",
        *_knob_rows(),
        "",
        "## Each model's knobs and defaults",
        "",
        f"Every model takes {', '.join(every)}; the rest are a model's own. An original's "
        "defaults are those of the model that copies it; where it has none, the real "
        "server's own default applies (Apache's pool adapts as Apache's does).",
        "",
        "| model | its own knobs and their defaults | its own defaults for the common knobs "
        "| what it is |",
        "|---|---|---|---|",
        *(_model_row(e) for e in entries),
        "",
        "## Load options",
        "",
        "`serverscope load`, `run`, `compare` and the live lab (`serverscope`, `web`) take "
        "the same load: a preset (`--load PRESET`, or `--preset PRESET`) and these options "
        "over its fields. Without a preset, `load` starts from the defaults below, and the "
        "others from their own default preset (their `--help` says which).",
        "",
        *_load_rows(),
        "",
        "## Presets",
        "",
        *_preset_rows(),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if not argv:
        sys.stdout.write(text)
        return 0
    path = Path(argv[0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

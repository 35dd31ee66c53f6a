"""One declaration per knob and per load option (issue 24, part 2).

Each model knob was declared four or five times (ServerConfig, the argparse options with
their defaults as literals, the TUI's labels, the models' comments, the range checks'
labels), and `run` and `compare` took presets only. Now a knob is a row of
`servers.knobs.KNOBS` and a load option a row of `loadgen.options.LOAD_OPTIONS`: these
tests check that the command line, the choosers, the messages and docs/knobs.md read them.
"""

from __future__ import annotations

import argparse
import ast
import functools
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from commands.main import build_parser
from commands.main import main as cli
from lab.server import KNOB, KNOBS, ServerConfig, catalogue, entry
from loadgen.levels import PRESETS, LoadLevel
from loadgen.options import LOAD_OPTION, LOAD_OPTIONS
from plumbing.settings import Setting
from text import knobs_doc

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"


# -- one place ------------------------------------------------------------------------------


def test_serverconfig_and_loadlevel_take_their_defaults_from_the_tables() -> None:
    config = {f.name: f.default for f in fields(ServerConfig)}
    assert set(config) - {"model", "phases"} == set(KNOB), "a knob without a row, or a row"
    for k in KNOBS:  # None where a model may have its own default, else the row's
        assert config[k.name] == (None if k.per_model else k.default), k.name
    level = {f.name: f.default for f in fields(LoadLevel)}
    assert set(level) - {"name"} == set(LOAD_OPTION)
    assert all(level[o.name] == o.default for o in LOAD_OPTIONS)


@functools.cache
def _nodes() -> tuple[tuple[str, ast.AST], ...]:
    """Every node of every module in src/, with its module's path (parsed once)."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        out += [(rel, node) for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))]
    return tuple(out)


def _add_argument_flags() -> list[str]:
    """Every string literal passed to an `add_argument` call in src/."""
    found = []
    for path, node in _nodes():
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            found += [
                f"{path}: {a.value}"
                for a in node.args
                if isinstance(a, ast.Constant) and isinstance(a.value, str)
            ]
    return found


def test_no_knob_or_load_option_is_spelled_out_to_argparse_by_hand() -> None:
    """commands/common.py repeated the knobs' defaults (511, 5.0, 60.0, 10_000.0) and
    `load`, the TUI and `run` each declared their own load options."""
    flags = {s.option for s in (*KNOBS, *LOAD_OPTIONS)} | {
        s.off_flag for s in LOAD_OPTIONS if s.off_flag
    }
    other = {
        "commands/attach.py: --port",  # the port of a server to watch: no knob
        "commands/stack.py: --timeout",  # how long a stack capture may take: no knob
    }
    by_hand = [f for f in _add_argument_flags() if f.split(": ")[1] in flags]
    assert set(by_hand) == other, by_hand


def test_a_help_text_is_written_once() -> None:
    """A row's help is in src/ once: in its table (argparse, the docs read it there)."""
    texts: dict[str, list[str]] = {}
    for path, node in _nodes():
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            texts.setdefault(node.value, []).append(path)
    for s in (*KNOBS, *LOAD_OPTIONS):
        assert len(texts.get(s.help, [])) == 1, (s.name, texts.get(s.help))


def test_every_knob_of_a_model_or_an_original_is_a_row_and_originals_copy_their_twin() -> None:
    for e in catalogue():
        assert e.spec.knobs <= set(KNOB), (e.name, e.spec.knobs - set(KNOB))
        if e.original:
            twin = entry(e.twin or "")
            for name, value in e.spec.defaults.items():
                assert twin.default(name) == value, (e.name, name)


# -- the same load options everywhere -------------------------------------------------------

# a value for every load option, none of them a default or burst's
EVERY_OPTION = [
    "--clients", "7", "--rate", "55", "--close", "--ramp", "1.5", "--think", "30",
    "--think-exp", "--trickle", "5", "--cpu-ms", "2", "--io-ms", "3", "--bytes", "100",
    "--connect-timeout", "4", "--read-timeout", "9", "--duration", "12", "--requests", "99",
]  # fmt: skip


def test_run_compare_the_tui_web_and_load_take_the_same_load_options() -> None:
    """`run` and `compare` took --load and --duration only: `run --clients 5` was refused."""
    from commands import compare, load, run, tui

    p = build_parser()
    preset = ["--load", "storm", *EVERY_OPTION]
    levels = {
        "load": load.level_from_args(p.parse_args(["load", "127.0.0.1:1", *preset])),
        "run": run.level_from_args(p.parse_args(["run", "--model", "single", *preset])),
        "compare": compare.level_from_args(p.parse_args(["compare", "--models", "x", *preset])),
        "tui": tui.level_from_args(p.parse_args(preset)),
        "web": tui.level_from_args(p.parse_args(["web", *preset])),
    }
    want = PRESETS["storm"].with_(
        name="custom", clients=7, rate=55.0, keepalive=False, ramp=1.5, think_ms=30.0,
        think_exp=True, trickle_ms=5.0, cpu_ms=2.0, io_ms=3.0, bytes=100,
        connect_timeout=4.0, read_timeout=9.0, duration=12.0, requests=99,
    )  # fmt: skip
    # the lab keeps the preset's name over its options, as its chooser and + key do
    assert levels["tui"].name == levels["web"].name == "storm"
    assert {k: v.with_(name="custom") for k, v in levels.items()} == dict.fromkeys(levels, want)
    # the preset's own spelling in `load` works in the others too
    assert (
        run.level_from_args(p.parse_args(["run", "--model", "m", "--preset", "light"]))
        == (PRESETS["light"])
    )


def test_a_duration_alone_keeps_the_preset_and_flags_make_the_level_again() -> None:
    from commands import load, run

    p = build_parser()
    a = p.parse_args(["run", "--model", "single", "--load", "storm", "--duration", "3"])
    assert run.level_from_args(a) == PRESETS["storm"].with_(duration=3.0)
    level = load.level_from_args(p.parse_args(["load", "x", *EVERY_OPTION]))
    again = load.level_from_args(p.parse_args(["load", "x", *level.flags().split()]))
    assert again == level.with_(duration=LoadLevel().duration)  # flags() leave it out


def test_web_repeats_every_load_option_and_switch_to_each_page() -> None:
    """`--close` shares its dest with `--keepalive`: each page's command must say --close."""
    from commands import tui, web

    p = build_parser()
    a = p.parse_args(["web", "--model", "many_accepts", "--exclusive", *EVERY_OPTION])
    page = web.lab_argv(a, a.web_parser)
    b = p.parse_args(page)  # the page's own command line: the lab, no subcommand
    assert "--close" in page and "--keepalive" not in page, page
    assert tui.level_from_args(b) == tui.level_from_args(a)
    assert tui.default_config(b) == tui.default_config(a)
    assert tui.default_config(b).exclusive


# -- bad values: one line naming the flag ---------------------------------------------------


def _out_of_range(s: Setting) -> str:
    if s.name == "host":
        return "300.1.1.1"
    if s.name == "request_read_timeout":
        return "header=20-10,MinRate=500"
    if s.choices:  # a policy's name: one it does not have
        return "fastest"
    assert s.low is not None, s.name
    return f"{s.low:g}" if s.above else f"{s.low - 1:g}"


def _model_taking(name: str) -> str:
    return next(e.name for e in catalogue() if not e.original and e.takes(name))


def _one_line(capfd: pytest.CaptureFixture[str]) -> str:
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize("knob", [k for k in KNOBS if k.kind is not bool], ids=lambda k: k.name)
def test_a_bad_knob_is_one_line_naming_its_flag(
    knob: Setting, capfd: pytest.CaptureFixture[str]
) -> None:
    model = _model_taking(knob.name)
    bad = _out_of_range(knob)
    said = knob.problem(knob.parse(bad))
    assert said is not None and said.startswith(knob.option), said
    for argv in (["serve", model, knob.option, bad], ["--model", model, knob.option, bad]):
        assert cli(argv) == 2, argv
        assert said in _one_line(capfd), argv
    if knob.kind in (int, float):  # not a number at all: argparse's line names it too
        with pytest.raises(SystemExit):
            cli(["serve", model, knob.option, "lots"])
        err = _one_line(capfd)
        assert f"argument {knob.option}" in err and "'lots'" in err, err


@pytest.mark.parametrize(
    "option", [o for o in LOAD_OPTIONS if o.kind is not bool], ids=lambda o: o.name
)
def test_a_bad_load_option_is_one_line_naming_its_flag_in_every_command(
    option: Setting, capfd: pytest.CaptureFixture[str]
) -> None:
    """`load --clients 0` said "clients must be between 1 and 100000", naming no flag."""
    bad = [option.option, _out_of_range(option)]
    for argv in (
        ["load", "http://127.0.0.1:1/", *bad],
        ["run", "--model", "single", *bad],
        ["compare", "--models", "single", *bad],
        bad,  # the live lab
    ):
        assert cli(argv) == 2, argv
        err = _one_line(capfd)
        assert f"{option.named} must be {option.range_text()}" in err, (argv, err)


def test_the_lab_refuses_load_options_without_a_load(capfd: pytest.CaptureFixture[str]) -> None:
    assert cli(["--load", "none", "--clients", "5"]) == 2
    assert "--load none runs no load: drop --clients" in _one_line(capfd)


# -- the TUI's choosers read the tables -----------------------------------------------------


def test_the_model_chooser_offers_the_rows_the_model_takes_with_their_labels() -> None:
    from tui.screens.model import build_config, knobs_of

    assert knobs_of("prefork") == [
        (k.name, k.shown_label)
        for k in KNOBS
        if k.chooser and k.kind is not bool and entry("prefork").takes(k.name)
    ]
    assert [label for _, label in knobs_of("worker")] == [
        "workers (processes)",
        "ThreadsPerChild",
        "RequestReadTimeout",
        "listen backlog",
    ]
    base = ServerConfig(model="worker")
    cfg = build_config(base, "event", {"async_factor": "1.5", "backlog": "64"}, {})
    assert (cfg.async_factor, cfg.backlog) == (1.5, 64)
    for values, message in (
        ({"workers": "two"}, "--workers: expected a whole number, got 'two'"),
        ({"workers": "0"}, "--workers must be between 1 and 1024, got 0"),
        ({"async_factor": "0"}, "--async-factor (AsyncRequestWorkerFactor) must be more than 0"),
        ({"backlog": ""}, "--backlog needs a value"),
    ):
        with pytest.raises(ValueError, match=r"^[^\n]+$") as e:
            build_config(base, "event", values, {})
        assert message in str(e.value), (values, str(e.value))


def test_the_load_chooser_shows_the_chooser_rows_and_names_the_flag() -> None:
    from loadgen.levels import LoadError
    from tui.screens.load import FIELDS, build_level

    assert [o.name for o in FIELDS] == [o.name for o in LOAD_OPTIONS if o.chooser]
    assert [o.shown_label for o in FIELDS] == ["clients", "rate, req/s", "duration, s"]
    level = build_level("steady", {"clients": "4", "rate": "", "duration": "9"})
    assert level == PRESETS["steady"].with_(clients=4, rate=None, duration=9.0)
    with pytest.raises(LoadError, match=r"^--rate: expected a number, got 'fast'$"):
        build_level("steady", {"clients": "4", "rate": "fast", "duration": "9"})
    with pytest.raises(LoadError, match=r"^--duration must be more than 0 seconds"):
        build_level("steady", {"clients": "4", "rate": "", "duration": "0"})


# -- docs/knobs.md --------------------------------------------------------------------------


def test_docs_knobs_md_is_what_the_tables_give_and_says_how_to_regenerate_it(
    tmp_path: Path,
) -> None:
    committed = (ROOT / "docs" / "knobs.md").read_text(encoding="utf-8")
    assert committed == knobs_doc.render(), f"docs/knobs.md is stale: {knobs_doc.REGENERATE}"
    assert knobs_doc.REGENERATE in committed
    # the command it shows, as written (from the checkout's root; here into a copy)
    argv = knobs_doc.REGENERATE.split()
    subprocess.run([sys.executable, *argv[1:]], cwd=tmp_path, check=True, timeout=60)
    assert (tmp_path / "docs" / "knobs.md").read_text(encoding="utf-8") == committed
    for s in (*KNOBS, *LOAD_OPTIONS):
        assert f"`{s.option}" in committed and s.help in committed, s.name


def test_the_argparse_help_of_every_option_is_its_rows() -> None:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {None: p, **sub.choices}
    for command, rows in (
        *((c, KNOBS) for c in (None, "serve", "run", "compare", "web")),
        *((c, LOAD_OPTIONS) for c in (None, "load", "run", "compare", "web")),
    ):
        actions = parsers[command]._actions
        for s in rows:
            assert any(s.help in (a.help or "") for a in actions if a.dest == s.name), (
                command,
                s.name,
            )

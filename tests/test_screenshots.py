"""Every screenshot in the README and docs/ is made by `screenshots/make_screenshots.py`
from a command a user can run, and each page that shows it prints that command beside it.

The overflow and GIL shots used loads named `storm-cpu` and `cpu-heavy` that
`load --list-presets` does not offer; the attach shot had a script of its own. Here each
shot's command is read by serverscope's own parser and resolved as the command would
(model knobs checked, load preset looked up, demo found), without running it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from loadgen.levels import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "make_screenshots", ROOT / "screenshots" / "make_screenshots.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up by name)
    spec.loader.exec_module(module)
    return module


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def pages() -> dict[str, str]:
    """The README and every docs/ page, by path from the repository's root."""
    paths = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


SHOWN = re.compile(r"\]\((?:\.\./)?screenshots/([\w-]+)\.svg\)")


def test_every_screenshot_is_made_from_a_user_command_printed_beside_it() -> None:
    ms = _script()
    svgs = {p.stem for p in (ROOT / "screenshots").glob("*.svg")}
    names = {s.name for s in ms.SHOTS}
    shown = {name for text in pages().values() for name in SHOWN.findall(text)}
    assert svgs == names == shown, (svgs ^ names, names ^ shown)
    by_name = {s.name: s for s in ms.SHOTS}
    for page, text in pages().items():
        for m in SHOWN.finditer(text):
            shot = by_name[m.group(1)]
            # the page's text from the image before this one down to this image
            at = m.start()
            before = text.rfind("![", 0, text.rfind("![", 0, at))
            beside = _flat(text[max(before, 0) : at])
            for cmd in (shot.serve, shot.load, *shot.agents, shot.cmd):
                if cmd:
                    assert f"serverscope {cmd}" in beside, (page, shot.name, cmd)
    for shot in ms.SHOTS:
        if shot.kind == "live":
            cfg, level, _ = ms.live_args(shot)
            assert level is not None and level.name in PRESETS, (shot.name, level)
        elif shot.kind == "demo":
            assert ms.demo_scenario(shot).name == shot.argv[1]
        elif shot.kind == "attach":
            cfg, level = ms.attach_parts(shot)
            assert cfg.model.startswith("apache:") and "--preset" in shot.load, shot
            assert level.think_ms == PRESETS["keepalive-idle"].think_ms
        elif shot.kind == "fleet":  # lab runs exporting, each scraped, and the fleet screen
            assert ms.parse(shot.cmd).command == "fleet" and shot.agents
            for agent in shot.agents:
                a = ms.parse(agent)
                assert a.command == "run" and a.export and a.preset in PRESETS, agent
        else:
            assert ms.parse(shot.cmd).command == "compare"

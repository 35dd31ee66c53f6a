"""`pip install` prints no deprecation warning: the license is an SPDX expression with its
files named (PEP 639), which setuptools reads from 77 on. A table (`{ text = "MIT" }`), or
a `License ::` classifier beside the expression, is deprecated there and warns on every
build (seen with `pip wheel -v .` on the table: "`project.license` as a TOML table is
deprecated"; none with the string)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_an_spdx_expression_setuptools_reads_without_warning() -> None:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    project = meta["project"]
    assert isinstance(project["license"], str), "project.license as a table is deprecated"
    assert re.fullmatch(r"[A-Za-z0-9.+-]+( (AND|OR|WITH) [A-Za-z0-9.+-]+)*", project["license"])
    assert all((ROOT / f).is_file() for f in project["license-files"])
    classifiers = project.get("classifiers", [])
    assert not [c for c in classifiers if c.startswith("License ::")], "deprecated with SPDX"
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    version = re.search(r">=\s*(\d+)", setuptools)
    assert version and int(version[1]) >= 77, "SPDX license strings need setuptools 77"

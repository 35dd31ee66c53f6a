"""The house reads as the design: packages on floors, imports only downwards.

Floors, bottom to top: plumbing < servers, originals < loadgen < values < readers <
sources, judging < lab < tui, text, export < commands. A package may import from a floor
below it that `ALLOWED` lists for it, and from a package beside it only where `BESIDE`
allows (originals uses servers). Every `import` in src/ is read with `ast`, late imports inside
functions included, so a cycle cannot hide behind a function-level import.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

FLOORS: dict[str, int] = {
    "plumbing": 0,
    "servers": 1,
    "originals": 1,
    "loadgen": 2,
    "values": 3,  # the Snapshot, its codec, recordings, units: what every floor above reads
    "readers": 4,  # Linux (and mod_status) readers
    "sources": 5,  # the sampler and what it reads from
    "judging": 5,  # imbalance, diagnoses, the analyser
    "lab": 6,
    "tui": 7,
    "text": 7,
    "export": 7,
    "commands": 8,
    "serverscope": 9,  # only `python -m serverscope`, a shim over commands
}
BESIDE = {("originals", "servers")}  # (importer, imported) on the same floor, allowed
# which of our packages each may import at all (below it, and no more than this): the
# renderers read values and the lab, never the sampler; judging reads values only
ALLOWED: dict[str, set[str]] = {
    "plumbing": set(),
    "servers": {"plumbing"},
    "originals": {"plumbing", "servers"},
    "loadgen": {"plumbing"},
    "values": {"plumbing", "servers", "loadgen"},
    "readers": {"plumbing", "values"},
    "sources": {"plumbing", "servers", "loadgen", "values", "readers"},
    "judging": {"plumbing", "values"},
    "lab": {
        "plumbing",
        "servers",
        "originals",
        "loadgen",
        "values",
        "readers",
        "sources",
        "judging",
    },
    "text": {"plumbing", "loadgen", "values", "judging", "lab"},
    "export": {"plumbing", "values"},
    # the TUI sees every server, live, attached or recorded, through the lab's Watch
    "tui": {"plumbing", "loadgen", "values", "judging", "lab"},
    # the commands likewise; but `serve` runs a server in the foreground (servers,
    # originals: see ALLOWED_PAST_LAB) and `stack` reads one worker's stack, once, on
    # demand (readers.stacks: a one-shot read, nothing sampled or judged)
    "commands": {
        "plumbing",
        "servers",
        "originals",
        "loadgen",
        "values",
        "judging",
        "readers",
        "lab",
        "tui",
        "text",
        "export",
    },
    "serverscope": {"commands"},
}


# The views and the commands see the servers through the lab (`lab.server`: the models and
# originals with their knobs, the knob table, ServerConfig, ConfigError, ServerError),
# never `servers` or `originals` themselves; but `serve`, which runs one in the
# foreground (the Supervisor, an original's own serve, the loopback warning).
THROUGH_LAB = frozenset({"tui", "text", "export", "commands"})
BEHIND_LAB = frozenset({"servers", "originals"})
ALLOWED_PAST_LAB = {"commands/serve.py": frozenset({"servers", "originals"})}


def _package_of(path: Path) -> str:
    return path.relative_to(SRC).parts[0]


def _imported(tree: ast.AST, package: str) -> set[str]:
    """Our top-level packages that `tree` imports (relative imports stay in `package`)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.add(package if node.level else (node.module or "").split(".")[0])
    return {name for name in out if name in FLOORS and name != package}


def package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the files that import it."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in sorted(SRC.rglob("*.py")):
        package = _package_of(path)
        if package not in FLOORS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name in _imported(tree, package):
            rel = str(path.relative_to(SRC))
            graph.setdefault(package, {}).setdefault(name, []).append(rel)
    return graph


def test_every_package_in_src_has_a_floor() -> None:
    packages = {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOORS), f"give these a floor: {sorted(packages - set(FLOORS))}"
    assert set(ALLOWED) == set(FLOORS)
    for package, allowed in ALLOWED.items():  # the allow-list never reaches up or beside
        above = [n for n in allowed if FLOORS[n] > FLOORS[package]]
        beside = [n for n in allowed if FLOORS[n] == FLOORS[package] and (package, n) not in BESIDE]
        assert not above and not beside, (package, above, beside)


def test_no_package_imports_from_a_floor_above_or_beside_it() -> None:
    wrong = []
    for package, imports in package_imports().items():
        for name, files in imports.items():
            if name not in ALLOWED.get(package, set()):
                wrong.append(
                    f"{package} may import only {sorted(ALLOWED[package])}: {name} in {files}"
                )
            elif FLOORS[name] > FLOORS[package]:
                wrong.append(
                    f"{package} (floor {FLOORS[package]}) imports {name} "
                    f"(floor {FLOORS[name]}) in {files}"
                )
            elif FLOORS[name] == FLOORS[package] and (package, name) not in BESIDE:
                wrong.append(
                    f"{package} imports {name} beside it on floor {FLOORS[name]} in {files}"
                )
    assert not wrong, "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in `graph` (as a path that comes back to its start), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_there_is_no_import_cycle_between_packages() -> None:
    graph = {pkg: set(imports) for pkg, imports in package_imports().items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def _module_of(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache  # parsed once for the tests that read it
def module_imports() -> dict[str, set[str]]:
    """module -> the modules of src/ it imports (late imports inside functions included;
    `from pkg import mod` is an edge to pkg.mod, `from pkg import name` one to pkg)."""
    modules = {_module_of(p): p for p in SRC.rglob("*.py") if _package_of(p) in FLOORS}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        here = name.split(".") if is_package else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = {  # `if TYPE_CHECKING:` imports never run: no cycle through them
            id(n)
            for block in ast.walk(tree)
            if isinstance(block, ast.If) and ast.unparse(block.test).endswith("TYPE_CHECKING")
            for stmt in block.body
            for n in ast.walk(stmt)
        }
        out: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level + 1] if node.level else []
                mod = ".".join([*base, *(node.module.split(".") if node.module else [])])
                # a submodule where there is one, else a name from the package itself
                targets = [
                    f"{mod}.{alias.name}" if f"{mod}.{alias.name}" in modules else mod
                    for alias in node.names
                ]
            else:
                continue
            for t in targets:  # (a package's __init__, run first, is no edge of its own)
                while t and t not in modules:
                    t = t.rpartition(".")[0]
                if t and t != name:
                    out.add(t)
        graph[name] = out
    return graph


def test_there_is_no_import_cycle_between_files() -> None:
    """The package test cannot see a cycle inside one package: commands.main and
    commands.web imported each other, and loadgen.engine the two engines that build on it,
    through imports inside functions (the cycle was there, only later)."""
    cycle = _cycle(module_imports())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_module_reader_resolves_modules_packages_and_late_imports() -> None:
    graph = module_imports()
    assert "commands.web" in graph["commands.main"]  # from . import web
    assert "loadgen.engine_fast" in graph["loadgen.engines"]  # inside make_engine
    assert "values.snapshot" in graph["judging.diagnosis"]  # from values.snapshot import X
    assert "judging.analysis" in graph["judging.diagnosis"]  # from . import analysis
    assert "loadgen.engine_fast" not in graph["loadgen.fast_proto"]  # if TYPE_CHECKING


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"lab": {"tui"}, "tui": {"lab"}}, ["lab", "tui", "lab"]),
    ],
)
def test_the_cycle_finder_finds_cycles_and_only_cycles(
    graph: dict[str, set[str]], expected: list[str] | None
) -> None:
    assert _cycle(graph) == expected


def test_the_import_reader_sees_late_and_relative_imports() -> None:
    tree = ast.parse(
        "from . import x\nimport lab.session\n"
        "def f():\n    from tui.app import run_demo\n    import os\n"
    )
    assert _imported(tree, "commands") == {"lab", "tui"}


def test_the_lab_draws_nothing_and_parses_no_command_line() -> None:
    """lab/ is below every view: no argparse, rich or Textual in it."""
    banned = {"argparse", "rich", "textual"}
    found = []
    for path in sorted((SRC / "lab").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert not found, found


def test_the_views_and_commands_see_the_servers_only_through_the_lab() -> None:
    """The TUI listed the models itself (servers.models, originals.NAMES), and the commands
    caught servers' ConfigError and ServerError from their own modules."""
    wrong = []
    for package, imports in package_imports().items():
        if package not in THROUGH_LAB:
            continue
        for name in BEHIND_LAB & set(imports):
            wrong += [
                f"{f} imports {name}"
                for f in imports[name]
                if name not in ALLOWED_PAST_LAB.get(f, frozenset())
            ]
    assert not wrong, "\n".join(wrong)


# Sampling and judging are the lab's Watch's (read -> annotate -> log -> record -> observe):
# above the lab, nothing builds a sampler or an analyser of its own (attach did both, and
# the TUI's attach feed re-implemented the session's sampling beside them)
WATCHED_ONLY_BY_THE_LAB = frozenset({"sources.sampler", "judging.analyser"})


def _modules_imported(tree: ast.AST) -> set[str]:
    """The absolute modules `tree` imports, and each `from package import module` too."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{alias.name}" for alias in node.names)
    return out


def test_above_the_lab_nothing_samples_or_judges_but_through_its_watch() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        package = _package_of(path)
        if package not in FLOORS or FLOORS[package] <= FLOORS["lab"]:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for module in sorted(_modules_imported(tree) & WATCHED_ONLY_BY_THE_LAB):
            wrong.append(f"{path.relative_to(SRC)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_module_reader_sees_both_forms_of_import() -> None:
    tree = ast.parse(
        "import sources.sampler\nfrom judging import analyser\n"
        "def f():\n    from judging.analyser import Analyser\n"
    )
    assert _modules_imported(tree) >= WATCHED_ONLY_BY_THE_LAB

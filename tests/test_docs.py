"""The README is a front door: short, and every page in docs/ is one link away; every link
between them lands on a file and a heading that exist (GitHub's anchors)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 300
# made by another piece of work and linked before it lands; checked once it exists
PENDING: set[str] = set()
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    out: set[str] = set()
    fence = False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        m = re.match(r"^#{1,6} (.+)$", line)
        if m and not fence:
            base = anchor(m.group(1))
            name, n = base, 0
            while name in out:  # GitHub numbers repeated headings
                n += 1
                name = f"{base}-{n}"
            out.add(name)
    return out


def links(text: str) -> list[str]:
    no_code = re.sub(r"```.*?```", "", text, flags=re.S)
    return LINK.findall(no_code)


def test_the_readme_is_at_most_300_lines_and_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= README_MAX_LINES
    linked = {t.split("#")[0] for t in links(readme)}
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in linked, f"README.md does not link docs/{page.name}"
    for name in PENDING:
        assert name in linked, name


def test_every_link_between_the_pages_lands() -> None:
    broken = []
    for page in pages():
        text = page.read_text(encoding="utf-8")
        for target in links(text):
            if re.match(r"^[a-z]+:", target):  # http(s), mailto: not ours to check here
                continue
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            rel = str(dest.relative_to(ROOT)) if dest.is_relative_to(ROOT) else str(dest)
            where = f"{page.relative_to(ROOT)}: ({target})"
            if not dest.exists():
                if rel not in PENDING:
                    broken.append(f"{where}: no file {rel}")
                continue
            if frag and dest.suffix == ".md" and frag not in anchors(dest.read_text()):
                broken.append(f"{where}: no heading #{frag} in {rel}")
    assert not broken, "\n".join(broken)


def test_anchors_as_github_makes_them() -> None:
    assert anchor("A stalled worker behind SO_REUSEPORT") == "a-stalled-worker-behind-so_reuseport"
    assert anchor("The seed's claims, measured") == "the-seeds-claims-measured"
    assert anchor("`--once`, `--table`, `--json`") == "--once---table---json"
    assert anchors("# A\n## A\n```\n# not\n```\n") == {"a", "a-1"}

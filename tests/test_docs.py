"""The documentation stays a front door and a set of pages that a reader can follow.

``README.md`` is at most :data:`README_MAX_LINES` lines; no line of it or of ``docs/*.md``
is longer than :data:`LINE_MAX_CHARS` characters; every relative link points to a file in
the repository (and, for a Markdown page, to a heading it has); every repository path a page
names in backticks (``benchmarks/...``, ``btd_core/...``, ``tests/...``) exists; and no page
cites a tracker issue or a path outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

README_MAX_LINES = 200
LINE_MAX_CHARS = 200

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(r"^(?:benchmarks|btd_core|btd_tui|export|tests|docs|\.ci)/[\w./*{},-]*$")
FORBIDDEN = re.compile(r"\bissues? #?\d+|\.\./shared|\bitem \d+\b", re.IGNORECASE)
"""A tracker reference ("issue 18", "item 6") or a path into a folder beside the repository."""


def page_ids() -> list[str]:
    return [str(page.relative_to(ROOT)) for page in PAGES]


def prose(page: Path) -> str:
    """The page without its fenced code blocks (shell commands are not links)."""
    return FENCE.sub("", page.read_text(encoding="utf-8"))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    headings = re.findall(r"^#{1,6}\s+(.+)$", prose(page), re.MULTILINE)
    return {slug(heading) for heading in headings}


def expand_braces(pattern: str) -> list[str]:
    """``a.{log,json}`` -> ``a.log``, ``a.json`` (one brace group, as the pages write them)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    return [
        pattern[: match.start()] + choice + pattern[match.end() :]
        for choice in match.group(1).split(",")
    ]


def test_the_pages_are_found() -> None:
    assert README.is_file()
    assert len(PAGES) >= 8, page_ids()


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", PAGES, ids=page_ids())
def test_no_line_is_too_long(page: Path) -> None:
    long_lines = [
        f"{page.name}:{number}: {len(line)} chars"
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        if len(line) > LINE_MAX_CHARS
    ]
    assert not long_lines


@pytest.mark.parametrize("page", PAGES, ids=page_ids())
def test_relative_links_point_into_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.is_relative_to(ROOT) or not linked.exists():
            broken.append(f"{target}: no such file in the repository")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading '{anchor}' in {linked.name}")
    assert not broken, broken


@pytest.mark.parametrize("page", PAGES, ids=page_ids())
def test_repository_paths_named_exist(page: Path) -> None:
    missing = []
    for span in CODE_SPAN.findall(prose(page)):
        if not REPO_PATH.match(span):
            continue
        for pattern in expand_braces(span.rstrip("/")):
            if not list(ROOT.glob(pattern)):
                missing.append(pattern)
    assert not missing, missing


@pytest.mark.parametrize("page", PAGES, ids=page_ids())
def test_no_tracker_references_or_outside_paths(page: Path) -> None:
    found = [
        f"{page.name}:{number}: {match.group(0)}"
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
        for match in FORBIDDEN.finditer(line)
    ]
    assert not found, found

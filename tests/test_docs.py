"""The README and docs/ as a front door: every relative link lands inside the repository, the
README stays short and opens with the two commands a newcomer runs, and no text or config comment
points outside the repository (a sibling checkout, an absolute path of the machine it was written on)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.run import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
README_MAX_LINES = 260

# [text](target) and ![alt](target); the target ends at whitespace or the closing parenthesis
# (an optional "title" after it is ignored)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~)")
# a path outside the repository: a sibling checkout or an absolute path of the build machine
OUTSIDE = re.compile(r"\.\./shared|(?<![\w.~-])/(?:work|tmp)/")


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks: a link inside a code block is an example."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link or image that is not a web or mail address
    and not an anchor within the same page."""
    found = []
    for number, line in prose_lines(path):
        for target in LINK.findall(line):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            found.append((number, target))
    return found


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve_inside_the_repository(path: Path) -> None:
    root = REPO.resolve()
    broken = []
    for number, target in relative_links(path):
        file_part = target.split("#", 1)[0]
        resolved = (path.parent / file_part).resolve()
        if not resolved.is_relative_to(root):
            broken.append(f"{path.relative_to(REPO)}:{number}: {target} leaves the repository")
        elif not resolved.exists():
            broken.append(f"{path.relative_to(REPO)}:{number}: {target} does not exist")
    assert not broken, "\n".join(broken)


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_readme_opens_with_quickstart_then_test() -> None:
    commands, fenced = [], False
    for line in README.read_text().splitlines():
        if FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            command = line.split("#", 1)[0].strip().removeprefix("$ ").strip()
            if command:
                commands.append(command)
    assert commands[:2] == ["make quickstart", "make test"], commands[:2]


def test_no_path_outside_the_repository() -> None:
    files = [*markdown_files(), *sorted((REPO / "conf").rglob("*.yaml"))]
    hits = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
            for path in files
            for number, line in enumerate(path.read_text().splitlines(), start=1)
            if OUTSIDE.search(line)]
    assert not hits, "\n".join(hits)


def test_link_pattern_finds_links_and_images() -> None:
    """The checker itself: links, images and titled links are found (web links are skipped later);
    the outside-path pattern matches a sibling checkout and machine paths, not repository paths."""
    text = "see [a](docs/a.md#b), ![fig](../img.png \"t\") and [web](https://example.org)"
    assert LINK.findall(text) == ["docs/a.md#b", "../img.png", "https://example.org"]
    assert OUTSIDE.search("link ../shared/data") and OUTSIDE.search("in /work/main")
    assert not OUTSIDE.search("reports/quick/runs") and not OUTSIDE.search(".dvc/tmp/lock")

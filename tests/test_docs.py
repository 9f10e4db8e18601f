"""The README and docs/ pages: every relative link and image resolves (files and
``#anchor`` headings, by GitHub's slug rules), and the README stays short.

Plain text parsing only: no TensorFlow, no project imports.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
README_MAX_LINES = 250

# [text](target) and ![alt](target), with an optional "title"; <target> too.
_INLINE_LINK = re.compile(
    r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]"  # [text], which may hold one [nested] pair
    r"\(\s*<?([^)\s>]*)>?"  # (target
    r"(?:\s+\"[^\"]*\")?\s*\)"  # "title")
)
# [label]: target
_REFERENCE_DEF = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)
# <img src="..."> and <a href="...">
_HTML_LINK = re.compile(r"<(?:img|a)\b[^>]*?\b(?:src|href)=\"([^\"]*)\"", re.IGNORECASE)
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_EXTERNAL = ("http://", "https://", "mailto:")


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def outside_fences(text: str) -> list[str]:
    """The page's lines, those inside fenced code blocks (and the fences) blanked."""
    lines, fence = [], None
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence is None and match:
            fence = match.group(1)
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence):
                fence = None
        else:
            lines.append(line)
            continue
        lines.append("")
    return lines


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans blanked out."""
    return [_CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line) for line in outside_fences(text)]


def links(text: str) -> list[str]:
    """Every link and image target written in the page's prose."""
    prose = "\n".join(prose_lines(text))
    found = _INLINE_LINK.findall(prose) + _REFERENCE_DEF.findall(prose)
    return found + _HTML_LINK.findall(prose)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lowercased, every
    character that is not a letter, digit, space, ``-`` or ``_`` dropped, spaces
    turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").strip().lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a page's headings; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for line in outside_fences(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    """What is wrong with the relative links of one page, one message each."""
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if not target or target.lower().startswith(_EXTERNAL):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            problems.append(f"{target}: no such file {destination}")
            continue
        if anchor and destination.suffix == ".md":
            if unquote(anchor) not in anchors(destination):
                problems.append(f"{target}: no heading with anchor #{anchor} in {destination.name}")
    return problems


@pytest.mark.parametrize("page", doc_files(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / unquote(t.partition("#")[0])).resolve() for t in links(README.read_text())}
    missing = [p.name for p in doc_files()[1:] if p.resolve() not in linked]
    assert missing == []


def test_readme_is_short_and_names_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    assert "make run" in text
    assert "make test" in text


def test_a_broken_link_is_found(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading (here)\n")
    (tmp_path / "picture.png").write_bytes(b"")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[fine](other.md) [fine](other.md#a-code-heading-here) ![fine](picture.png)\n"
        "[self](#page) [web](https://example.org/nowhere.md) [mail](mailto:a@b.c)\n"
        "`[in code](missing-in-code.md)`\n\n"
        "```\n[in a fence](missing-in-fence.md)\n```\n\n"
        "[gone](missing.md) ![gone](missing.png) [bad anchor](other.md#nowhere)\n"
        '[ref]: missing-ref.md\n<img src="missing-img.png">\n'
    )
    problems = broken_links(page)
    assert [p.split(":")[0] for p in problems] == [
        "missing.md",
        "missing.png",
        "other.md#nowhere",
        "missing-ref.md",
        "missing-img.png",
    ]


@pytest.mark.parametrize(
    ("heading", "slug"),
    [
        (
            "Several GPUs and several machines (`--strategy`)",
            "several-gpus-and-several-machines---strategy",
        ),
        ("Installs and `constraints.txt`", "installs-and-constraintstxt"),
        ("JSON outputs (`--json`)", "json-outputs---json"),
        ("The `ktl` command line", "the-ktl-command-line"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_github_slug(heading: str, slug: str) -> None:
    assert github_slug(heading) == slug

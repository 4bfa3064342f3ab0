"""The README and docs/ hold together: relative links reach files and headings, the README stays one screen a topic."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text):
    """The lines outside fenced code blocks, where links and headings are read."""
    inside_fence = False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            inside_fence = not inside_fence
            continue
        if not inside_fence:
            yield line


def github_slug(heading):
    """The anchor GitHub gives a heading: lower case, inline markup and punctuation gone, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """Every heading anchor of a Markdown file, repeated headings numbered as GitHub numbers them."""
    seen = {}
    found = set()
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(path):
    """The links of a Markdown file that point into this repository (no scheme, no mail address)."""
    for line in prose_lines(path.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):
                yield target


def test_github_slugs_follow_githubs_rule():
    assert github_slug("Export for phones and boards (LiteRT)") == "export-for-phones-and-boards-litert"
    assert github_slug("The paper, reproduced") == "the-paper-reproduced"
    assert github_slug("`bin/train`: several devices") == "bintrain-several-devices"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_relative_links_reach_existing_files_and_headings(document):
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / file_part).resolve() if file_part else document
        if "shared" in pathlib.PurePosixPath(file_part).parts:
            broken.append(f"{target} (refers to shared/)")
        elif not linked.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{document.relative_to(ROOT)}: broken links: {broken}"


def test_readme_is_short_and_starts_with_make_demo_and_make_test():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) < README_MAX_LINES
    first_block = re.search(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert first_block, "README.md has no code block"
    assert "make demo" in first_block.group(1) and "make test" in first_block.group(1)

"""The documentation holds together: a short README, links that resolve, every page reachable from
the README, and every command the README names present in the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_BYTES = 10_240

FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto:, ...
README_COMMAND = re.compile(r"`citywatch ([a-z][a-z-]*)")
HELP_COMMAND = re.compile(r"^(?:│ | {2})([a-z][a-z0-9-]*)\s{2,}\S", re.M)


def _prose(text: str) -> str:
    """The text without fenced code blocks: a link-like string inside code is not a link."""
    return FENCE.sub("", text)


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a heading: inline code kept as text, lower case, punctuation dropped,
    spaces to hyphens."""
    text = heading.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_in(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(_prose(path.read_text(encoding="utf-8"))):
        base = anchor_of(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def links_in(path: Path) -> list[str]:
    return LINK.findall(INLINE_CODE.sub("", _prose(path.read_text(encoding="utf-8"))))


def broken_links(path: Path) -> list[str]:
    """Every relative link of ``path`` whose file, or whose #anchor in it, does not exist."""
    broken = []
    for target in links_in(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors_in(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest.name}")
    return broken


def test_readme_is_at_most_10_kb():
    size = len(README.read_bytes())
    assert size <= README_MAX_BYTES, f"README.md is {size} bytes; move detail into docs/"


@pytest.mark.parametrize("page", [README, ROOT / "CHANGELOG.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links_in(README) if not EXTERNAL.match(t)}
    assert DOCS, "docs/ holds no pages"
    missing = [p.name for p in DOCS if p.resolve() not in linked]
    assert missing == [], f"docs pages the README does not link: {missing}"


def test_every_command_the_readme_names_exists_in_the_cli():
    named = set(README_COMMAND.findall(README.read_text(encoding="utf-8")))
    assert {"demo", "evaluate", "console"} <= named
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    out = subprocess.run([sys.executable, "-m", "pipeline.app.cli", "--help"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True).stdout
    commands_part = out[out.index("Commands"):]
    available = set(HELP_COMMAND.findall(commands_part))
    assert {"demo", "watch"} <= available, out
    assert named - available == set(), f"README names commands the CLI lacks: {named - available}"


def test_the_link_check_catches_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Real heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[fine](other.md#real-heading) [self](#page) [web](https://example.org/x)\n"
                    "[gone](missing.md) [no anchor](other.md#invented) ![img](nope.png)\n"
                    "```\n[inside code](ignored.md)\n```\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md: no such file",
                                  "other.md#invented: no heading #invented in other.md",
                                  "nope.png: no such file"]


def test_anchors_follow_github_rules():
    assert anchor_of("Replaying footage: `citywatch ingest`") == "replaying-footage-citywatch-ingest"
    assert anchor_of("CAP 1.2") == "cap-12"
    assert anchor_of("Delivery, faults and security") == "delivery-faults-and-security"


def _result_rows(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if re.match(r"\| (fire|smoke|flood|congestion) \|", line)]


def test_the_readme_evaluation_table_repeats_the_measured_figures_of_docs_evaluation():
    readme_rows = _result_rows(README.read_text(encoding="utf-8"))
    measured = _result_rows((ROOT / "docs" / "evaluation.md").read_text(encoding="utf-8"))
    assert len(readme_rows) == 6
    assert readme_rows == measured

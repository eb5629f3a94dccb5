"""The README is a front page that does not lie: its links resolve, its make targets exist, it stays short."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from iris_classifier.project.paths import ROOT
from tests.conftest import makefile_targets

README = ROOT / "README.md"
MAX_README_LINES = 200

# [text](target) and ![alt](target); an optional "title" after the target is dropped.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
INLINE_CODE = re.compile(r"`([^`\n]+)`")
SHELL_SEPARATOR = re.compile(r"&&|\|\||;|\||\(|\)")
COMMENT = re.compile(r"(?:^|\s)#.*$")
# A docs page or picture named anywhere in a tracked text file.
DOCS_PATH = re.compile(r"\bdocs/(?:img/)?[\w.-]+\.(?:md|png|svg|jpg)\b")


def relative_links(markdown: str) -> list[str]:
    """Link targets that point into the repository (no scheme, no bare #anchor), without their #anchor."""
    prose = FENCE.sub("", markdown)
    targets = [match.group(1) for match in LINK.finditer(prose)]
    return [
        target.split("#", 1)[0]
        for target in targets
        if not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) and not target.startswith("#")
    ]


def make_targets_named(markdown: str) -> set[str]:
    """The targets of every `make ...` command in the code blocks and inline code of a Markdown text."""
    blocks = [body for language, body in FENCE.findall(markdown) if language.strip() in SHELL_LANGUAGES]
    code = blocks + INLINE_CODE.findall(FENCE.sub("", markdown))
    targets: set[str] = set()
    for snippet in code:
        for line in snippet.splitlines():
            for command in SHELL_SEPARATOR.split(COMMENT.sub("", line)):
                words = command.split()
                if "make" not in words:
                    continue
                arguments = words[words.index("make") + 1 :]
                targets.update(
                    word for word in arguments if not word.startswith("-") and "=" not in word and "<" not in word
                )
    return targets


def test_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines < MAX_README_LINES, f"README.md has {lines} lines; move details into docs/ (the front page: < 200)"


def test_every_relative_link_in_the_readme_resolves_to_a_file():
    links = relative_links(README.read_text())
    assert links, "README.md links nowhere: where do readers go next?"
    missing = [link for link in links if not (README.parent / link).resolve().is_file()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_make_target_the_readme_names_exists():
    named = make_targets_named(README.read_text())
    assert {"run", "test"} <= named, "the README's two commands are `make run` and `make test`"
    unknown = named - makefile_targets((ROOT / "Makefile").read_text())
    assert not unknown, f"README.md names make targets the Makefile does not have: {sorted(unknown)}"


def test_docs_pages_and_pictures_named_in_tracked_files_exist():
    try:
        tracked = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split("\0")
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"not a git work tree: {error}")
    missing: dict[str, set[str]] = {}
    for name in filter(None, tracked):
        path = ROOT / name
        if path == Path(__file__).resolve():  # its own examples name missing pages on purpose
            continue
        if path.suffix not in {".md", ".py", ".sh", ".yml", ".yaml", ".toml", ""} or not path.is_file():
            continue
        for reference in DOCS_PATH.findall(path.read_text(errors="replace")):
            if not (ROOT / reference).is_file():
                missing.setdefault(name, set()).add(reference)
    assert not missing, f"files naming docs that do not exist: {missing}"


def test_benchmark_record_keeps_its_marked_sections_whole():
    """bench/report.py rewrites docs/benchmarks.md between markers: each start needs its end, after it."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for name in re.findall(r"<!-- ([\w-]+):start -->", text):
        start, end = text.index(f"<!-- {name}:start -->"), text.find(f"<!-- {name}:end -->")
        assert end > start, f"docs/benchmarks.md: section {name} has no end marker after its start"


# The checks themselves, on texts where the answer is known: each can fail.


def test_link_check_finds_relative_links_and_leaves_urls_and_code_alone():
    text = (
        "See [the docs](docs/missing.md#part), ![a picture](docs/img/x.png), [web](https://example.org),\n"
        "[here](#anchor) and [mail](mailto:a@b.c).\n\n```bash\ncat [not](a-link.md)\n```\n"
    )
    assert relative_links(text) == ["docs/missing.md", "docs/img/x.png"]


def test_target_check_reads_commands_in_blocks_and_inline_code_only():
    text = (
        "Run `PORT=8080 make run` or `make -s which STAGE=production`; make sure of nothing here.\n\n"
        "```bash\nmake pipeline DVC_REMOTE=gdrive && make no-such-target  # not make this\n"
        "make bench-compare BASELINE=<ref>\n```\n\n```mermaid\nflowchart LR\n  a[make believe] --> b\n```\n"
    )
    assert make_targets_named(text) == {"run", "which", "pipeline", "no-such-target", "bench-compare"}
    assert makefile_targets("run: pipeline ## x\n$(STAMP):\nPY := x\nwhich: install\n") == {"run", "which"}

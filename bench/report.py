"""docs/benchmarks.md, the performance record, is shared: each benchmark rewrites only its own marked section."""

from __future__ import annotations

from pathlib import Path

from iris_classifier.project.paths import ROOT

REPORT = ROOT / "docs" / "benchmarks.md"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def write_section(name: str, body: str, path: Path = REPORT) -> None:
    """Replace the section `name` in place (append it the first time); every other section stays as it is."""
    start, end = markers(name)
    section = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)

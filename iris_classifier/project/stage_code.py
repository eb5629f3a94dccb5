"""The code a DVC stage runs, as one md5: its Python dependencies listed in dvc.yaml (file by file, as
tests/pipeline/test_stage_deps.py derives them from the import graph)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from iris_classifier.project.paths import ROOT


def stage_code_files(stage: str, root: Path = ROOT) -> list[str]:
    """The .py files dvc.yaml lists in the stage's deps, sorted."""
    import yaml

    deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return sorted(dep for dep in deps if dep.endswith(".py"))


def stage_code_md5(stage: str, root: Path = ROOT) -> str:
    """md5 over each of the stage's code files' path and bytes: the same checkout gives the same value anywhere."""
    digest = hashlib.md5()
    for name in stage_code_files(stage, root):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest()

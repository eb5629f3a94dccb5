"""The layering in pyproject.toml holds on the tree, and lint-imports notices an upward import or a cycle.

Each violation is made in a copy of the packages (never in the work tree) and checked with the same command
`make lint` runs.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
PACKAGES = ("iris_classifier", "bench", "ops", "stages", "demo")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", str(root / "pyproject.toml")],
        cwd=root,
        env={"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture()
def copy(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    text = module.read_text()
    head, _, rest = text.partition("from __future__ import annotations\n")
    module.write_text(f"{head}from __future__ import annotations\n\n{statement}\n{rest}")


def test_the_tree_keeps_every_contract():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 3 kept, 0 broken." in result.stdout


VIOLATIONS = {
    "a lower layer importing a higher one breaks the layers contract": (
        "iris_classifier/model/store.py",
        "import iris_classifier.serving.answers  # noqa",
        [
            "iris_classifier's layers: each imports only what sits below it BROKEN",
            "iris_classifier.model.store -> iris_classifier.serving.answers",
        ],
    ),
    "the package importing an entry point breaks the entry-point contract": (
        "iris_classifier/domain/schema.py",
        "import stages.load  # noqa",
        ["iris_classifier is not allowed to import stages:", "iris_classifier.domain.schema -> stages.load"],
    ),
    # bench.report is imported by bench.measure; the reverse closes a cycle inside one layer-free package
    "two siblings importing each other break the cycle contract": (
        "bench/report.py",
        "import bench.measure  # noqa",
        ["No cycles are allowed in bench."],
    ),
}


@pytest.mark.parametrize("violation", VIOLATIONS)
def test_a_deliberate_violation_breaks_its_contract(copy, violation):
    module, statement, messages = VIOLATIONS[violation]
    assert lint_imports(copy).returncode == 0  # the copy keeps every contract before the violation
    add_import(copy / module, statement)
    result = lint_imports(copy)
    assert result.returncode != 0
    for message in messages:
        assert message in result.stdout

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


def test_a_lower_layer_importing_a_higher_one_breaks_the_layers_contract(copy):
    assert lint_imports(copy).returncode == 0
    add_import(copy / "iris_classifier" / "model" / "store.py", "import iris_classifier.serving.answers  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "iris_classifier's layers: each imports only what sits below it BROKEN" in result.stdout
    assert "iris_classifier.model.store -> iris_classifier.serving.answers" in result.stdout


def test_the_package_importing_an_entry_point_breaks_the_entry_point_contract(copy):
    add_import(copy / "iris_classifier" / "domain" / "schema.py", "import stages.load  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "iris_classifier is not allowed to import stages:" in result.stdout
    assert "iris_classifier.domain.schema -> stages.load" in result.stdout


def test_two_siblings_importing_each_other_break_the_cycle_contract(copy):
    # bench.report is imported by bench.measure; the reverse closes a cycle inside one layer-free package
    add_import(copy / "bench" / "report.py", "import bench.measure  # noqa")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "No cycles are allowed in bench." in result.stdout

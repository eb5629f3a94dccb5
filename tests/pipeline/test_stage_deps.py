"""dvc.yaml lists, for each stage, every subpackage of iris_classifier that its script imports, however indirectly."""

from __future__ import annotations

import ast

import grimp
import pytest
import yaml

from iris_classifier.project.paths import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def script_of(command: str) -> str:
    """`python -m stages.load` -> stages/load.py; `python train.py` -> train.py."""
    words = command.split()
    return words[words.index("-m") + 1].replace(".", "/") + ".py" if "-m" in words else words[-1]


def subpackages_imported(script: str, graph: grimp.ImportGraph) -> set[str]:
    """The iris_classifier subpackages (as folders) that the script reaches through its imports."""
    direct = set()
    for node in ast.walk(ast.parse((ROOT / script).read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iris_classifier."):
            direct.add(node.module)
        elif isinstance(node, ast.Import):
            direct |= {alias.name for alias in node.names if alias.name.startswith("iris_classifier.")}
    reached = set(direct)
    for module in direct:
        reached |= graph.find_upstream_modules(module)
    return {"iris_classifier/" + module.split(".")[1] for module in reached if module.count(".") >= 1}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("iris_classifier", cache_dir=None)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_every_subpackage_its_script_imports(stage, graph):
    spec = STAGES[stage]
    script = script_of(spec["cmd"])
    assert script in spec["deps"], f"stage {stage}: its script {script} is not in its deps"
    missing = subpackages_imported(script, graph) - set(spec["deps"])
    assert not missing, f"stage {stage} imports {sorted(missing)} but dvc.yaml does not list them in its deps"


def test_the_check_notices_an_import_the_deps_miss(graph):
    # train.py reaches the model store, which reads the venv defaults: both subpackages must be found.
    found = subpackages_imported("train.py", graph)
    assert {"iris_classifier/model", "iris_classifier/project", "iris_classifier/data"} <= found
    assert "iris_classifier/serving" not in found


def test_bytecode_never_counts_in_a_stage_dependency():
    """Stages hash whole subpackages: a clone that ran Python (its __pycache__) must still be up to date."""
    import subprocess
    import sys
    from pathlib import Path

    dvc = str(Path(sys.executable).parent / "dvc")
    for path in ("iris_classifier/project/__pycache__/paths.cpython-311.pyc", "iris_classifier/model/store.pyc"):
        ignored = subprocess.run([dvc, "check-ignore", path], cwd=ROOT, capture_output=True, text=True)
        assert ignored.returncode == 0, f"{path} is hashed by DVC: add it to .dvcignore"
    kept = subprocess.run([dvc, "check-ignore", "iris_classifier/project/paths.py"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1

"""dvc.yaml lists, for each stage, exactly the code files its script runs: every module of iris_classifier it
imports, however indirectly (and the packages' __init__.py on the way), derived from the import graph."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

from iris_classifier.project.paths import ROOT

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
DVC = str(Path(sys.executable).parent / "dvc")


def script_of(command: str) -> list[str]:
    """`python -m stages.load` -> stages/__init__.py and stages/load.py; `python train.py` -> train.py."""
    words = command.split()
    if "-m" not in words:
        return [words[-1]]
    module = words[words.index("-m") + 1]
    packages = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
    return [f"{package.replace('.', '/')}/__init__.py" for package in packages] + [module.replace(".", "/") + ".py"]


def module_file(module: str, root: Path = ROOT) -> str:
    path = module.replace(".", "/")
    return f"{path}/__init__.py" if (root / path).is_dir() else f"{path}.py"


def code_files_run_by(scripts: list[str], graph: grimp.ImportGraph, root: Path = ROOT) -> set[str]:
    """The scripts, and the iris_classifier files their imports reach (each module's packages included)."""
    direct = set()
    for script in scripts:
        for node in ast.walk(ast.parse((root / script).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("iris_classifier"):
                direct.add(node.module)
            elif isinstance(node, ast.Import):
                direct |= {alias.name for alias in node.names if alias.name.startswith("iris_classifier")}
    reached = set(direct)
    for module in direct:
        reached |= graph.find_upstream_modules(module)
    modules = {".".join(module.split(".")[:i]) for module in reached for i in range(1, module.count(".") + 2)}
    return set(scripts) | {module_file(module, root) for module in modules}


def code_deps(spec: dict) -> set[str]:
    return {dep for dep in spec["deps"] if dep.endswith(".py") or Path(ROOT / dep).is_dir()}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("iris_classifier", cache_dir=None, exclude_type_checking_imports=True)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_lists_exactly_the_code_files_its_script_runs(stage, graph):
    spec = STAGES[stage]
    runs = code_files_run_by(script_of(spec["cmd"]), graph)
    listed = code_deps(spec)
    assert not runs - listed, f"stage {stage}: add to its deps in dvc.yaml: {sorted(runs - listed)}"
    assert not listed - runs, f"stage {stage}: its deps in dvc.yaml list code it never runs: {sorted(listed - runs)}"


def test_the_derivation_follows_imports_however_indirect(graph):
    found = code_files_run_by(["train.py"], graph)
    # train.py -> model/training.py -> model/store.py -> project/environment.py: found through two hops.
    assert {"iris_classifier/model/store.py", "iris_classifier/project/environment.py"} <= found
    assert "iris_classifier/model/__init__.py" in found and "iris_classifier/__init__.py" in found
    assert not any(path.startswith("iris_classifier/serving") for path in found)
    # The feedback stage runs one monitoring module, not the dashboard beside it.
    feedback = code_files_run_by(script_of(STAGES["feedback"]["cmd"]), graph)
    assert "iris_classifier/monitoring/feedback.py" in feedback
    assert "iris_classifier/monitoring/dashboard.py" not in feedback


def dvc_status(root: Path, env: dict[str, str]) -> dict:
    status = subprocess.run([DVC, "status", "--json"], cwd=root, env=env, capture_output=True, text=True, check=True)
    return yaml.safe_load(status.stdout)


@pytest.mark.slow
def test_an_edit_to_code_no_stage_runs_leaves_the_pipeline_up_to_date(rebuilt_copy):
    """The acceptance check, on a reproduced copy of the project: a comment appended to serving, monitoring or
    registry code leaves `dvc status` with nothing to do; one appended to the model store makes train stale."""
    pipeline_copy, env, _ = rebuilt_copy
    for path in (
        "iris_classifier/serving/answers.py",
        "iris_classifier/monitoring/dashboard.py",
        "iris_classifier/registry/signing.py",
    ):
        with open(pipeline_copy / path, "a") as file:
            file.write("# an edit no stage runs\n")
    status = subprocess.run(
        [DVC, "status", "--json"], cwd=pipeline_copy, env=env, capture_output=True, text=True, check=True
    )
    assert yaml.safe_load(status.stdout) == {}, status.stdout
    with open(pipeline_copy / "iris_classifier/model/store.py", "a") as file:
        file.write("# an edit the train stage runs\n")
    status = subprocess.run(
        [DVC, "status", "--json"], cwd=pipeline_copy, env=env, capture_output=True, text=True, check=True
    )
    assert {"train", "evaluate"} <= set(yaml.safe_load(status.stdout)), status.stdout


def test_bytecode_never_counts_in_a_stage_dependency():
    """A clone that ran Python (its __pycache__) must still be up to date."""
    for path in ("iris_classifier/project/__pycache__/paths.cpython-311.pyc", "iris_classifier/model/store.pyc"):
        ignored = subprocess.run([DVC, "check-ignore", path], cwd=ROOT, capture_output=True, text=True)
        assert ignored.returncode == 0, f"{path} is hashed by DVC: add it to .dvcignore"
    kept = subprocess.run([DVC, "check-ignore", "iris_classifier/project/paths.py"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1

"""The real DVC CLI on a copy of the project reproduced from scratch: no-op rerun, push/wipe/pull, the accuracy gate."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, run
from tests.pipeline.conftest import assert_rebuilt, stages

OUTPUTS = [
    "data/raw/iris.csv",
    "data/prepared/standardized.csv",
    "data/prepared/train.csv",
    "data/prepared/test.csv",
    "models/iris_classifier.bentomodel",
    "models/model.json",
]
# Every output, the model included, and the lock that records them: byte for byte the same in any directory.
DETERMINISTIC = [*OUTPUTS, "reports/metrics.json", "reports/confusion.csv", "reports/feedback.json", "dvc.lock"]


def changed_tracked_files(root: Path, env: dict[str, str]) -> str:
    return run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, env=env).stdout


def digests(root: Path, names: list[str]) -> dict[str, str]:
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}


@pytest.mark.slow
def test_repro_from_scratch_then_noop_then_push_wipe_pull(rebuilt_copy, pipeline_ready):
    copy, env, first = rebuilt_copy  # `make pipeline` (dvc repro) ran on a copy without outputs
    assert_rebuilt(first, copy)

    # Trained twice in two directories (the project's own run and this copy's, each with its own BentoML store):
    # the same bytes, the model's tag included; and the copy's run left its committed files as they were.
    assert digests(copy, DETERMINISTIC) == digests(ROOT, DETERMINISTIC)
    assert changed_tracked_files(copy, env) == "", "make pipeline rewrote committed files (commit dvc.lock?)"

    second = run(["dvc", "repro"], cwd=copy, env=env)
    assert "Running stage" not in second.stdout
    assert second.stdout.count("didn't change, skipping") == len(stages(copy))
    assert "Data and pipelines are up to date." in run(["dvc", "status"], cwd=copy, env=env).stdout

    before = digests(copy, OUTPUTS)
    run(["dvc", "push"], cwd=copy, env=env)
    shutil.rmtree(copy / ".dvc" / "cache")
    shutil.rmtree(copy / ".bentoml")
    for name in OUTPUTS:
        (copy / name).unlink()
    run(["dvc", "pull"], cwd=copy, env=env)
    assert digests(copy, OUTPUTS) == before

    # A machine that never trained restores the exact model into its store.
    imported = run([sys.executable, "-m", "iris_classifier.model.store"], cwd=copy, env=env)
    tag = __import__("json").loads((copy / "models/model.json").read_text())["tag"]
    assert f"{tag} is in the BentoML store" in imported.stdout
    assert (copy / ".bentoml" / "models" / tag.replace(":", "/") / "model.onnx").is_file()


@pytest.mark.slow
def test_training_again_changes_no_tracked_file(rebuilt_copy):
    copy, env, _ = rebuilt_copy
    tag = __import__("json").loads((copy / "models/model.json").read_text())["tag"]
    run(["bentoml", "models", "delete", "-y", tag], cwd=copy, env=env)  # trained anew, not found in the store
    forced = run(["dvc", "repro", "-f", "train"], cwd=copy, env=env)
    assert "Running stage 'train'" in forced.stdout
    run(["dvc", "repro"], cwd=copy, env=env)
    assert changed_tracked_files(copy, env) == ""
    assert (copy / ".bentoml" / "models" / tag.replace(":", "/") / "model.yaml").is_file()


@pytest.mark.slow
def test_accuracy_gate_fails_the_evaluate_stage(rebuilt_copy):
    copy, env, _ = rebuilt_copy  # reproduced: only the stage that reads the changed param runs again
    params = (copy / "params.yaml").read_text().replace("min_accuracy: 0.9", "min_accuracy: 1.01")
    (copy / "params.yaml").write_text(params)
    result = run(["dvc", "repro"], cwd=copy, env=env, check=False)
    assert result.returncode != 0
    assert "Running stage 'evaluate'" in result.stdout and "Running stage 'train'" not in result.stdout
    assert "below evaluate.min_accuracy 1.01" in result.stderr + result.stdout

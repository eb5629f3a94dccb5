"""The fault table of docs/troubleshooting.md ("When things go wrong"), each row a test with its expected message."""

from __future__ import annotations

import contextlib
import hashlib
import resource
import signal
import subprocess
import sys

import pytest
import yaml

from iris_classifier.harness.servers import Server
from tests.conftest import ROOT, run
from tests.pipeline.conftest import assert_rebuilt

PREPARED = ["data/prepared/standardized.csv", "data/prepared/train.csv", "data/prepared/test.csv"]


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def lock_md5(root, stage: str, path: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    return next(o["md5"] for o in lock["stages"][stage]["outs"] if o["path"] == path)


def test_model_missing_from_the_store_refuses_to_start_and_names_the_make_target(pipeline_ready, artifacts_dir):
    server = Server(
        "service:IrisClassifier",
        env={"IRIS_MODEL_TAG": "iris_classifier:notinthestore"},
        log_path=artifacts_dir / "serve-missing-model.log",
    )
    server.start(wait_ready=0)
    server_home = server.home
    try:
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=90)
        assert server.process.poll() is not None and server.process.returncode != 0
    finally:
        server.stop()
    log = (artifacts_dir / "serve-missing-model.log").read_text()
    assert "model iris_classifier:notinthestore is not in the BentoML store" in log
    assert f"BentoML store {server_home}" in log  # the store it looked in
    assert "IRIS_MODEL_TAG chose that model" in log and "unset IRIS_MODEL_TAG" in log


@pytest.mark.slow
def test_fresh_clone_without_remote_rebuilds_then_repairs_tampered_and_corrupted_data(rebuilt_copy):
    copy, env, first = rebuilt_copy  # `make pipeline` ran on a fresh copy without outputs or remote
    make = ["make", "-s", "pipeline", f"VENV={ROOT / '.venv'}"]
    assert_rebuilt(first, copy)  # rebuilt from the bundled dataset
    for name in PREPARED:
        assert md5(copy / name) == lock_md5(copy, "prepare", name)

    # A tampered data file is detected by its hash and rebuilt, never used as is.
    train = copy / "data/prepared/train.csv"
    train.write_text(train.read_text() + "9.9,9.9,9.9,9.9,setosa\n")
    status = run(["dvc", "status"], cwd=copy, env=env).stdout
    assert "modified:" in status and "data/prepared/train.csv" in status
    run(make, cwd=copy, env=env)
    assert md5(train) == lock_md5(copy, "prepare", "data/prepared/train.csv")

    # A corrupted object in the DVC cache, with the workspace copy gone, is not silently checked out.
    raw = copy / "data/raw/iris.csv"
    digest = lock_md5(copy, "load", "data/raw/iris.csv")
    cached = copy / ".dvc/cache/files/md5" / digest[:2] / digest[2:]
    cached.chmod(0o644)
    cached.write_text("sepal_length,sepal_width,petal_length,petal_width,species\n1,1,1,1,setosa\n")
    raw.unlink()
    run(make, cwd=copy, env=env)
    assert md5(raw) == digest
    assert "Data and pipelines are up to date." in run(["dvc", "status"], cwd=copy, env=env).stdout


def limit_file_size() -> None:
    """Disk full, as a stage sees it: writes past 4 kB fail with EFBIG (instead of a signal)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_disk_full_during_a_stage_fails_clearly_and_leaves_the_last_good_outputs(project_copy, pipeline_ready):
    copy, env = project_copy  # a copy: the stage must never touch the project's own outputs
    for name in ["data/raw/iris.csv", *PREPARED]:
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_bytes((ROOT / name).read_bytes())
    before = {name: md5(copy / name) for name in PREPARED}
    project_before = {name: md5(ROOT / name) for name in PREPARED}
    result = subprocess.run(
        [sys.executable, "-m", "stages.prepare"],
        cwd=copy,
        env={**env, "PYTHONPATH": str(copy)},  # the copy's own code and paths
        capture_output=True,
        text=True,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 1
    assert "prepare:" in result.stderr and "File too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert {name: md5(copy / name) for name in PREPARED} == before  # nothing half-written in place
    assert not list((copy / "data/prepared").glob(".*.tmp"))  # and no temporary files left behind
    assert {name: md5(ROOT / name) for name in PREPARED} == project_before  # the project itself untouched

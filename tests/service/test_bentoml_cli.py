"""BentoML's and DVC's own commands in the project root, as a user types them: no Makefile, no exported variables.

The user's shell is modelled as the venv's bin on PATH (`source .venv/bin/activate`) and no BENTOML_HOME:
the venv's .pth hook (iris_classifier/project/environment.py) must find the project's store by itself.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.model.store import ModelCard
from iris_classifier.project.environment import PROJECT_STORE, USER_SETTING
from iris_classifier.project.processes import free_port, stop_process_group, wait_for_200
from tests.conftest import ROOT, VENV_BIN, run

PROJECT_VARIABLES = (
    "BENTOML_HOME",
    "BENTOML_DO_NOT_TRACK",
    "DVC_NO_ANALYTICS",
    "GRADIO_ANALYTICS_ENABLED",
    "HF_HUB_OFFLINE",
    "GRADIO_SSR_MODE",
    "GRADIO_TEMP_DIR",
)


def users_shell(**extra: str) -> dict[str, str]:
    """A shell that ran `source .venv/bin/activate` and nothing else."""
    env = {k: v for k, v in os.environ.items() if k not in PROJECT_VARIABLES}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"
    env["VIRTUAL_ENV"] = str(VENV_BIN.parent)
    return {**env, **extra}


def test_the_venv_itself_sets_the_project_store_and_telemetry_off():
    probe = f"import os, json; print(json.dumps({{k: os.environ.get(k) for k in {PROJECT_VARIABLES!r}}}))"
    seen = json.loads(run(["python", "-c", probe], env=users_shell()).stdout)
    assert seen == {
        "BENTOML_HOME": str(PROJECT_STORE),
        "BENTOML_DO_NOT_TRACK": "True",
        "DVC_NO_ANALYTICS": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_SSR_MODE": "False",
        "GRADIO_TEMP_DIR": str(PROJECT_STORE.parent / ".gradio"),
    }
    # A store the user chose wins over the project's default.
    chosen = json.loads(run(["python", "-c", probe], env=users_shell(BENTOML_HOME="/tmp/elsewhere")).stdout)
    assert chosen["BENTOML_HOME"] == "/tmp/elsewhere"


@pytest.mark.xdist_group("bentoml-store")  # lists the store other tests write to (make test: xdist)
def test_bentoml_models_list_shows_the_pipelines_model(pipeline_ready):
    listed = json.loads(run(["bentoml", "models", "list", "-o", "json"], env=users_shell()).stdout)
    assert ModelCard.read().tag in [entry["tag"] for entry in listed]


def test_dvc_metrics_show_works_without_the_makefile(pipeline_ready):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], env=users_shell()).stdout)
    metrics = next(iter(shown.values()))["data"]["reports/metrics.json"]["data"]
    assert metrics["held_out_accuracy"] >= 0.9


def serve_as_user(env: dict[str, str], log_path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        ["bentoml", "serve", "--port", str(port)],  # no target: bentofile.yaml's service, as docs/serving.md says
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return process, port


def test_plain_bentoml_serve_in_the_project_root_serves_the_api_and_the_ui(pipeline_ready, artifacts_dir):
    process, port = serve_as_user(users_shell(), artifacts_dir / "serve-plain-bentoml.log")
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_for_200(f"{url}/readyz", process, 240) is not None, "bentoml serve never became ready"
        answer = requests.post(f"{url}/classify", json=EXAMPLE_FLOWERS["virginica"], timeout=30).json()
        assert answer["species"] == "virginica" and answer["model_version"] == ModelCard.read().tag
        assert requests.get(f"{url}/ui/", timeout=30).status_code == 200
    finally:
        stop_process_group(process)


def test_an_empty_store_is_refused_naming_the_store_why_and_the_command(pipeline_ready, artifacts_dir, tmp_path):
    empty = tmp_path / "empty-store"
    empty.mkdir()
    log_path = artifacts_dir / "serve-empty-store.log"
    process, _ = serve_as_user(users_shell(BENTOML_HOME=str(empty)), log_path)
    try:
        process.wait(timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("bentoml serve did not refuse to start with an empty store")
    finally:
        stop_process_group(process)
    log = log_path.read_text()
    assert process.returncode != 0
    assert f"BentoML store {empty}" in log
    assert f"chosen by {USER_SETTING}" in log
    assert "make model-import" in log and "unset BENTOML_HOME" in log

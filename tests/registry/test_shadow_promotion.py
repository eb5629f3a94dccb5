"""Shadow serving and the gated promotion end to end, on throwaway copies with real servers (issue #33).

v1.0.0 is in production; labels of a new variety the champion gets wrong make `make retrain` stage v1.1.0 (once,
for the module); each test then takes its own copy of that project: production served with v1.1.0 as its shadow,
fresh labelled flowers, `make shadow-report`, `make promote ... STAGE=production`.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
import requests

from iris_classifier.domain.schema import FEATURES
from iris_classifier.harness.servers import Server
from tests.conftest import ROOT, run
from tests.pipeline.conftest import git_env
from tests.registry.conftest import Copy, own_copy
from tests.registry.test_retrain import classify_and_label, new_variety, retrain

pytestmark = pytest.mark.slow

PROBES = new_variety(12, seed=77)  # flowers whose answers are compared with and without the shadow


def without_request_id(body: bytes) -> object:
    """An answer's JSON with its request id (new per request) taken out; everything else as the client got it."""
    answer = json.loads(body)
    if isinstance(answer, dict):
        answer.pop("request_id", None)
    return answer


def probe_answers(url: str) -> list[object]:
    """What a client gets for the probes: one /classify_batch and a /classify per flower."""
    batch = requests.post(f"{url}/classify_batch", json={"flowers": PROBES}, timeout=30)
    assert batch.status_code == 200, batch.text
    singles = [requests.post(f"{url}/classify", json=flower, timeout=30) for flower in PROBES]
    assert all(answer.status_code == 200 for answer in singles)
    return [without_request_id(batch.content), *(without_request_id(answer.content) for answer in singles)]


def serve(copy: Copy, monitor: Path, log: Path, **env: str) -> Server:
    return Server(
        "service:IrisClassifier",
        cwd=copy.path,
        env={"IRIS_MONITOR_DIR": str(monitor), "BENTOML_HOME": copy.env["BENTOML_HOME"], **env},
        home=copy.env["BENTOML_HOME"],
        log_path=log,
    ).start()


def production_tag(copy: Copy) -> str:
    """The model tag production holds, as `make serve SHADOW=production` would resolve it."""
    return serve_env(copy, "production")["IRIS_SHADOW_MODEL"]


def serve_env(copy: Copy, name: str) -> dict[str, str]:
    """What `make serve SHADOW=name` hands the server (iris_classifier.registry.stage_model serve-env)."""
    result = run(
        [str(ROOT / ".venv" / "bin" / "python"), "-m", "iris_classifier.registry.stage_model", "serve-env", name],
        cwd=copy.path,
        env=copy.env,
    )
    return dict(item.split("=", 1) for item in result.stdout.split())


@pytest.fixture(scope="module")
def staged_project(tmp_path_factory, production_project, artifacts_dir) -> tuple[Path, list[object]]:
    """production_project after a real `make retrain` staged v1.1.0 (150 labels of the new variety), and the
    probes' answers from production without a shadow (served before the retrain)."""
    path = tmp_path_factory.mktemp("shadow") / "project"
    shutil.copytree(production_project, path, symlinks=True)
    copy = Copy(path, {**git_env(), "BENTOML_HOME": str(path / ".bentoml")})
    monitor = path.parent / "monitor-retrain"
    server = serve(copy, monitor, artifacts_dir / "serve-shadow-retrain.log")
    try:
        classify_and_label(server.url, new_variety(150, seed=2), ["virginica"] * 150)
        no_shadow = probe_answers(server.url)
        assert requests.get(f"{server.url}/model", timeout=10).json()["shadow"] is None
    finally:
        server.stop(keep_home=True)
    result = retrain(copy, monitor)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((path / "reports" / "retrain.json").read_text())
    assert report["decision"] == "promoted" and report["version"] == "v1.1.0", report["reasons"]
    return path, no_shadow


@pytest.fixture()
def staged_copy(tmp_path, staged_project) -> Copy:
    yield from own_copy(staged_project[0], tmp_path / "project")


def refused(result, *phrases: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "refused (production needs a passing shadow report)" in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
    return result.stderr


def which_production(copy: Copy) -> str:
    return copy.make("which", "STAGE=production").stdout


def wait_for_shadow_log(monitor: Path, flowers: int, timeout: float = 20.0) -> int:
    """Lines in the shadow log once it holds `flowers` (its writer flushes every second)."""
    deadline = time.monotonic() + timeout
    lines = 0
    while time.monotonic() < deadline:
        lines = sum(len(path.read_bytes().splitlines()) for path in monitor.glob("iris_shadow/data/data.*.log*"))
        if lines >= flowers:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"the shadow log holds {lines} flowers after {timeout} s, not {flowers}")


def shadow_report(copy: Copy, monitor: Path, *args: str):
    result = run(
        ["make", "-s", "shadow-report", *args, f"VENV={ROOT / '.venv'}"],
        cwd=copy.path,
        env={**copy.env, "IRIS_MONITOR_DIR": str(monitor)},
        check=False,
    )
    report = json.loads((copy.path / "reports" / "shadow.json").read_text())
    return result, report


def label_singles(url: str, flowers: list[dict[str, float]], species: str) -> list[str]:
    """/classify per flower, then its label through /feedback; returns what each answer said."""
    said = []
    for flower in flowers:
        answer = requests.post(f"{url}/classify", json=flower, timeout=30)
        assert answer.status_code == 200, answer.text
        said.append(answer.json()["species"])
        label = {"request_id": answer.json()["request_id"], "species": species}
        assert requests.post(f"{url}/feedback", json=label, timeout=30).status_code == 200
    return said


def test_staging_shadows_production_then_a_passing_report_promotes_it(staged_copy, staged_project, artifacts_dir):
    copy, no_shadow = staged_copy, staged_project[1]
    assert "production: iris-classifier@v1.0.0" in which_production(copy)
    stderr = refused(copy.make("promote", "VERSION=1.1.0", "STAGE=production", check=False), "make shadow-report")
    assert "no shadow report" in stderr
    assert "production: iris-classifier@v1.0.0" in which_production(copy)  # unchanged
    # What `make serve SHADOW=staging` hands the server, and the server's own resolution, agree.
    staged = serve_env(copy, "staging")
    assert staged["IRIS_SHADOW"] == "v1.1.0" and staged["IRIS_SHADOW_MODEL"].startswith("iris_classifier:")
    champion = production_tag(copy)
    assert champion != staged["IRIS_SHADOW_MODEL"]

    monitor = copy.path.parent / "monitor-shadow"
    server = serve(copy, monitor, artifacts_dir / "serve-shadow.log", IRIS_MODEL_TAG=champion, IRIS_SHADOW="staging")
    try:
        shadow = requests.get(f"{server.url}/model", timeout=10).json()["shadow"]
        assert shadow["active"] is True and shadow["version"] == "v1.1.0", shadow
        assert shadow["tag"] == staged["IRIS_SHADOW_MODEL"] and shadow["requested"] == "staging"
        # Clients get exactly what production without a shadow answered (the request id aside).
        assert probe_answers(server.url) == no_shadow
        shadowed = len(PROBES) * 2

        said = classify_and_label(server.url, new_variety(10, seed=11), ["virginica"] * 10)
        shadowed += 10
        wait_for_shadow_log(monitor, shadowed)
        result, report = shadow_report(copy, monitor)
        assert result.returncode != 0 and report["verdict"] == "insufficient", report["reasons"]
        assert report["labelled"] == 10 and report["shadowed"] == shadowed
        assert "shadow.min_labelled = 50" in report["reasons"][0]
        stderr = refused(copy.make("promote", "VERSION=1.1.0", "STAGE=production", check=False))
        assert "says 'insufficient'" in stderr

        said += classify_and_label(server.url, new_variety(120, seed=12), ["virginica"] * 120)
        said += label_singles(server.url, new_variety(20, seed=13), "virginica")
        rows = [[flower[name] for name in FEATURES] for flower in new_variety(5, seed=14)]
        v2 = requests.post(
            f"{server.url}/v2/models/iris_classifier/infer",
            json={"inputs": [{"name": "measurements_cm", "shape": [5, 4], "datatype": "FP64", "data": rows}]},
            timeout=30,
        )
        assert v2.status_code == 200, v2.text
        shadowed += 120 + 20 + 5
        wait_for_shadow_log(monitor, shadowed)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    # Every classified flower was shadowed once; /feedback and /feedback_batch were not mirrored.
    assert 'iris_shadow_flowers_total{agreement="disagree"}' in metrics
    counted = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("iris_shadow_flowers_total{")
    )
    assert counted == shadowed
    result, report = shadow_report(copy, monitor)
    (artifacts_dir / "shadow-pass.json").write_text(json.dumps(report, indent=2))
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["verdict"] == "pass", report["reasons"]
    assert report["challenger_version"] == "v1.1.0" and report["champion_version"] == champion
    assert report["shadowed"] == shadowed and report["labelled"] == 150
    # The champion's accuracy is what its answers to the clients were worth.
    assert report["champion_accuracy"] == round(said.count("virginica") / 150, 6) <= 0.1
    assert report["challenger_accuracy"] >= 0.9
    assert report["per_species"]["virginica"]["labelled"] == 150
    assert report["mcnemar"]["p"] < 0.05 and report["mcnemar"]["challenger_only_right"] >= 120
    assert 0 < report["shadow_latency_ms"]["p50"] <= report["shadow_latency_ms"]["p99"]
    page = (copy.path / "reports" / "shadow.html").read_text()
    assert "v1.1.0" in page and "Where they disagree" in page and ">pass<" in page

    promoted = copy.make("promote", "VERSION=1.1.0", "STAGE=production")
    assert "assigns production to iris-classifier@v1.1.0" in promoted.stdout
    production = which_production(copy)
    assert "production: iris-classifier@v1.1.0" in production
    digest = hashlib.sha256((copy.path / "reports" / "shadow.json").read_bytes()).hexdigest()
    tag = production.split("(assigned by ", 1)[1].split(")", 1)[0]
    message = copy.git("tag", "--list", "--format=%(contents)", tag)
    assert f"sha256:{digest}" in message and "verdict: pass" in message and "labelled: 150" in message
    assert f"sha256:{digest}" in copy.make("registry").stdout  # make registry shows why


def test_a_challenger_worse_on_live_traffic_fails_and_is_not_promoted(staged_copy, artifacts_dir):
    copy = staged_copy
    monitor = copy.path.parent / "monitor-worse"
    server = serve(
        copy,
        monitor,
        artifacts_dir / "serve-shadow-worse.log",
        IRIS_MODEL_TAG=production_tag(copy),
        IRIS_SHADOW="1.1.0",
    )
    try:
        # Live labels now say these flowers are versicolor, as the champion does; the challenger learned otherwise.
        said = classify_and_label(server.url, new_variety(80, seed=21), ["versicolor"] * 80)
        wait_for_shadow_log(monitor, 80)
    finally:
        server.stop()
    result, report = shadow_report(copy, monitor, "VERSION=1.1.0")
    assert result.returncode != 0
    assert report["verdict"] == "fail", report["reasons"]
    assert report["champion_accuracy"] == round(said.count("versicolor") / 80, 6)
    assert report["challenger_accuracy"] < report["champion_accuracy"]
    versicolor = next(reason for reason in report["reasons"] if reason.startswith("versicolor: challenger recall"))
    assert " < champion " in versicolor, report["reasons"]  # the species rule failed, and names the species
    stderr = refused(copy.make("promote", "VERSION=1.1.0", "STAGE=production", check=False), "says 'fail'")
    assert "versicolor" in stderr
    assert "production: iris-classifier@v1.0.0" in which_production(copy)


def test_force_promotes_without_evidence_and_records_the_reason(staged_copy):
    copy = staged_copy
    refused(copy.make("promote", "VERSION=1.1.0", "STAGE=production", check=False), "no shadow report")
    unexplained = copy.make("promote", "VERSION=1.1.0", "STAGE=production", "FORCE=1", check=False)
    assert unexplained.returncode != 0 and "refused (a forced promotion says why)" in unexplained.stderr
    assert "production: iris-classifier@v1.0.0" in which_production(copy)
    reason = "hotfix: v1.0.0 misclassifies the new variety, labels confirmed by the lab"
    copy.make("promote", "VERSION=1.1.0", "STAGE=production", "FORCE=1", f"REASON={reason}")
    production = which_production(copy)
    assert "production: iris-classifier@v1.1.0" in production
    assert f"FORCED without passing shadow evidence: {reason}" in production
    assert f"FORCED without passing shadow evidence: {reason}" in copy.make("registry").stdout
    # Back to v1.0.0: a rollback to a version production served before needs no new evidence.
    rolled = copy.make("promote", "VERSION=1.0.0", "STAGE=production")
    assert "a rollback to a version production served before (iris-classifier#production#" in rolled.stdout
    assert "production: iris-classifier@v1.0.0" in which_production(copy)


def test_a_production_bento_built_with_the_staged_shadow_carries_it_into_a_store_without_a_registry(
    staged_copy, tmp_path, artifacts_dir
):
    """What an image is: the production commit's Bento built with SHADOW=staging, exported, imported into an empty
    BentoML home and served outside any git checkout, with the environment the production overlay renders."""
    copy = staged_copy
    copy.make("k8s-render", "ENV=production", "SHADOW=staging")
    rendered = (copy.path / "build" / "k8s" / "production.yaml").read_text()
    staged = serve_env(copy, "staging")
    assert f"name: IRIS_SHADOW\n          value: {staged['IRIS_SHADOW']}" in rendered
    assert f"name: IRIS_SHADOW_MODEL\n          value: {staged['IRIS_SHADOW_MODEL']}" in rendered

    copy.git("checkout", "-q", "iris-classifier@v1.0.0")  # the production commit, its model from the DVC cache
    run([str(ROOT / ".venv" / "bin" / "dvc"), "checkout", "--quiet"], cwd=copy.path, env=copy.env)
    python = str(ROOT / ".venv" / "bin" / "python")
    built = run(
        [python, "-m", "iris_classifier.registry.bento", "build", "--shadow", "staging"], cwd=copy.path, env=copy.env
    )
    bento = re.search(r"bento: built (\S+)", built.stdout).group(1)
    assert bento.endswith("-shadow-v1.1.0"), built.stdout
    exported = tmp_path / "production-with-shadow.bento"
    run([str(ROOT / ".venv" / "bin" / "bentoml"), "export", bento, str(exported)], cwd=copy.path, env=copy.env)
    home = tmp_path / "empty-home"  # an image's store: the Bento and the models it packed, no git, no registry
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(
        [str(ROOT / ".venv" / "bin" / "bentoml"), "import", str(exported)],
        cwd=elsewhere,
        env={"BENTOML_HOME": str(home)},
    )
    monitor = tmp_path / "monitor"
    server = Server(
        bento,
        cwd=elsewhere,
        env={"BENTOML_HOME": str(home), "IRIS_MONITOR_DIR": str(monitor), **staged},
        home=str(home),
        log_path=artifacts_dir / "serve-shadow-bento.log",
    ).start()
    try:
        card = requests.get(f"{server.url}/model", timeout=10).json()
        said = classify_and_label(server.url, new_variety(30, seed=31), ["virginica"] * 30)
        wait_for_shadow_log(monitor, 30)
    finally:
        server.stop(keep_home=True)
    assert card["tag"] == production_tag(copy) and card["registry_version"] == "v1.0.0"
    assert card["shadow"]["active"] is True and card["shadow"]["version"] == "v1.1.0", card["shadow"]
    assert said.count("versicolor") >= 27  # the clients get production's answers
    lines = [
        json.loads(line) for path in monitor.glob("iris_shadow/data/*.log") for line in path.read_text().splitlines()
    ]
    assert {line["shadow_version"] for line in lines} == {"v1.1.0"}
    assert sum(line["shadow_species"] == "virginica" for line in lines) >= 27

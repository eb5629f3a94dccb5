"""The lean image (issue #12), running (make run-image): small, no compiler, nothing compiled at start,
the ONNX fast path serving without scikit-learn, and the scikit-learn fallback still working inside it."""

from __future__ import annotations

import json

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, SPECIES
from iris_classifier.model.store import git_commit
from ops.smoke import check as smoke_check
from tests.container.conftest import CONTAINER, URL, docker

pytestmark = pytest.mark.container

IMAGE_TARGET_BYTES = 900_000_000  # issue #12, as `docker image inspect` reports it
# In the container, the Bento's models/ is the model store when BENTOML_HOME is the Bento.
IN_BENTO = ("--env", "BENTOML_HOME=/home/bentoml/bento", "--workdir", "/home/bentoml/bento/src")

FALLBACK = """
import json
import bentoml
from iris_classifier.model.pipeline import Predictor
from iris_classifier.domain.schema import EXAMPLE_FLOWERS
model = bentoml.models.list()[0]
fallback = Predictor.from_dir(model.path, prefer="sklearn")
rows = [list(flower.values()) for flower in EXAMPLE_FLOWERS.values()]
print(json.dumps({"backend": fallback.backend, "probabilities": fallback.predict_proba(rows).tolist()}))
"""

WORKER_LIBRARIES = """
import json, os
for pid in filter(str.isdigit, os.listdir("/proc")):
    if b"_bentoml_impl.worker.service" in open(f"/proc/{pid}/cmdline", "rb").read():
        paths = {line.split()[-1] for line in open(f"/proc/{pid}/maps") if "/site-packages/" in line}
        print(json.dumps(sorted({path.split("/site-packages/")[1].split("/")[0] for path in paths})))
        break
"""


def test_image_is_within_the_size_target_and_has_no_compiler(container, image):
    assert image["Size"] <= IMAGE_TARGET_BYTES, f"{image['Size'] / 1e6:.0f} MB"
    assert docker("exec", CONTAINER, "sh", "-c", "command -v gcc cc g++ make || true") == ""


def test_everything_the_smoke_test_checks(container):
    # The UI is built in the background after readiness; a visitor that early waits for it.
    assert requests.get(f"{URL}/ui/", timeout=120).status_code == 200
    passed = smoke_check(URL, git_commit())
    assert "/ui/ loads" in passed and "/classify virginica" in passed


def test_batch_and_metrics(container):
    answers = requests.post(f"{URL}/classify_batch", json={"flowers": list(EXAMPLE_FLOWERS.values())}, timeout=10)
    assert [answer["species"] for answer in answers.json()] == list(EXAMPLE_FLOWERS)
    metrics = requests.get(f"{URL}/metrics", timeout=10).text
    assert 'iris_predictions_total{species="virginica"}' in metrics


def test_nothing_was_compiled_in_the_running_container(container):
    requests.get(f"{URL}/ui/", timeout=60)  # the UI's modules (Gradio, the demo) are imported by now too
    written = [line for line in docker("diff", CONTAINER).splitlines() if line.endswith(".pyc")]
    assert written == []  # every module the server imported was precompiled in the image


def test_the_fast_path_serves_without_scikit_learn_loaded(container):
    card = requests.get(f"{URL}/model", timeout=10).json()
    if card["backend"] != "onnx":
        pytest.skip(f"the served model has no ONNX fast path (backend {card['backend']}): the fallback serves")
    packages = json.loads(docker("exec", CONTAINER, "python", "-c", WORKER_LIBRARIES))
    assert "onnxruntime" in packages
    assert not {"sklearn", "scipy", "scipy.libs"} & set(packages)


def test_the_scikit_learn_fallback_works_in_the_image_and_agrees_with_the_service(container):
    fallback = json.loads(docker("exec", *IN_BENTO, CONTAINER, "python", "-c", FALLBACK).splitlines()[-1])
    assert fallback["backend"] == "sklearn"
    for (species, flower), probabilities in zip(EXAMPLE_FLOWERS.items(), fallback["probabilities"], strict=True):
        served = requests.post(f"{URL}/classify", json=flower, timeout=10).json()
        assert served["species"] == species == SPECIES[probabilities.index(max(probabilities))]
        assert served["probabilities"] == pytest.approx(dict(zip(SPECIES, probabilities, strict=True)), abs=0.02)

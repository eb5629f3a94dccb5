"""A shadow that is missing, cannot be loaded, or raises never costs a client anything: real servers from the source
tree, on a BentoML home of their own holding the pipeline's model and two broken ones made from it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from iris_classifier.harness.servers import Server
from tests.conftest import ROOT

FLOWER = {"sepal_length": 6.3, "sepal_width": 3.3, "petal_length": 6.0, "petal_width": 2.5}

# Run in a process on the private home: a model that loads but whose scaler has five features (every call raises),
# and one whose ONNX file is not ONNX (loading raises); prints their tags.
BROKEN_MODELS = """
import json
from pathlib import Path
from iris_classifier.model.store import ModelCard, model_tag_to_serve, save_model, stored_model
entry = stored_model(model_tag_to_serve())
card = ModelCard.from_store_entry(entry).as_dict()
del card["tag"]
files = {path.name: path.read_bytes() for path in Path(entry.path).iterdir() if path.name != "model.yaml"}
scaler = json.loads(files["scaler.json"])
five = {"mean": scaler["mean"] + [1.0], "scale": scaler["scale"] + [1.0]}
raising = save_model(model_files={**files, "scaler.json": json.dumps(five).encode()}, card_without_tag=card)
unloadable = save_model(model_files={**files, "model.onnx": b"not an onnx model"}, card_without_tag=card)
print(json.dumps({"raising": raising.tag, "unloadable": unloadable.tag}))
"""


@pytest.fixture(scope="module")
def shadow_home(pipeline_ready, tmp_path_factory) -> tuple[str, dict[str, str]]:
    """A BentoML home with a copy of the project's models, plus the two broken ones."""
    home = tmp_path_factory.mktemp("shadow-home")
    shared = Path(os.environ.get("BENTOML_HOME", ROOT / ".bentoml"))
    shutil.copytree(shared / "models", home / "models")
    made = subprocess.run(
        [sys.executable, "-c", BROKEN_MODELS],
        cwd=ROOT, env={**os.environ, "BENTOML_HOME": str(home)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return str(home), json.loads(made.stdout)


def serve_with_shadow(home: str, shadow: str, log: Path, monitor: Path) -> Server:
    return Server(
        "service:IrisClassifier",
        env={"BENTOML_HOME": home, "IRIS_SHADOW": shadow, "IRIS_MONITOR_DIR": str(monitor)},
        home=home,
        log_path=log,
    ).start()


def metric(text: str, name: str) -> float:
    return float(next(line.rsplit(" ", 1)[1] for line in text.splitlines() if line.startswith(name + " ")))


def classify_both(url: str) -> tuple[requests.Response, requests.Response]:
    one = requests.post(f"{url}/classify", json=FLOWER, timeout=30)
    batch = requests.post(f"{url}/classify_batch", json={"flowers": [FLOWER] * 3}, timeout=30)
    return one, batch


@pytest.mark.parametrize(
    ("shadow", "why"),
    [
        ("v99.0.0", "iris-classifier@v99.0.0 is not a registered version"),
        ("unloadable", "InvalidProtobuf"),
    ],
)
def test_a_shadow_that_cannot_be_loaded_leaves_the_service_serving(shadow_home, shadow, why, tmp_path, artifacts_dir):
    home, models = shadow_home
    requested = models.get(shadow, shadow)
    server = serve_with_shadow(home, requested, artifacts_dir / f"serve-shadow-{shadow}.log", tmp_path)
    try:
        one, batch = classify_both(server.url)
        card = requests.get(f"{server.url}/model", timeout=10).json()
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop(keep_home=True)
    assert one.status_code == 200 and one.json()["species"] == "virginica"
    assert batch.status_code == 200 and [row["species"] for row in batch.json()] == ["virginica"] * 3
    assert card["shadow"]["requested"] == requested and card["shadow"]["active"] is False
    assert why in card["shadow"]["error"], card["shadow"]
    assert metric(metrics, 'iris_shadow_errors_total{stage="load"}') == 1.0
    assert metric(metrics, "iris_shadow_active") == 0.0
    assert not (tmp_path / "iris_shadow").exists()  # no shadow, no shadow log
    assert f"shadow: off: IRIS_SHADOW={requested} cannot be loaded" in server.log_path.read_text()


def test_a_shadow_that_raises_on_every_call_never_reaches_a_client(shadow_home, tmp_path, artifacts_dir):
    home, models = shadow_home
    server = serve_with_shadow(home, models["raising"], artifacts_dir / "serve-shadow-raising.log", tmp_path)
    try:
        answers = [classify_both(server.url) for _ in range(3)]
        deadline = time.monotonic() + 10
        while (card := requests.get(f"{server.url}/model", timeout=10).json())["shadow"]["errors"] == 0:
            assert time.monotonic() < deadline, card
            time.sleep(0.1)
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        after = classify_both(server.url)
    finally:
        server.stop(keep_home=True)
    for one, batch in [*answers, after]:
        assert one.status_code == 200 and one.json()["species"] == "virginica"
        assert batch.status_code == 200 and [row["species"] for row in batch.json()] == ["virginica"] * 3
    shadow = card["shadow"]
    assert shadow["active"] is True and shadow["shadowed"] == 0 and shadow["errors"] >= 1
    # the broken scaler's shape, as numpy meets it on many rows or the plain-float path on one
    assert re.match(r"ValueError: (operands could not be broadcast|zip\(\) argument 2 is longer)", shadow["last_error"])
    assert metric(metrics, 'iris_shadow_errors_total{stage="predict"}') == shadow["errors"]
    assert "a call raised (ValueError" in server.log_path.read_text()

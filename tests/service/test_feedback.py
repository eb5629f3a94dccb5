"""POST /feedback over a real `bentoml serve`: ids, durability across a restart, refusals, token and rate limit."""

from __future__ import annotations

import signal

import orjson
import pytest
import requests

from iris_classifier.data.production_log import data_files, label_files, read_label_lines
from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.harness.servers import Server

TOKEN = "feedback-test-token-7f3a"  # a throwaway value for this test server only  # pragma: allowlist secret


@pytest.fixture()
def monitor(tmp_path):
    return tmp_path / "monitor"


def start(monitor, artifacts_dir, name: str, **env: str) -> Server:
    return Server(
        "service:IrisClassifier",
        env={"IRIS_MONITOR_DIR": str(monitor), **env},
        log_path=artifacts_dir / f"serve-feedback-{name}.log",
    ).start()


def classify(url: str, flower: dict) -> dict:
    answer = requests.post(f"{url}/classify", json=flower, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["request_id"] == answer.headers["X-Request-ID"]
    return body


def logged_request_ids(monitor) -> list[str]:
    return [orjson.loads(line)["request_id"] for path in data_files(monitor) for line in path.read_bytes().splitlines()]


def test_labels_survive_a_restart_and_sigterm_flushes_the_log(monitor, artifacts_dir, pipeline_ready):
    server = start(monitor, artifacts_dir, "first")
    try:
        answer = classify(server.url, EXAMPLE_FLOWERS["versicolor"])
        label = {"request_id": answer["request_id"], "species": "virginica"}
        first = requests.post(f"{server.url}/feedback", json=label, timeout=10)
        assert first.status_code == 200, first.text
        assert first.json() == {**label, "index": 0, "recorded": True, "predicted": "versicolor", "correct": False}
        batch = requests.post(
            f"{server.url}/classify_batch",
            json={"flowers": [EXAMPLE_FLOWERS["setosa"], EXAMPLE_FLOWERS["virginica"]]},
            timeout=10,
        )
        batch_id = batch.headers["X-Request-ID"]
        labels = [{"request_id": batch_id, "index": 1, "species": "virginica"}]
        many = requests.post(f"{server.url}/feedback_batch", json={"labels": labels}, timeout=10)
        assert many.json()["labels"][0] | {"recorded": True} == {**labels[0], "recorded": True,
                                                                 "predicted": "virginica", "correct": True}  # fmt: skip
        # A graceful stop right away, before the log's writer thread wakes (every second): nothing is lost.
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=30)
    finally:
        server.stop()
    assert logged_request_ids(monitor).count(answer["request_id"]) == 1
    assert logged_request_ids(monitor).count(batch_id) == 2
    on_disk = [(r["request_id"], r["index"], r["species"]) for f in label_files(monitor) for r in read_label_lines(f)]
    assert on_disk == [(answer["request_id"], 0, "virginica"), (batch_id, 1, "virginica")]

    again = start(monitor, artifacts_dir, "restarted")
    try:
        same = requests.post(f"{again.url}/feedback", json=label, timeout=10)
        assert same.status_code == 200 and same.json()["recorded"] is False  # idempotent across the restart
        assert same.json()["predicted"] is None  # this process never answered that request
        other = requests.post(f"{again.url}/feedback", json={**label, "species": "setosa"}, timeout=10)
        assert other.status_code == 409
        assert "already labelled 'virginica', not 'setosa'" in other.json()["error"]
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"request_id": "abc", "species": "tulip"}, "species", 400),
        ({"request_id": "not an id!", "species": "setosa"}, "request_id", 400),
        ({"species": "setosa"}, "request_id", 400),
        ({"request_id": "abc", "species": "setosa", "index": 10_000}, "index", 400),
        ({"request_id": "abc", "species": "setosa", "extra": 1}, "extra", 400),
    ],
)
def test_bad_labels_get_4xx_naming_the_field(server, body, field, status):
    answer = requests.post(f"{server.url}/feedback", json=body, timeout=10)
    assert answer.status_code == status, answer.text
    assert field in {str(part) for error in answer.json()["detail"] for part in error["loc"]}


def test_an_oversized_feedback_body_is_refused_before_it_is_read(server):
    labels = [{"request_id": f"r{i:06d}", "species": "setosa", "index": 0} for i in range(60_000)]
    answer = requests.post(f"{server.url}/feedback_batch", json={"labels": labels}, timeout=30)
    assert answer.status_code == 413
    assert "larger than the limit" in answer.json()["error"]
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200


def test_the_token_guards_writes_and_never_reaches_the_log(monitor, artifacts_dir, pipeline_ready):
    server = start(monitor, artifacts_dir, "token", IRIS_FEEDBACK_TOKEN=TOKEN, IRIS_FEEDBACK_RATE="1")
    try:
        label = {"request_id": "r1", "species": "setosa"}
        refused = requests.post(f"{server.url}/feedback", json=label, timeout=10)
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = requests.post(f"{server.url}/feedback", json=label, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.post(f"{server.url}/feedback", json=label, headers=auth, timeout=10).status_code == 200
        # rate 1 label/s, burst 10: the 9 tokens left pass, then one more waits
        statuses = [
            requests.post(f"{server.url}/feedback", json={**label, "request_id": f"s{i}"}, headers=auth).status_code
            for i in range(11)
        ]
        assert statuses[:9] == [200] * 9 and statuses[-1] == 429, statuses
        limited = requests.post(f"{server.url}/feedback", json={**label, "request_id": "s99"}, headers=auth)
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert "labels per second" in limited.json()["error"]
        metrics = requests.get(f"{server.url}/metrics", timeout=10).text
        assert 'iris_feedback_rejected_total{reason="unauthorized"} 2.0' in metrics
        assert 'iris_feedback_rejected_total{reason="rate_limited"}' in metrics
    finally:
        server.stop()
    assert TOKEN not in (artifacts_dir / "serve-feedback-token.log").read_text()
    assert all(TOKEN not in path.read_text() for path in monitor.rglob("*") if path.is_file())

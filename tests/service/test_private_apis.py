"""Tripwires: each reach into a library's internals (iris_classifier/serving/private_apis.py) is in effect on a
request a real server answers. When an upgrade stops one applying, its test fails naming the reach and the
library version it was written for (the message from PrivateAPI.tripped)."""

from __future__ import annotations

import socket

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.harness.servers import Server
from iris_classifier.project.paths import ROOT
from iris_classifier.serving.private_apis import (
    BATCH_FAST_PATH,
    BOUNDED_REQUEST_HEAD,
    PRIVATE_APIS,
    REQUEST_ID,
    RESPONSE_START_TIMEOUT,
)

FLOWER = EXAMPLE_FLOWERS["versicolor"]
MAX_CONCURRENCY = 2


@pytest.fixture(scope="module")
def tight_server(pipeline_ready, artifacts_dir):
    """The service with room for two requests in flight: a third meets BentoML's own max_concurrency refusal."""
    env = {"IRIS_MAX_CONCURRENCY": str(MAX_CONCURRENCY)}
    process = Server("service:IrisClassifier", env=env, log_path=artifacts_dir / "serve-tripwires.log").start()
    yield process
    process.stop()


def stalled_post(port: int) -> socket.socket:
    """A request in flight: its head and a first byte of its body sent, the rest never."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100\r\n\r\n{")  # fmt: skip
    return sock


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_every_private_api_is_named_with_its_version_in_the_docs():
    page = (ROOT / "docs" / "private-apis.md").read_text()
    for api in PRIVATE_APIS:
        assert f"`{api.name}`" in page and f"{api.library} {api.written_for}" in page, api.name


def test_bounded_request_head_a_head_of_a_mebibyte_is_refused_with_431(tight_server):
    # Beyond the 32 KiB limit by more than the one read (~256 KiB) the bounded protocol may take in before it counts.
    response = requests.get(f"{tight_server.url}/readyz", headers={"X-Padding": "a" * 2**20}, timeout=30)
    assert response.status_code == 431, BOUNDED_REQUEST_HEAD.tripped(
        f"a 1 MiB request head got {response.status_code}, not 431 (uvicorn read it whole)"
    )
    assert "headers are larger than the limit" in response.json()["error"]


def test_response_start_timeout_is_the_middleware_bentoml_runs(tight_server):
    """ResponseStartTimeout stands in for BentoML's TimeoutMiddleware: what shows on the wire is the Retry-After
    it adds to BentoML's max_concurrency refusal (BentoML's own sends none)."""
    held = [stalled_post(tight_server.port) for _ in range(MAX_CONCURRENCY)]
    try:
        refused = requests.post(f"{tight_server.url}/classify", json=FLOWER, timeout=30)
    finally:
        for sock in held:
            sock.close()
    assert refused.status_code == 429, f"{MAX_CONCURRENCY} requests in flight, yet {refused.status_code}"
    assert "Retry-After" in refused.headers, RESPONSE_START_TIMEOUT.tripped(
        "BentoML's max_concurrency 429 came without Retry-After: BentoML builds its own timeout middleware"
    )
    assert requests.post(f"{tight_server.url}/classify", json=FLOWER, timeout=30).status_code == 200


def test_request_id_answers_carry_bentoml_s_own_request_id(tight_server):
    for _ in range(3):
        response = requests.post(f"{tight_server.url}/classify", json=FLOWER, timeout=30)
        bentoml_id = str(int(response.headers["X-BentoML-Request-ID"], 16))
        assert response.json()["request_id"] == bentoml_id, REQUEST_ID.tripped(
            f"the answer's request id {response.json()['request_id']} is not BentoML's {bentoml_id}"
        )


def test_batch_fast_path_a_plain_batch_is_parsed_without_pydantic(tight_server):
    url = tight_server.url
    before = metric(url, 'iris_batches_parsed_total{path="fast"}')
    answer = requests.post(f"{url}/classify_batch", json={"flowers": [FLOWER] * 3}, timeout=30)
    assert answer.status_code == 200 and [a["species"] for a in answer.json()] == ["versicolor"] * 3
    assert metric(url, 'iris_batches_parsed_total{path="fast"}') == before + 1, BATCH_FAST_PATH.tripped(
        "a plain batch did not take the fast path: BentoML no longer validates a body with model_validate_json"
    )

"""Over a real server with a small admission budget (25,000 flowers, one batch slot) and a 2 s head timeout:
shedding answers 503 + Retry-After and nothing else changes (health, one-flower requests, the charge released
when clients go away); hundreds of idle and slow-loris connections do not stop it answering others.

No wall-clock bounds on answers (the machine is shared): "answered" means within a generous client timeout.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, MODEL_NAME
from iris_classifier.harness.servers import Server

BUDGET = 25_000
HEAD_TIMEOUT = 2
FLOWER = EXAMPLE_FLOWERS["setosa"]
ONE_ROW = {"inputs": [{"name": "measurements_cm", "shape": [1, 4], "datatype": "FP64", "data": list(FLOWER.values())}]}


@pytest.fixture(scope="module")
def small_server(pipeline_ready, artifacts_dir):
    env = {"IRIS_ADMISSION_FLOWERS": str(BUDGET), "IRIS_BATCH_SLOTS": "1", "IRIS_HEAD_TIMEOUT_S": str(HEAD_TIMEOUT)}
    process = Server("service:IrisClassifier", env=env, log_path=artifacts_dir / "serve-small-budget.log").start()
    yield process
    process.stop()


def batch_body(flowers: int) -> bytes:
    return json.dumps({"flowers": [FLOWER] * flowers}, separators=(",", ":")).encode()


def stalled_batch(port: int, body: bytes) -> socket.socket:
    """A /classify_batch request whose headers and first bytes are sent, the rest never: admitted, and in flight."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        f"POST /classify_batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body[:1000])
    return sock


def metric(url: str, name: str) -> float:
    text = requests.get(f"{url}/metrics", timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def serves_one_flower(url: str) -> bool:
    answer = requests.post(f"{url}/classify", json=FLOWER, timeout=30)
    return answer.status_code == 200 and answer.json()["species"] == "setosa"


def test_shedding_refuses_batches_at_once_and_health_and_small_requests_stay_up(small_server):
    url, body = small_server.url, batch_body(10_000)
    shed_before = metric(url, 'iris_requests_shed_total{reason="flowers_in_flight"}')
    held = [stalled_batch(small_server.port, body) for _ in range(2)]  # 20,000 of the 23,000 batches may use
    try:
        deadline = time.monotonic() + 30
        while metric(url, "iris_admission_flowers_in_flight") < 20_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert metric(url, "iris_admission_flowers_in_flight") == 20_000
        assert metric(url, "iris_admission_batches_waiting") == 1  # one slot: the second waits, its body unread
        refused = requests.post(
            f"{url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert refused.status_code == 503, refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 30
        assert refused.json()["reason"] == "flowers_in_flight" and "not processed" in refused.json()["error"]
        v2_refused = requests.post(
            f"{url}/v2/models/{MODEL_NAME}/infer",
            json={"inputs": [{**ONE_ROW["inputs"][0], "shape": [5000, 4], "data": list(FLOWER.values()) * 5000}]},
            timeout=30,
        )
        assert v2_refused.status_code == 503 and int(v2_refused.headers["Retry-After"]) >= 1, v2_refused.text
        assert metric(url, 'iris_requests_shed_total{reason="flowers_in_flight"}') == shed_before + 2
        # refused before its body was sent: the client sends it all the same, then idles; the connection is closed
        # once idle for the head timeout (uvicorn's keep-alive timer was cancelled by the body's late bytes)
        with socket.create_connection(("127.0.0.1", small_server.port), timeout=30) as late:
            late.sendall(
                b"POST /classify_batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            answer = b""
            while not answer.endswith(b"}"):  # the whole 503 (its head and its JSON body may come apart)
                answer += late.recv(65536)
            assert answer.startswith(b"HTTP/1.1 503")
            late.sendall(body)
            time.sleep(HEAD_TIMEOUT + 1)
            assert late.recv(65536) == b""
        # Kubernetes practice: readiness does not fail for load (the other pods would get it all, and shed too)
        for probe in ("/livez", "/readyz", "/v2/health/live", "/v2/health/ready"):
            assert requests.get(f"{url}{probe}", timeout=30).status_code == 200, probe
        assert serves_one_flower(url)
        one_row = requests.post(f"{url}/v2/models/{MODEL_NAME}/infer", json=ONE_ROW, timeout=30)
        assert one_row.status_code == 200, one_row.text
        assert metric(url, "iris_admission_budget_flowers") == BUDGET
    finally:
        for sock in held:
            sock.close()
    # the clients went away: their charge is released, and batches are admitted again
    deadline = time.monotonic() + 60
    while metric(url, "iris_admission_flowers_in_flight") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert metric(url, "iris_admission_flowers_in_flight") == 0
    answer = requests.post(f"{url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 200 and len(answer.json()) == 10_000


def test_hundreds_of_idle_and_slow_loris_connections_do_not_stop_the_service(small_server):
    port = small_server.port
    idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(300)]
    slow = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(100)]
    try:
        for sock in slow:  # a head begun, never finished
            sock.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: appl")
        assert serves_one_flower(small_server.url)
        time.sleep(HEAD_TIMEOUT + 1)
        for sock in slow:  # the head timeout answered 408 and closed
            answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
            assert b'"error"' in answer
        for sock in idle[:20]:  # nothing was ever sent: closed
            assert sock.recv(4096) == b""
        assert serves_one_flower(small_server.url)
    finally:
        for sock in idle + slow:
            with contextlib.suppress(OSError):
                sock.close()


def test_a_keep_alive_connection_is_not_cut_by_the_head_timeout_between_requests(small_server):
    """The timer covers a head in progress; once answered, uvicorn's keep-alive timeout (5 s) takes over."""
    session = requests.Session()
    for _ in range(2):
        assert session.post(f"{small_server.url}/classify", json=FLOWER, timeout=30).status_code == 200
        time.sleep(HEAD_TIMEOUT + 0.5)

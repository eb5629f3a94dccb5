"""Limits: oversized bodies are refused before they are read; a stalled client does not block others.

No wall-clock bounds (the machine is shared): "not blocked" means answered within a generous client timeout,
which a blocked server would never meet.
"""

from __future__ import annotations

import contextlib
import json
import socket

import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, MAX_BATCH_FLOWERS
from iris_classifier.serving.middleware import MAX_BODY_BYTES

FLOWER = EXAMPLE_FLOWERS["setosa"]


def still_serving(url: str) -> bool:
    return requests.post(f"{url}/classify", json=FLOWER, timeout=30).json()["species"] == "setosa"


def test_a_5_mb_body_is_refused(server):
    body = json.dumps({"flowers": [FLOWER] * 60_000}).encode()
    assert len(body) > 5_000_000
    response = requests.post(
        f"{server.url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 413
    assert f"limit of {MAX_BODY_BYTES} bytes" in response.text
    assert still_serving(server.url)


def test_a_declared_oversized_body_is_refused_before_any_of_it_is_sent(server):
    """Only the headers are sent: a server that waited for the 5 MB body would never answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /classify_batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000000\r\n\r\n"
        )
        answer = b""
        while b"limit_bytes" not in answer and (chunk := sock.recv(4096)):  # headers and body may come apart
            answer += chunk
    assert answer.split(b"\r\n", 1)[0].split()[1] == b"413", answer[:200]
    assert f"limit of {MAX_BODY_BYTES} bytes".encode() in answer
    assert still_serving(server.url)


def test_a_chunked_body_over_the_limit_is_refused(server):
    def chunks():
        for _ in range(40):
            yield b" " * 100_000  # 4 MB without a Content-Length

    response = requests.post(
        f"{server.url}/classify", data=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 413
    assert "limit" in response.text
    assert still_serving(server.url)


def test_a_small_content_length_does_not_smuggle_a_large_chunked_body(server):
    """Transfer-Encoding wins over Content-Length, so a declared 100 bytes must not skip the count."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /classify HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        "Content-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunk = b"%x\r\n%s\r\n" % (100_000, b" " * 100_000)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        with contextlib.suppress(OSError):  # refused before the whole body was sent
            sock.sendall(head + chunk * 40 + b"0\r\n\r\n")  # 4 MB
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    status = int(status_line.split()[1])
    # Refused either way: httptools (uvicorn's parser where installed) rejects both framings at once with
    # 400; h11 reads the chunked body, which the request guard counts and stops at the limit with 413.
    assert status in (400, 413), status_line
    assert still_serving(server.url)


def test_a_200000_flower_batch_is_refused(server):
    body = json.dumps({"flowers": [FLOWER] * 200_000}, separators=(",", ":")).encode()
    response = requests.post(
        f"{server.url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=60
    )
    assert 400 <= response.status_code < 500
    assert still_serving(server.url)


def test_the_batch_limit_is_reached_before_the_body_limit():
    # A full batch of compact flowers must fit the body limit, or the documented batch limit is a lie.
    full = json.dumps({"flowers": [{k: 10.55 for k in FLOWER}] * MAX_BATCH_FLOWERS}).encode()
    assert len(full) < MAX_BODY_BYTES


def test_a_stalled_client_does_not_block_another(server):
    host, port = "127.0.0.1", server.port
    stalled = socket.create_connection((host, port), timeout=10)
    try:
        stalled.sendall(
            b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"sepal_length": '
        )  # ... and never the rest
        assert still_serving(server.url)  # within its 30 s timeout, while the stalled body never comes
    finally:
        stalled.close()

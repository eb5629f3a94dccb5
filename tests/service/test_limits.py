"""Limits: oversized bodies are refused before they are read, however they are sent; a request's head is bounded
(431); a stalled client does not block others. (Overload, idle and slow-loris connections: tests/overload.)

No wall-clock bounds (the machine is shared): "not blocked" means answered within a generous client timeout,
which a blocked server would never meet.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest
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


POST_ROUTES = ("/classify", "/classify_batch", "/v2/models/iris_classifier/infer", "/feedback", "/feedback_batch")
TOO_LARGE = {"error": f"request body is larger than the limit of {MAX_BODY_BYTES} bytes", "limit_bytes": MAX_BODY_BYTES}


@pytest.mark.parametrize("route", POST_ROUTES)
def test_a_chunked_body_over_the_limit_gets_the_same_413_object_on_every_route(server, route):
    """However the body comes (no Content-Length), the answer is the one a declared size gets: not a JSON list
    (BentoML's typed routes answering an error raised inside them), not a 500 (FastAPI's V2 routes)."""

    def chunks():
        for _ in range(40):
            yield b" " * 100_000  # 4 MB without a Content-Length

    response = requests.post(
        f"{server.url}{route}", data=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 413, response.text
    assert response.json() == TOO_LARGE
    declared = requests.post(
        f"{server.url}{route}",
        data=b" " * (MAX_BODY_BYTES + 1),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert (declared.status_code, declared.json()) == (413, TOO_LARGE)
    assert still_serving(server.url)


def test_a_chunked_body_under_the_limit_is_served(server):
    body = json.dumps({"flowers": [FLOWER] * 100}).encode()

    def chunks():
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    response = requests.post(
        f"{server.url}/classify_batch", data=chunks(), headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 200 and [p["species"] for p in response.json()] == ["setosa"] * 100


def send_head(port: int, header_bytes: int) -> bytes:
    """GET /livez with one header line of `header_bytes`, sent whole; the answer (read however the send ended)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        with contextlib.suppress(OSError):  # refused while still sending: the answer is read below
            sock.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n")
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and (b"431" in answer[:20] or b"200" in answer[:20]):
                    break
        return answer


def test_a_header_of_megabytes_is_refused_with_431_not_read_whole(server):
    answer = send_head(server.port, 5_000_000)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("the request line and headers are larger")
    assert still_serving(server.url)


def test_headers_within_the_limit_are_served(server):
    assert send_head(server.port, 20_000).startswith(b"HTTP/1.1 200")


# ---- upstream: uvicorn's own httptools protocol still has no bound on a request's head. When these fail, uvicorn
# bounds it itself and iris_classifier/serving/uvicorn_compat.py can go.


@contextlib.contextmanager
def plain_uvicorn() -> Iterator[int]:
    """uvicorn's own httptools protocol serving a trivial app on a free loopback port, in a thread."""
    import threading

    import uvicorn
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=HttpToolsProtocol, log_level="error", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_uvicorn_own_httptools_protocol_still_reads_any_head():
    with plain_uvicorn() as port:
        assert send_head(port, 5_000_000).startswith(b"HTTP/1.1 200")


def test_uvicorn_own_httptools_protocol_still_waits_for_a_head_forever():
    with plain_uvicorn() as port, socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finished
        sock.settimeout(12)  # longer than the project's head timeout (10 s)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_the_service_installs_the_bounded_protocol(pipeline_ready):
    import service  # noqa: F401  (importing it installs the protocol, as in the worker)
    from iris_classifier.serving import uvicorn_compat

    assert uvicorn_compat.installed_protocol().endswith(":BoundedHttpToolsProtocol")


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

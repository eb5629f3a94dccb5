"""What the demo tells a person for each answer /feedback may give (the contract's statuses), fast tier.

A loopback stand-in answers as the service documents: the browser tests cover the real service's 200 and
409; 401 (IRIS_FEEDBACK_TOKEN set), 429 (rate limit) and a refused body are hard to provoke there.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from demo.app import feedback_over_http

ANSWERS = {
    "new-wrong": (200, {"recorded": True, "predicted": "virginica", "correct": False}, {}),
    "new-unknown": (200, {"recorded": True, "predicted": None, "correct": None}, {}),
    "again": (200, {"recorded": False, "predicted": "setosa", "correct": True}, {}),
    "token": (401, {"error": "Authorization: this server requires `Authorization: Bearer <token>`"}, {}),
    "busy": (429, {"error": "labels: more than 100 labels per second"}, {"Retry-After": "3"}),
    "odd": (422, {"error": "request_id: should match pattern"}, {}),
}


@pytest.fixture(scope="module")
def service() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Feedback(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            label = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append({"path": self.path, "authorization": self.headers.get("Authorization"), **label})
            status, body, headers = ANSWERS[label["request_id"]]
            payload = json.dumps({"request_id": label["request_id"], "species": label["species"], **body}).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Feedback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("request_id", "says"),
    [
        ("new-wrong", "**Thanks, recorded:** a versicolor (the model said virginica)."),
        ("new-unknown", "**Thanks, recorded:** a versicolor."),
        ("again", "Already recorded: this flower is a **versicolor**."),
        ("token", "**The service only takes labels from authorized clients**, not from this page."),
        ("busy", "**Too many labels from here just now; not recorded.** Try again in 3 s."),
        ("odd", "**The service did not record the label (HTTP 422).** request_id: should match pattern"),
    ],
)
def test_each_answer_is_said_plainly(service, request_id, says):
    url, received = service
    assert feedback_over_http(url, request_id, "versicolor").startswith(says)
    # the label as the contract has it, and no token from this page
    assert received[-1] == {
        "path": "/feedback",
        "authorization": None,
        "request_id": request_id,
        "species": "versicolor",
    }


def test_no_prediction_no_request_and_a_down_service_is_named(service):
    url, received = service
    before = len(received)
    assert feedback_over_http(url, "", "setosa").startswith("**Classify a flower first**")
    assert len(received) == before
    down = feedback_over_http("http://127.0.0.1:9", "new-wrong", "setosa")  # discard port: nothing listens
    assert "is not answering; your label was not recorded" in down and "make serve" in down

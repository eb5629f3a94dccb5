"""The running image (make run-image): labels, non-root user, health check, restart after a crash."""

from __future__ import annotations

import threading
import time
from datetime import datetime

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.model.store import ModelCard, git_commit
from tests.container.conftest import CONTAINER, URL, docker

pytestmark = pytest.mark.container


def test_image_is_tagged_with_the_commit_and_carries_oci_labels(container, image):
    commit = git_commit()
    assert f"iris-classifier:{commit}" in image["RepoTags"]
    labels = image["Config"]["Labels"]
    assert labels["org.opencontainers.image.revision"] == commit
    datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert labels["org.opencontainers.image.source"].startswith("https://")
    card = ModelCard.read()
    assert labels["ai.iris.model.tag"] == card.tag
    assert float(labels["ai.iris.model.held_out_accuracy"]) == pytest.approx(card.held_out_accuracy, abs=1e-4)


def test_runs_as_a_non_root_user(container, image):
    assert image["Config"]["User"] not in ("", "root", "0")
    assert docker("exec", CONTAINER, "id", "-u") != "0"


def test_health_check_turns_healthy_on_readyz(container, image):
    assert "readyz" in " ".join(image["Config"]["Healthcheck"]["Test"])
    deadline = time.monotonic() + 150
    status = ""
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", CONTAINER)
        if status == "healthy":
            break
        time.sleep(2)
    assert status == "healthy"


def test_model_card_names_the_running_commit(container):
    card = requests.get(f"{URL}/model", timeout=10).json()
    assert card["bento_commit"] == git_commit()
    assert card["tag"] == ModelCard.read().tag


def test_restart_policy_brings_a_service_killed_mid_load_back(container):
    assert container["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert container["HostConfig"]["Init"] is True  # an init as PID 1: the service is a process that can die
    pid = docker("inspect", "--format", "{{.State.Pid}}", CONTAINER)
    restarts = int(docker("inspect", "--format", "{{.RestartCount}}", CONTAINER))
    outcomes: list[str] = []
    stop = threading.Event()

    def load() -> None:  # a client classifying virginicas all through the crash
        session = requests.Session()
        while not stop.is_set():
            try:
                response = session.post(f"{URL}/classify", json=EXAMPLE_FLOWERS["virginica"], timeout=5)
            except requests.RequestException:
                outcomes.append("unreachable")
                time.sleep(0.05)
                continue
            # By status first: an error answer, JSON or not, is named by its status, never taken for a lost connection.
            if response.status_code != 200:
                outcomes.append(str(response.status_code))
            else:
                outcomes.append("right" if response.json().get("species") == "virginica" else "wrong species")

    def wait_for_a_right_answer(after: int, timeout: float = 30) -> None:
        """Until the client has had a right answer past its first `after` outcomes (polled, not slept)."""
        deadline = time.monotonic() + timeout
        while "right" not in outcomes[after:] and time.monotonic() < deadline:
            time.sleep(0.05)

    client = threading.Thread(target=load)
    client.start()
    try:
        wait_for_a_right_answer(after=0)  # the client is classifying when the crash comes
        # SIGKILL to the service's main process, as a crash would: the child of the container's init
        # (run-image starts it with --init). From inside the container, so an ordinary agent user may do it.
        docker("exec", CONTAINER, "sh", "-c", "kill -KILL $(cut -d' ' -f1 /proc/1/task/1/children)")
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:  # the restart policy starts a new main process
            new_pid = docker("inspect", "--format", "{{.State.Pid}}", CONTAINER)
            if new_pid not in (pid, "0"):
                break
            time.sleep(0.2)
        assert int(docker("inspect", "--format", "{{.RestartCount}}", CONTAINER)) == restarts + 1
        answers_before_ready = []
        while time.monotonic() < deadline:
            try:
                ready = requests.get(f"{URL}/readyz", timeout=2).status_code == 200
            except requests.RequestException:
                ready = False
            if ready:
                break
            answers_before_ready.append(ready)
            time.sleep(0.2)
        # While the new process loads the model, /readyz is not 200 (refused or 503), then it is.
        assert answers_before_ready
        wait_for_a_right_answer(after=len(outcomes))  # and the client is answered again
    finally:
        stop.set()
        client.join(timeout=10)
    assert outcomes[0] == "right" and outcomes[-1] == "right"
    assert "unreachable" in outcomes  # the crash was real
    assert set(outcomes) <= {"right", "unreachable", "503"}  # never a wrong species, never another error

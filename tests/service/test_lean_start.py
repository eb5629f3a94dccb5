"""What the service imports at start, and the web UI built on its first request (issue #12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.project.paths import ROOT

# Imported by the request path only on demand: the UI (Gradio, and pandas under it) and the
# scikit-learn fallback (SciPy under it).
NOT_AT_START = ("gradio", "pandas", "sklearn", "scipy", "joblib")


def test_importing_the_service_leaves_the_ui_and_scikit_learn_out(pipeline_ready):
    code = f"import json, sys, service; print(json.dumps([m for m in {NOT_AT_START!r} if m in sys.modules]))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, env=os.environ
    )
    assert json.loads(out.stdout.splitlines()[-1]) == []


@pytest.fixture(scope="module")
def fresh_server(pipeline_ready, artifacts_dir):
    """A server of its own, so its log shows its whole start."""
    from iris_classifier.harness.servers import Server

    server = Server("service:IrisClassifier", log_path=artifacts_dir / "serve-lazy-ui.log").start()
    yield server
    server.stop()


def test_readiness_does_not_wait_for_the_ui_which_is_built_once(fresh_server):
    url = fresh_server.url
    answer = requests.post(f"{url}/classify", json=EXAMPLE_FLOWERS["virginica"], timeout=10)
    assert answer.json()["species"] == "virginica"

    with ThreadPoolExecutor(max_workers=6) as pool:  # six early visitors at once: at most one build, six pages
        pages = list(pool.map(lambda _: requests.get(f"{url}/ui/", timeout=120), range(6)))
    assert [page.status_code for page in pages] == [200] * 6
    assert all("gradio" in page.text.lower() for page in pages)
    config = requests.get(f"{url}/ui/config", timeout=10).json()
    assert config["root"].rstrip("/").endswith("/ui")

    log = fresh_server.log_tail(400)
    assert log.count("Built the web UI at /ui/") == 1
    # The service was ready (its instance made, the model loaded) before the UI was built.
    assert log.index("Service iris_classifier initialized") < log.index("Built the web UI")

    assert requests.post(f"{url}/classify", json=EXAMPLE_FLOWERS["setosa"], timeout=10).json()["species"] == "setosa"
    spec = requests.get(f"{url}/docs.json", timeout=10).json()
    assert not [path for path in spec["paths"] if path.startswith("/ui")]  # still not part of the API

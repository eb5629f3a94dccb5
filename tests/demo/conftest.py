"""Headless Chromium (Debian's, or Playwright's own) for Playwright, and a standalone demo with its own service."""

from __future__ import annotations

import pytest

from iris_classifier.harness.servers import DemoProcess, Server
from ops import browser as browsers

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = browsers.find()
    if executable is None:
        pytest.fail(f"no headless Chromium for the browser tests: {browsers.FIX}")
    with sync_playwright() as playwright:
        # Playwright gives each launch a new empty profile directory of its own.
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    yield page
    page.close()


@pytest.fixture()
def own_service(pipeline_ready, artifacts_dir, tmp_path):
    """A service this test may stop and restart (the shared one stays up for the others), with its prediction
    log and labels in a folder of the test's own (`monitor_dir`), never the project's .monitor/."""
    monitor = tmp_path / "monitor"
    process = Server(
        "service:IrisClassifier", env={"IRIS_MONITOR_DIR": str(monitor)}, log_path=artifacts_dir / "serve-demo-own.log"
    )
    process.monitor_dir = monitor
    yield process
    process.stop()


@pytest.fixture(scope="session")
def standalone_demo(server, artifacts_dir):
    """`python -m demo.app` against the shared service."""
    demo = DemoProcess(api_url=server.url, log_path=artifacts_dir / "demo.log").start()
    yield demo
    demo.stop()


@pytest.fixture()
def own_demo(own_service, artifacts_dir):
    """A standalone demo whose service the test stops and starts (the demo itself starts first)."""
    demo = DemoProcess(api_url=own_service.url, log_path=artifacts_dir / "demo-own.log").start()
    yield demo
    demo.stop()

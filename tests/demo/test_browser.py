"""The UI in a real headless browser: served by the service at /ui, and standalone against a service."""

from __future__ import annotations

import re

import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES

VIRGINICA = EXAMPLE_FLOWERS["virginica"]


def fill(page, flower: dict[str, float]) -> None:
    for name in FEATURES:
        page.locator(f"#input-{name} input").fill(str(flower[name]))


def classify(page) -> None:
    page.locator("#classify").click()


def test_ui_classifies_a_virginica_and_shows_its_probability(server, page, artifacts_dir):
    assert requests.get(f"{server.url}/ui/", timeout=10).status_code == 200
    page.goto(f"{server.url}/ui/", wait_until="networkidle")
    fill(page, VIRGINICA)
    classify(page)
    headline = page.locator("#species")
    headline.get_by_text(re.compile(r"virginica \(\d+%\)")).wait_for(timeout=15_000)
    expected = requests.post(f"{server.url}/classify", json=VIRGINICA, timeout=10).json()
    assert f"({expected['probabilities']['virginica']:.0%})" in headline.inner_text()
    assert (
        page.locator("#model-version textarea, #model-version input").first.input_value() == expected["model_version"]
    )
    assert "virginica" in page.locator("#chart").inner_text()
    page.screenshot(path=str(artifacts_dir / "ui-virginica.png"), full_page=True)


def test_ui_shows_the_services_refusal_next_to_the_field(server, page, artifacts_dir):
    page.goto(f"{server.url}/ui/", wait_until="networkidle")
    fill(page, {**VIRGINICA, "petal_width": -1})
    classify(page)
    error = page.locator("#error-petal_width")
    error.get_by_text("Petal width (cm): Input should be greater than 0").wait_for(timeout=15_000)
    assert "refused" in page.locator("#status").inner_text()
    assert page.locator("#error-sepal_length").is_hidden()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / "ui-refused.png"), full_page=True)


def test_ui_is_usable_at_375_px(server, browser, artifacts_dir):
    page = browser.new_page(viewport={"width": 375, "height": 812})
    try:
        page.goto(f"{server.url}/ui/", wait_until="networkidle")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        for name in FEATURES:
            box = page.locator(f"#input-{name} input").bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375
        fill(page, VIRGINICA)
        classify(page)
        page.locator("#species").get_by_text("virginica").wait_for(timeout=15_000)
        page.screenshot(path=str(artifacts_dir / "ui-375px.png"), full_page=True)
    finally:
        page.close()


def test_standalone_demo_says_what_to_run_when_the_service_is_down_and_recovers(
    own_service, own_demo, page, artifacts_dir
):
    own_service.start()
    page.goto(own_demo.url, wait_until="networkidle")
    fill(page, VIRGINICA)
    classify(page)
    page.locator("#species").get_by_text("virginica").wait_for(timeout=15_000)

    own_service.stop()
    classify(page)
    status = page.locator("#status")
    status.get_by_text("is not answering").wait_for(timeout=15_000)
    assert "make serve" in status.inner_text()
    assert page.locator("#species").inner_text().strip() == ""
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / "demo-service-down.png"), full_page=True)

    own_service.start()
    classify(page)
    page.locator("#species").get_by_text("virginica").wait_for(timeout=15_000)
    assert status.inner_text().strip() == ""

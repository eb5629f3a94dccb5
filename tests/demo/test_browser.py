"""The UI in a real headless browser: served by the service at /ui, and standalone against a service."""

from __future__ import annotations

import csv
import io
import json
import re
import time
from pathlib import Path

import requests

from iris_classifier.data.production_log import data_files, label_files
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


# -- the feedback loop: "right" or "wrong, it is a ___" after a prediction, sent to POST /feedback ----------


def choose_species(page, species: str) -> None:
    page.locator("#feedback-species input").click()
    page.get_by_role("option", name=species, exact=True).click()


def feedback_status(page, text: str) -> str:
    status = page.locator("#feedback-status")
    status.get_by_text(text).wait_for(timeout=15_000)
    return status.inner_text()


def labels_on_disk(monitor: Path) -> list[dict]:
    return [json.loads(line) for path in label_files(monitor) for line in path.read_text().splitlines()]


def logged_species(monitor: Path, timeout: float = 15) -> dict[str, str]:
    """request id -> species, from the prediction log (its writer flushes about once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [json.loads(line) for path in data_files(monitor) for line in path.read_text().splitlines()]
        if rows or time.monotonic() > deadline:
            return {row["request_id"]: row["species"] for row in rows}
        time.sleep(0.2)


def test_ui_sends_the_true_species_of_the_flower_it_just_classified(own_service, page, artifacts_dir):
    own_service.start()
    monitor = own_service.monitor_dir
    page.goto(f"{own_service.url}/ui/", wait_until="networkidle")
    assert page.locator("#feedback").is_hidden()  # nothing to judge before a prediction
    fill(page, VIRGINICA)
    classify(page)
    page.locator("#species").get_by_text("virginica").wait_for(timeout=15_000)
    assert page.locator("#feedback-right").inner_text().strip() == "Right, it is a virginica"

    choose_species(page, "versicolor")
    page.locator("#feedback-send").click()
    assert "Thanks, recorded: a versicolor (the model said virginica)" in feedback_status(page, "Thanks, recorded")
    (label,) = labels_on_disk(monitor)  # durable before the answer
    assert (label["species"], label["index"], label["predicted"]) == ("versicolor", 0, "virginica")
    # the id the UI sent is the one the prediction was logged under
    assert logged_species(monitor)[label["request_id"]] == "virginica"
    page.screenshot(path=str(artifacts_dir / "ui-feedback-recorded.png"), full_page=True)

    page.locator("#feedback-send").click()  # the same label again: idempotent
    feedback_status(page, "Already recorded")
    choose_species(page, "setosa")  # a different species for the same flower: refused
    page.locator("#feedback-send").click()
    refused = feedback_status(page, "did not record the label (HTTP 409)")
    assert "versicolor" in refused
    assert len(labels_on_disk(monitor)) == 1

    # a new prediction: the form starts over, and "right" is a label too
    fill(page, EXAMPLE_FLOWERS["setosa"])
    classify(page)
    page.locator("#feedback-right").get_by_text("Right, it is a setosa").wait_for(timeout=15_000)
    assert page.locator("#feedback-status").inner_text().strip() == ""
    page.locator("#feedback-right").click()
    assert feedback_status(page, "Thanks, recorded").strip().endswith("a setosa.")
    assert [(row["species"], row["predicted"]) for row in labels_on_disk(monitor)] == [
        ("versicolor", "virginica"),
        ("setosa", "setosa"),
    ]
    metrics = requests.get(f"{own_service.url}/metrics", timeout=10).text
    assert 'iris_feedback_labels_total{actual="versicolor",correct="false",predicted="virginica"} 1.0' in metrics
    assert 'iris_feedback_labels_total{actual="setosa",correct="true",predicted="setosa"} 1.0' in metrics
    assert "Traceback" not in page.content()


def test_standalone_demo_keeps_the_label_when_the_service_is_down_and_sends_it_after(
    own_service, own_demo, page, artifacts_dir
):
    own_service.start()
    page.goto(own_demo.url, wait_until="networkidle")
    fill(page, VIRGINICA)
    classify(page)
    page.locator("#species").get_by_text("virginica").wait_for(timeout=15_000)
    choose_species(page, "versicolor")

    own_service.stop()
    page.locator("#feedback-send").click()
    down = feedback_status(page, "is not answering")
    assert "not recorded" in down and "make serve" in down
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / "demo-feedback-service-down.png"), full_page=True)

    # the restarted service no longer knows the prediction, but takes the label (the join happens later)
    own_service.start()
    page.locator("#feedback-send").click()
    assert feedback_status(page, "Thanks, recorded").strip().endswith("a versicolor.")
    (label,) = labels_on_disk(own_service.monitor_dir)
    assert (label["species"], label["predicted"]) == ("versicolor", None)


# -- a CSV file of flowers: uploaded, scored through /classify_batch, every row back in a table and a file ----------

FLOWERS_CSV = """id,sepal_length,sepal_width,petal_length,petal_width,note
s1,5.1,3.5,1.4,0.2,first setosa
v1,7.0,3.2,4.7,1.4,
g1,6.3,3.3,6.0,2.5,"virginica, Fisher's row 100"
m1,,3.5,1.4,0.2,missing
t1,5.1,abc,1.4,0.2,text
n1,5.1,3.5,nan,0.2,not finite
r1,5.1,3.5,1.4,-0.2,negative
"""
REFUSED = {
    "m1": "sepal_length: Field required",
    "t1": "sepal_width: Input should be a valid number (got 'abc')",
    "n1": "petal_length: Input should be a finite number (got nan)",
    "r1": "petal_width: Input should be greater than 0 (got -0.2)",
}


def test_ui_scores_a_csv_file_every_row_back_in_a_table_and_a_file(server, page, artifacts_dir, tmp_path):
    upload = tmp_path / "survey.csv"
    upload.write_text(FLOWERS_CSV)
    page.goto(f"{server.url}/ui/", wait_until="networkidle")
    assert "Size limit: 1 MB" in page.locator("#csv-intro").inner_text()

    page.locator("#csv-upload input[type=file]").set_input_files(str(upload))
    status = page.locator("#csv-status")
    status.get_by_text("7 rows: 3 scored, 4 refused.").wait_for(timeout=30_000)
    assert "4, 5, 6, 7" in status.inner_text()  # the refused rows, by number
    shown = page.locator("#csv-table").inner_text()  # what is rendered, off-screen columns included
    for text in ("virginica, Fisher's row 100", "versicolor", *REFUSED.values()):
        assert text in shown
    page.screenshot(path=str(artifacts_dir / "ui-csv-scored.png"), full_page=True)

    with page.expect_download() as download:
        page.locator("#csv-download a").first.click()
    assert download.value.suggested_filename == "survey-scored.csv"
    written = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    given = list(csv.DictReader(io.StringIO(FLOWERS_CSV)))
    assert [{name: row[name] for name in given[0]} for row in written] == given  # rows in = rows out, unchanged
    good = [row for row in given if row["id"] not in REFUSED]
    answers = requests.post(
        f"{server.url}/classify_batch",
        json={"flowers": [{name: float(row[name]) for name in FEATURES} for row in good]},
        timeout=10,
    ).json()
    scored = {row["id"]: row for row in written}
    for row, answer in zip(good, answers, strict=True):
        mine = scored[row["id"]]
        assert (mine["species"], mine["error"]) == (answer["species"], "")
        assert mine["model_version"] == answer["model_version"]
        assert {name: float(mine[f"probability_{name}"]) for name in answer["probabilities"]} == answer["probabilities"]
    for row_id, error in REFUSED.items():
        refused = scored[row_id]
        assert (refused["species"], refused["probability_setosa"], refused["error"]) == ("", "", error)
    assert "Traceback" not in page.content()

"""Every Grafana panel query, evaluated by a real Prometheus scraping a real service under traffic."""

from __future__ import annotations

import collections
import json
import shutil
import time
from collections.abc import Callable

import pytest
import requests

from iris_classifier.domain.schema import SPECIES
from iris_classifier.monitoring.dashboard import (
    DASHBOARD,
    PROMETHEUS_APT,
    PrometheusProcess,
    grafana_to_promql,
    panel_queries,
)
from iris_classifier.monitoring.synthetic_traffic import send_traffic, training_flowers

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason=f"prometheus is not installed: {PROMETHEUS_APT}"
)


def test_the_dashboard_is_importable_with_a_prometheus_datasource_variable():
    board = json.loads(DASHBOARD.read_text())
    assert board["__inputs"][0]["name"] == "DS_PROMETHEUS" and board["__inputs"][0]["pluginId"] == "prometheus"
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource" and variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"], panel["title"]
    titles = " ".join(panel["title"] for panel in board["panels"]).lower()
    for topic in ("requests per second", "latency", "4xx", "5xx", "species", "model call", "memory", "drift"):
        assert topic in titles
    for topic in ("live accuracy", "confusion", "labels per hour"):  # ground truth from POST /feedback
        assert topic in titles


def test_the_accuracy_panel_shows_the_alerts_gate():
    from iris_classifier.project.params import load_params

    board = json.loads(DASHBOARD.read_text())
    (accuracy,) = [panel for panel in board["panels"] if panel["title"].lower().startswith("live accuracy")]
    assert accuracy["targets"][0]["expr"].startswith("iris:feedback_accuracy:ratio_rate1h")  # the alert's series
    steps = accuracy["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1] == {"color": "green", "value": load_params("evaluate")["min_accuracy"]}
    (confusion,) = [panel for panel in board["panels"] if panel["title"].lower().startswith("confusion")]
    (matrix,) = confusion["transformations"]
    assert matrix["id"] == "groupingToMatrix"
    assert (matrix["options"]["rowField"], matrix["options"]["columnField"]) == ("predicted", "actual")


FEEDBACK_COMBINATIONS = 9 + 3  # predicted x actual judged (true on the diagonal, false off it), + unknown x actual


def label_flowers(url: str, flowers: list[dict[str, float]], wrong_every: int) -> collections.Counter:
    """Classify each flower, then send its label to /feedback: the species the service answered, except
    every `wrong_every`-th, labelled as another species. Returns the labels sent by (predicted, actual)."""
    sent: collections.Counter = collections.Counter()
    for number, flower in enumerate(flowers):
        answer = requests.post(f"{url}/classify", json=flower, timeout=10)
        assert answer.status_code == 200, answer.text
        request_id, predicted = answer.json()["request_id"], answer.json()["species"]
        assert answer.headers["X-Request-ID"] == request_id
        actual = SPECIES[(SPECIES.index(predicted) + 1) % 3] if number % wrong_every == 0 else predicted
        label = requests.post(f"{url}/feedback", json={"request_id": request_id, "species": actual}, timeout=10)
        assert label.status_code == 200, label.text
        assert label.json()["recorded"] is True and label.json()["correct"] is (actual == predicted), label.json()
        sent[(predicted, actual)] += 1
    # the same label again is recorded once; another species for that flower is a conflict (409)
    again = requests.post(f"{url}/feedback", json={"request_id": request_id, "species": actual}, timeout=10)
    assert again.status_code == 200 and again.json()["recorded"] is False, again.text
    other = SPECIES[(SPECIES.index(actual) + 1) % 3]
    conflict = requests.post(f"{url}/feedback", json={"request_id": request_id, "species": other}, timeout=10)
    assert conflict.status_code == 409, conflict.text
    return sent


@pytest.fixture(scope="module")
def prometheus(logged_server):
    process = PrometheusProcess(f"127.0.0.1:{logged_server.port}", scrape_seconds=1).start()
    yield process
    process.stop()


@needs_prometheus
def test_every_panel_query_is_accepted_and_returns_data_under_traffic(logged_server, prometheus):
    from iris_classifier.monitoring.drift import EXIT_NO_DRIFT, check, read_logged_flowers

    prometheus.wait_for_scrapes(2)
    statuses = send_traffic(logged_server.url, training_flowers(150, seed=21), bad_every=5, batch_size=50)
    assert statuses["200"] == 150 and statuses["400"] == 30 and statuses["batch 200"] == 3, statuses
    # The log's writer thread flushes about once a second: wait until what was just classified is on disk.
    deadline = time.monotonic() + 120
    while len(read_logged_flowers(logged_server.log_dir, 1000).flowers) < 150 and time.monotonic() < deadline:
        time.sleep(0.5)
    # the drift check over what was just logged, published where the service reads it (drift panels)
    code, verdict = check(
        log_dir=logged_server.log_dir,
        window=500,
        min_flowers=50,
        html_path=logged_server.log_dir / "drift.html",
        json_path=logged_server.log_dir / "report.json",
    )
    assert code == EXIT_NO_DRIFT, verdict
    # Every label combination is on /metrics at 0 before the first label: increase() counts a series' rise,
    # so a counter that appeared at 1 would lose the first label of each combination from every panel.
    metrics = requests.get(f"{logged_server.url}/metrics", timeout=10).text
    zeroes = [line for line in metrics.splitlines() if line.startswith("iris_feedback_labels_total{")]
    assert len(zeroes) == FEEDBACK_COMBINATIONS and all(line.endswith(" 0.0") for line in zeroes), zeroes
    prometheus.wait_for_scrapes(2)  # the zeroes are stored before the labels
    sent = label_flowers(logged_server.url, training_flowers(40, seed=23), wrong_every=5)  # 32 right, 8 wrong
    send_traffic(logged_server.url, training_flowers(60, seed=22), bad_every=3)  # fresh traffic in the rate window
    prometheus.wait_for_scrapes(3)

    # every query, and the sample counts that bound increase() below, evaluated at one instant: a scrape between
    # two "now"s would give the bound one sample more than the answer it judges had (a tighter bound, a false fail)
    at = time.time()
    answers = {}
    for query in panel_queries():
        promql = grafana_to_promql(query.expr, rate_interval="30s")
        answer = prometheus.query(promql, at=at)
        assert answer["status"] == "success", f"{query.panel} [{query.legend}]: {promql}\n{answer}"
        assert answer["data"]["result"], f"{query.panel} [{query.legend}] returned no data: {promql}"
        answers[(query.panel, query.legend)] = {
            json.dumps(series["metric"], sort_keys=True): float(series["value"][1])
            for series in answer["data"]["result"]
        }

    def values(panel: str, legend: str) -> dict[str, float]:
        return {
            json.loads(key).get("endpoint") or json.loads(key).get("species") or key: value
            for key, value in answers[(panel, legend)].items()
        }

    assert values("Requests per second, by endpoint", "{{endpoint}}")["/classify"] > 0
    species_rates = values("Predictions per second, by species", "{{species}}")
    assert set(species_rates) == {"setosa", "versicolor", "virginica"} and sum(species_rates.values()) > 0
    mix = values("Prediction mix over the last hour", "{{species}}")
    assert abs(sum(mix.values()) - 1) < 1e-9
    assert 0 < values("4xx and 5xx share of classify requests", "4xx {{endpoint}}")["/classify"] < 1
    assert values("4xx and 5xx share of classify requests", "5xx {{endpoint}}")["/classify"] == 0
    (mean_model_call,) = answers[("Model call time", "mean")].values()
    assert 0 < mean_model_call < 0.1
    memory = answers[("Resident memory of the serving processes", "{{role}} {{pid}}")]
    assert len(memory) >= 2 and all(value > 50e6 for value in memory.values())  # supervisor and worker
    assert set(answers[("Up and ready", "up {{instance}}")].values()) == {1.0}
    assert set(answers[("Up and ready", "ready {{instance}}")].values()) == {1.0}
    assert set(answers[("Drift score (share of features drifted)", "drift score")].values()) == {0.0}
    assert len(answers[("Drift test per feature", "{{feature}}")]) == 4

    # ground truth: accuracy is right over judged, the confusion holds what was sent, one conflict refused.
    # increase() extrapolates a counter's rise to the end of its window: never below the exact count (each series
    # started at 0 inside the window, so nothing is extrapolated before its first sample), and above it by at most
    # 1.1 scrape intervals' worth (Prometheus' extrapolation limit) over the span its samples cover.
    labels_within = extrapolation("iris_feedback_labels_total", prometheus, at)
    (accuracy,) = answers[("Live accuracy of labelled flowers (last hour)", "accuracy (all replicas)")].values()
    assert accuracy == pytest.approx(32 / 40)  # a ratio of two increases: the extrapolation cancels
    (judged,) = answers[("Live accuracy of labelled flowers (last hour)", "judged labels in the hour")].values()
    assert labels_within(judged, 40)
    per_hour = values("Labels per hour, right / wrong / unknown", "{{correct}}")
    per_hour = {json.loads(key)["correct"]: value for key, value in per_hour.items()}
    assert labels_within(per_hour["true"], 32) and labels_within(per_hour["false"], 8), per_hour
    assert per_hour.get("unknown", 0) == 0  # one replica: it answered every request it got a label for
    confusion = {
        (json.loads(key)["predicted"], json.loads(key)["actual"]): value
        for key, value in answers[("Confusion: labelled flowers, predicted x actual (dashboard range)",
                                   "{{predicted}} -> {{actual}}")].items()
    }  # fmt: skip
    assert {cell for cell, count in confusion.items() if count > 0} == set(sent)
    for cell, count in sent.items():
        assert labels_within(confusion[cell], count), (cell, confusion)
    refused = values("Feedback refused per hour, by reason", "{{reason}}")
    refused = {json.loads(key)["reason"]: value for key, value in refused.items()}
    assert extrapolation("iris_feedback_rejected_total", prometheus, at)(refused["conflict"], 1), refused

    # and no alert fires on this healthy, in-distribution service (the rules are loaded by this Prometheus)
    rules = prometheus.query('ALERTS{alertstate="firing"}')
    assert rules["status"] == "success" and rules["data"]["result"] == [], rules


def extrapolation(counter: str, prometheus, at: float) -> Callable[[float, int], bool]:
    """Whether an increase() over the counter's series, evaluated at `at`, can be `exact`: exact <= value <=
    exact * (1 + 1.1 / (n - 1)), n the fewest samples any of its series has in the hour before `at` (n - 1
    intervals span what the samples cover)."""
    answer = prometheus.query(f'min(count_over_time({counter}{{job="iris-classifier"}}[1h]))', at=at)
    samples = int(float(answer["data"]["result"][0]["value"][1]))
    assert samples >= 3, answer

    def within(value: float, exact: int) -> bool:
        return exact - 1e-9 <= value <= exact * (1 + 1.1 / (samples - 1)) + 1e-9

    return within


@needs_prometheus
def test_a_query_prometheus_rejects_is_reported(prometheus):
    """The acceptance check above is not vacuous: a broken query comes back as an error."""
    answer = prometheus.query(
        grafana_to_promql("sum by(endpoint) (rate(bentoml_service_request_total[$__rate_interval])")
    )
    assert answer["status"] == "error" and answer["errorType"] == "bad_data"

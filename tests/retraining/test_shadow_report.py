"""make shadow-report's join and rules, on shadow logs and label files written in the layout the service writes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import orjson
import pytest

from iris_classifier.retraining.shadow_report import NoShadowLog, render_html, shadow_report

RULES = {
    "min_labelled": 20,
    "tolerance": 0.02,
    "species_tolerance": 0.05,
    "min_species_labelled": 10,
    "max_disagreement": 0.05,
    "significance": 0.05,
    "alert_agreement": 0.9,
}


def write_case(folder: Path, flowers: list[tuple[str, str, str | None]], version: str = "v1.1.0") -> Path:
    """One /classify_batch request per call: (champion species, shadow species, label or None) per flower."""
    params = folder / "params.yaml"
    params.write_text(json.dumps({"shadow": RULES}))
    request_id = str(len(list(folder.glob("iris_shadow/data/*"))) + 1000)
    log = folder / "iris_shadow" / "data" / f"data.host.{request_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    labels = folder / "feedback" / f"labels.host.{request_id}.jsonl"
    labels.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as lines, labels.open("wb") as labelled:
        for index, (champion, shadow, label) in enumerate(flowers):
            record = {
                "index": index,
                "champion_version": "iris_classifier:champion",
                "shadow_version": version,
                "champion_species": champion,
                "shadow_species": shadow,
                "champion_probability": 0.9,
                "shadow_probability": 0.8,
                "shadow_latency_ms": 0.5 + index % 3,
                "timestamp": "2026-12-06T20:00:00.000000+00:00",
                "request_id": request_id,
                "trace_id": "0",
            }
            lines.write(orjson.dumps(record) + b"\n")
            if label:
                labelled.write(orjson.dumps({"request_id": request_id, "index": index, "species": label}) + b"\n")
        lines.write(b'{"index": 99, "champion_ver')  # a torn last line (a crash mid-write) is skipped
    return params


def test_rare_disagreement_needs_no_significance_and_passes(tmp_path):
    flowers = [("setosa", "setosa", "setosa")] * 30 + [("versicolor", "versicolor", "versicolor")] * 29
    flowers += [("versicolor", "virginica", "virginica"), ("virginica", "virginica", None)]
    report = shadow_report(tmp_path, params_path=write_case(tmp_path, flowers))
    assert report["verdict"] == "pass", report["reasons"]
    assert (report["shadowed"], report["labelled"]) == (61, 60)
    assert report["agreement"] == round(60 / 61, 6)
    assert report["champion_accuracy"] == round(59 / 60, 6) and report["challenger_accuracy"] == 1.0
    assert report["mcnemar"] == {"p": 0.5, "challenger_only_right": 1, "champion_only_right": 0}
    assert "no significance needed" in report["reasons"][-1]
    assert (
        report["disagreements"][0]["challenger"] == "virginica" and report["disagreements"][0]["label"] == "virginica"
    )
    assert report["shadow_latency_ms"] == {"p50": 1.5, "p90": 2.5, "p99": 2.5}
    assert ">pass<" in render_html(report)


def test_better_overall_but_worse_on_one_species_fails_naming_it(tmp_path):
    # setosa: both right; versicolor: challenger loses 2 of 20; virginica: challenger wins 6 the champion lost
    flowers = [("setosa", "setosa", "setosa")] * 20
    flowers += [("versicolor", "versicolor", "versicolor")] * 18 + [("versicolor", "virginica", "versicolor")] * 2
    flowers += [("virginica", "virginica", "virginica")] * 14 + [("versicolor", "virginica", "virginica")] * 6
    report = shadow_report(tmp_path, params_path=write_case(tmp_path, flowers))
    assert report["verdict"] == "fail"
    assert report["challenger_accuracy"] > report["champion_accuracy"]
    assert report["reasons"][0].startswith("versicolor: challenger recall 0.9000 < champion 1.0000")
    assert report["per_species"]["versicolor"] == {"labelled": 20, "champion_recall": 1.0, "challenger_recall": 0.9}


def test_frequent_disagreement_without_significance_fails(tmp_path):
    # they disagree on 8 of 40; the challenger is right on 5 of them, the champion on 3: p = 0.36
    flowers = [("setosa", "setosa", "setosa")] * 32
    flowers += [("versicolor", "virginica", "virginica")] * 5 + [("virginica", "versicolor", "virginica")] * 3
    report = shadow_report(tmp_path, params_path=write_case(tmp_path, flowers))
    assert report["verdict"] == "fail"
    assert "(not significantly better)" in report["reasons"][0]


def test_too_few_labels_is_insufficient_and_says_how_many(tmp_path):
    flowers = [("setosa", "setosa", "setosa")] * 5 + [("setosa", "setosa", None)] * 50
    report = shadow_report(tmp_path, params_path=write_case(tmp_path, flowers))
    assert report["verdict"] == "insufficient" and report["labelled"] == 5 and report["shadowed"] == 55
    assert report["reasons"][0].startswith("only 5 labelled flowers among the 55 the shadow saw")


def test_the_newest_version_is_judged_unless_one_is_named(tmp_path):
    write_case(tmp_path, [("setosa", "setosa", "setosa")] * 25, version="v1.1.0")
    (older,) = tmp_path.glob("iris_shadow/data/*")
    os.utime(older, (1e9, 1e9))  # the log's files are read oldest first
    params = write_case(tmp_path, [("setosa", "versicolor", "setosa")] * 25, version="v1.2.0")
    newest = shadow_report(tmp_path, params_path=params)
    assert (newest["challenger_version"], newest["verdict"]) == ("v1.2.0", "fail")
    named = shadow_report(tmp_path, "1.1.0", params_path=params)
    assert (named["challenger_version"], named["shadowed"], named["verdict"]) == ("v1.1.0", 25, "pass")
    with pytest.raises(NoShadowLog, match=r"no flower shadowed by v9\.9\.9 \(it holds: v1\.1\.0, v1\.2\.0\)"):
        shadow_report(tmp_path, "9.9.9", params_path=params)
    with pytest.raises(NoShadowLog, match="make serve SHADOW=staging"):
        shadow_report(tmp_path / "empty", params_path=params)

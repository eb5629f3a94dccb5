"""`make score` on real Spark: local mode and a standalone cluster give the same rows, every row once, the
service's own answers; bad input and missing prerequisites are refused with a message saying what to do."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.columns import OUTPUT_COLUMNS, PROBABILITY_COLUMNS
from iris_classifier.scoring.flower_files import BAD_VALUES
from tests.conftest import ROOT
from tests.scoring.conftest import BAD_EVERY, ROWS, completed, score, scored_rows, summary

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def test_local_mode_returns_every_row_once_with_the_services_answers_and_errors_for_bad_rows(
    local_output, flower_csv, stored_model
):
    given = pd.read_csv(flower_csv, dtype=str, keep_default_na=False)
    rows = scored_rows(local_output)
    assert list(rows.columns) == [*given.columns, *OUTPUT_COLUMNS]
    assert rows["flower_id"].tolist() == given["flower_id"].tolist()  # each once
    # Input columns come back as they were (an empty CSV cell is null, as Spark reads it)
    pd.testing.assert_frame_equal(rows[given.columns].fillna(""), given)
    bad_ids = [str(i) for i in range(BAD_EVERY - 1, ROWS, BAD_EVERY)]
    assert rows.loc[rows["error"].notna(), "flower_id"].tolist() == bad_ids
    bad = rows[rows["error"].notna()]
    assert bad["species"].isna().all() and bad[list(PROBABILITY_COLUMNS)].isna().all().all()
    for number, error in enumerate(bad["error"]):
        field = FEATURES[number % len(FEATURES)]
        value, rule = BAD_VALUES[number % len(BAD_VALUES)]
        assert error.startswith(f"{field}: ") and (rule == "missing" or repr(value) in error)
    # The service's predictor on the same float64 rows: bit for bit
    good = rows[rows["error"].isna()]
    expected = Predictor.from_dir(Path(stored_model.path)).predict_proba(
        good[list(FEATURES)].astype(np.float64).to_numpy()
    )
    assert (good[list(PROBABILITY_COLUMNS)].to_numpy() == expected).all()
    assert good["species"].tolist() == [SPECIES[i] for i in expected.argmax(axis=1)]
    assert set(rows["model_version"]) == {str(stored_model.tag)}
    counts = summary(local_output)
    assert counts["rows_read"] == ROWS == len(rows)
    assert (counts["rows_scored"], counts["rows_refused"]) == (ROWS - len(bad_ids), len(bad_ids))
    assert counts["master"] == "local[*]" and counts["model_version"] == str(stored_model.tag)


def test_a_sample_is_what_the_running_service_answers_on_classify_batch(local_output, server):
    rows = scored_rows(local_output)
    sample = rows[rows["error"].isna()].sample(2_000, random_state=1)
    flowers = [{name: float(row[name]) for name in FEATURES} for _, row in sample.iterrows()]
    answer = requests.post(f"{server.url}/classify_batch", json={"flowers": flowers}, timeout=60)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    assert sample["species"].tolist() == [row["species"] for row in served]
    assert sample["model_version"].tolist() == [row["model_version"] for row in served]
    # orjson writes float64 round-trip exactly: the same numbers, not merely close ones
    served_probabilities = [[row["probabilities"][name] for name in SPECIES] for row in served]
    assert sample[list(PROBABILITY_COLUMNS)].to_numpy().tolist() == served_probabilities


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def cluster_command(command: str, directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "iris_classifier.scoring.cluster", command, "--dir", str(directory)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_a_standalone_cluster_scores_the_same_rows_and_stops_leaving_nothing_listening(
    spark_python, local_output, flower_csv, tmp_path
):
    from iris_classifier.scoring.cluster import recorded

    directory = tmp_path / "cluster"
    up = cluster_command("up", directory)
    try:
        assert up.returncode == 0, completed(up)
        last = up.stdout.strip().splitlines()[-1]
        assert last.startswith("SPARK_MASTER=spark://127.0.0.1:")
        cluster = recorded(directory)
        assert cluster is not None and last == f"SPARK_MASTER={cluster.url}"
        output = tmp_path / "scored"
        result = score(flower_csv, output, last)
        assert result.returncode == 0, completed(result)
    finally:
        down = cluster_command("down", directory)
    assert down.returncode == 0, completed(down)
    assert summary(output)["master"] == cluster.url
    pd.testing.assert_frame_equal(scored_rows(output), scored_rows(local_output))
    assert not any(listening(port) for port in cluster.ports)
    assert not any(Path(f"/proc/{pid}").exists() for pid in (cluster.master_pid, cluster.worker_pid))
    assert "nothing to stop" in cluster_command("down", directory).stdout


def test_a_missing_column_is_refused_by_name_before_any_work(spark_python, flower_csv, tmp_path):
    without = tmp_path / "no-petal-width.csv"
    pd.read_csv(flower_csv, dtype=str, nrows=50).drop(columns="petal_width").to_csv(without, index=False)
    result = score(without, tmp_path / "out")
    assert result.returncode != 0
    assert "score: input: missing column petal_width (needed: sepal_length" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_unreadable_input_is_refused_with_its_path(spark_python, tmp_path):
    missing = score(tmp_path / "nowhere.csv", tmp_path / "out")
    assert missing.returncode != 0 and f"score: input {tmp_path / 'nowhere.csv'} does not exist" in missing.stderr
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"sepal_length,sepal_width\n5.1,3.5\n")  # a CSV named .parquet
    result = score(broken, tmp_path / "out")
    assert result.returncode != 0
    assert f"score: input: cannot read {broken} as parquet" in result.stderr, completed(result)
    assert "Traceback" not in result.stderr


def test_an_existing_output_is_never_overwritten(spark_python, flower_csv, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = score(flower_csv, tmp_path / "out")
    assert result.returncode != 0 and "already exists; remove it or choose another OUTPUT" in result.stderr
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_without_java_the_message_names_the_package_to_install(pipeline_ready, flower_csv, tmp_path):
    result = score(flower_csv, tmp_path / "out", env={"JAVA_HOME": str(tmp_path / "no-java")})
    assert result.returncode == 2
    assert "Spark needs Java 17 or newer" in result.stderr
    assert "apt-get install -y openjdk-17-jre-headless" in result.stderr


def test_each_python_worker_loads_the_model_once_however_many_partitions_it_scores(spark_python, flower_csv, tmp_path):
    output = tmp_path / "split"
    small_splits = "spark.sql.files.maxPartitionBytes=32768"  # the 20,000-row file in about 16 partitions
    result = score(flower_csv, output, "SPARK_MASTER=local[2]", f"SPARK_CONF={small_splits}")
    assert result.returncode == 0, completed(result)
    counts = summary(output)
    assert counts["rows_read"] == ROWS and counts["tasks"] >= 10
    assert 1 <= counts["predictor_loads"] <= 3  # two task slots; Spark may start a third worker, not one per task

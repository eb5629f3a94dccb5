"""The prediction log: in-process (its first record through bentoml.monitor), and from a real server under traffic."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import bentoml
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iris_classifier.data.production_log import data_files
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.monitoring.synthetic_traffic import send_traffic, training_flowers
from iris_classifier.serving.prediction_log import PROBABILITY_COLUMNS, ROW_KEYS, PredictionLog, json_lines

FIELDS = {*FEATURES, "species", *PROBABILITY_COLUMNS, "model_version", "timestamp", "request_id", "trace_id"}


def read_records(log_dir: Path, name: str = "iris_predictions") -> list[dict]:
    return [json.loads(line) for path in data_files(log_dir, name) for line in path.read_text().splitlines()]


def wait_for_records(log_dir: Path, count: int, timeout: float = 15) -> list[dict]:
    """The log is written by a background thread about once a second."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = read_records(log_dir)
        if len(records) >= count:
            return records
        time.sleep(0.2)
    raise AssertionError(f"{len(read_records(log_dir))} records logged after {timeout} s, expected {count}")


def test_records_one_line_per_flower_in_bentoml_layout(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_layout")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [0.98, 0.01, 0.01])
    rows = np.array([[6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]])
    log.record_batch(rows, ["versicolor", "virginica"], np.array([[0.0, 0.9, 0.1], [0.0, 0.1, 0.9]]), "17")
    assert log.flush() == 3
    records = read_records(tmp_path, "unit_layout")
    assert [r["species"] for r in records] == ["setosa", "versicolor", "virginica"]
    assert (records[0]["sepal_length"], records[0]["probability_setosa"]) == (5.1, 0.98)
    assert [r["petal_length"] for r in records[1:]] == [4.5, 5.4]
    assert all(set(r) == FIELDS and r["model_version"] == "iris_classifier:test" for r in records)
    assert [r["request_id"] for r in records[1:]] == ["17", "17"]  # one batch request, under the id it was given
    assert records[0]["request_id"].isdigit() and records[0]["request_id"] != "17"  # in-process: a random one
    # one file per host and worker, so replicas on a shared volume never write the same file
    (schema_file,) = (tmp_path / "unit_layout" / "schema").iterdir()
    assert schema_file.name == f"schema.{socket.gethostname()}.0.log"
    assert [path.name for path in data_files(tmp_path, "unit_layout")] == [f"data.{socket.gethostname()}.0.log"]
    schema = json.loads(schema_file.read_text())
    roles = {column["name"]: (column["role"], column["type"]) for column in schema["columns"]}
    assert roles["petal_length"] == ("feature", "numerical") and roles["species"] == ("prediction", "categorical")


JSON_SCALARS = st.one_of(
    st.floats(allow_nan=False),  # NaN and infinities become null in both ways, which the oracle cannot see
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.text(),  # commas, quotes, escapes and non-ASCII: the column falls back to one dumps per value
    st.booleans(),
    st.none(),
)


@settings(max_examples=300, deadline=None)
@given(
    # MonitorBase renames a column called like one of the tail's fields ("timestamp" -> "timestamp_").
    keys=st.lists(
        st.text(min_size=1).filter(lambda key: key not in ("timestamp", "request_id")),
        min_size=1,
        max_size=5,
        unique=True,
    ),
    data=st.data(),
)
def test_column_wise_lines_are_the_bytes_of_one_dumps_per_row(keys, data):
    rows = data.draw(st.integers(min_value=1, max_value=20))
    columns = [data.draw(st.lists(JSON_SCALARS, min_size=rows, max_size=rows)) for _ in keys]
    extras = [{"timestamp": data.draw(st.text()), "request_id": str(number)} for number in range(rows)]
    tails = [b"," + orjson.dumps(extra)[1:] + b"\n" for extra in extras]
    expected = b"".join(
        orjson.dumps({**dict(zip(keys, values, strict=True)), **extra}) + b"\n"
        for values, extra in zip(zip(*columns, strict=True), extras, strict=True)
    )
    # Each column arrives in chunks, as requests queued it: lists, and float arrays from batches.
    chunked = []
    for values in columns:
        cuts = sorted(data.draw(st.sets(st.integers(min_value=1, max_value=rows - 1))) if rows > 1 else [])
        pieces = [values[a:b] for a, b in zip([0, *cuts], [*cuts, rows], strict=True)]
        chunked.append([np.array(piece) if all(type(v) is float for v in piece) else piece for piece in pieces])
    assert json_lines(keys, chunked, tails) == expected


def test_a_record_logged_through_bentoml_monitor_with_other_or_ragged_columns_is_dropped(tmp_path, caplog):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_foreign")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [1.0, 0.0, 0.0], "1")
    # The same monitor, as any code of the process may ask for it.
    with bentoml.monitor("unit_foreign") as same:
        same.log(1.0, "sepal_length", "feature", "numerical")
    with bentoml.monitor("unit_foreign") as same:
        for name in ROW_KEYS:
            same.log_batch([1.0, 2.0] if name == "sepal_length" else [1.0], name, "feature", "numerical")
    log.record([6.0, 2.9, 4.5, 1.5], "versicolor", [0.0, 1.0, 0.0], "2")
    assert log.flush() == 2  # the writer goes on
    assert [r["request_id"] for r in read_records(tmp_path, "unit_foreign")] == ["1", "2"]
    assert "columns ('sepal_length',) are not the log's" in caplog.text
    assert "columns differ in length ([1, 2]); dropped" in caplog.text


def test_the_first_record_of_a_batch_teaches_the_columns_and_the_rest_follow_in_order(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_first_batch")
    rows = np.array([[6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1], [5.1, 3.5, 1.4, 0.2]])
    probabilities = np.array([[0.0, 0.9, 0.1], [0.0, 0.1, 0.9], [1.0, 0.0, 0.0]])
    log.record_batch(rows, ["versicolor", "virginica", "setosa"], probabilities, "7")
    log.record_batch(rows[:1], ["versicolor"], probabilities[:1], "8")
    assert log.flush() == 4
    records = read_records(tmp_path, "unit_first_batch")
    assert [[r[name] for name in FEATURES] for r in records] == [*rows.tolist(), rows[0].tolist()]
    assert [r["probability_virginica"] for r in records] == [0.1, 0.9, 0.0, 0.1]
    assert [r["request_id"] for r in records] == ["7", "7", "7", "8"]


def test_single_flowers_and_batches_interleaved_keep_their_order_and_values(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_order")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [0.98, 0.01, 0.01])  # teaches the columns (bentoml.monitor)
    log.record([5.0, 3.4, 1.5, 0.3], "setosa", [0.97, 0.02, 0.01])  # rows from here on
    log.record_batch(np.array([[6.0, 2.9, 4.5, 1.5], [6.9, 3.1, 5.4, 2.1]]), ["versicolor", "virginica"],
                     np.array([[0.0, 0.9, 0.1], [0.0, 0.1, 0.9]]))  # fmt: skip
    log.record([6.3, 3.3, 6.0, 2.5], "virginica", [0.0, 0.05, 0.95])
    assert log.flush() == 5
    records = read_records(tmp_path, "unit_order")
    assert [(r["sepal_length"], r["species"], r["probability_virginica"]) for r in records] == [
        (5.1, "setosa", 0.01), (5.0, "setosa", 0.01), (6.0, "versicolor", 0.1), (6.9, "virginica", 0.9),
        (6.3, "virginica", 0.95),
    ]  # fmt: skip
    assert all(set(r) == FIELDS and r["model_version"] == "iris_classifier:test" for r in records)


def test_a_record_with_a_value_missing_is_refused_naming_the_columns(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_short")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [0.98, 0.01, 0.01])
    with pytest.raises(ValueError, match=r"a record has 9 values \(sepal_length, .*, model_version\); got 8"):
        log.record([5.1, 3.5, 1.4], "setosa", [0.98, 0.01, 0.01])
    with pytest.raises(ValueError, match=r"a batch of 2 species needs rows of shape \(2, 4\) .* got \(1, 4\)"):
        log.record_batch(np.array([[5.1, 3.5, 1.4, 0.2]]), ["setosa", "setosa"], np.array([[1.0, 0.0, 0.0]] * 2))
    assert log.flush() == 1


def test_switched_off_writes_nothing(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=False, name="unit_off")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [1.0, 0.0, 0.0])
    assert log.flush() == 0
    assert not any(tmp_path.iterdir())


def test_an_unwritable_folder_drops_records_says_so_once_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    log = PredictionLog("iris_classifier:test", log_dir=blocker, enabled=True, name="unit_unwritable")
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [1.0, 0.0, 0.0])  # no exception on the request path
    log.record_batch(np.array([[6.0, 2.9, 4.5, 1.5]] * 2), ["versicolor"] * 2, np.array([[0.0, 1.0, 0.0]] * 2))
    assert (log.flush(), log.dropped) == (0, 3)  # all three flowers were queued, and none written
    log.record([5.1, 3.5, 1.4, 0.2], "setosa", [1.0, 0.0, 0.0])
    assert (log.flush(), log.dropped) == (0, 4)
    assert caplog.text.count("cannot write under") == 1
    assert blocker.read_text() == "not a folder"


def test_rotates_by_size_and_keeps_every_record_readable(tmp_path):
    log = PredictionLog("iris_classifier:test", log_dir=tmp_path, enabled=True, name="unit_rotate", max_bytes=2000)
    for batch in range(5):
        for _ in range(10):
            log.record([5.1, 3.5, 1.4, 0.2 + batch / 10], "setosa", [1.0, 0.0, 0.0])
        log.flush()
    files = data_files(tmp_path, "unit_rotate")
    assert len(files) > 1 and any(path.name.endswith(".log.1") for path in files)
    assert len(read_records(tmp_path, "unit_rotate")) == 50


def test_the_service_logs_every_classified_flower_and_no_refused_one(logged_server):
    flowers = training_flowers(60, seed=3)
    statuses = send_traffic(logged_server.url, flowers, bad_every=10, batch_size=20)
    assert statuses == {"200": 60, "400": 6, "batch 200": 3}, statuses
    records = wait_for_records(logged_server.log_dir, 120)
    assert len(records) == 120  # 60 single + 60 in batches; the 6 refused requests are not logged
    logged = [[r[name] for name in FEATURES] for r in records]
    sent = [[f[name] for name in FEATURES] for f in flowers]
    assert logged[:60] == sent and logged[60:] == sent
    ids = [record["request_id"] for record in records]  # taken from the request's context when it was queued
    assert "None" not in ids and len(set(ids[:60])) == 60  # a request each
    assert [len(set(ids[start : start + 20])) for start in (60, 80, 100)] == [1, 1, 1] and len(set(ids[60:])) == 3
    model = logged_server_model_version(logged_server.url)
    for record in records:
        assert record["species"] in SPECIES and record["model_version"] == model
        assert abs(sum(record[c] for c in PROBABILITY_COLUMNS) - 1) < 1e-6
        assert max(PROBABILITY_COLUMNS, key=record.get) == f"probability_{record['species']}"


def logged_server_model_version(url: str) -> str:
    import requests

    return requests.get(f"{url}/model", timeout=10).json()["tag"]

"""The label store behind POST /feedback: durable, idempotent, one species per flower, bounded memory."""

from __future__ import annotations

import os
import threading
import time

import pytest
from prometheus_client import CollectorRegistry, Counter

from iris_classifier.data.production_log import label_files, read_label_lines
from iris_classifier.domain.schema import Label
from iris_classifier.serving.feedback import (
    Feedback,
    LabelConflict,
    LabelStore,
    RateLimiter,
    RecentPredictions,
    authorized,
)


def label(request_id: str, species: str, index: int = 0) -> Label:
    return Label(request_id=request_id, species=species, index=index)


def counters() -> tuple[Counter, Counter]:
    registry = CollectorRegistry()
    labelled = Counter("labels", "", ["predicted", "actual", "correct"], registry=registry)
    rejected = Counter("rejected", "", ["reason"], registry=registry)
    return labelled, rejected


def test_an_accepted_label_is_on_disk_and_a_new_store_on_the_folder_knows_it(tmp_path):
    store = LabelStore(tmp_path)
    assert store.record([label("r1", "virginica")], ["versicolor"]) == [True]
    (path,) = label_files(tmp_path)
    records = list(read_label_lines(path))
    assert [(r["request_id"], r["index"], r["species"], r["predicted"]) for r in records] == [
        ("r1", 0, "virginica", "versicolor")
    ]
    restarted = LabelStore(tmp_path)  # a restart, or another process on the same volume
    assert restarted.known("r1", 0) == "virginica"
    assert restarted.record([label("r1", "virginica")], [None]) == [False]  # idempotent: nothing written
    with pytest.raises(LabelConflict, match=r"request_id 'r1' index 0 is already labelled 'virginica', not 'setosa'"):
        restarted.record([label("r1", "setosa")], [None])
    assert sum(1 for file in label_files(tmp_path) for _ in read_label_lines(file)) == 1


def test_a_batch_is_recorded_whole_or_not_at_all(tmp_path):
    store = LabelStore(tmp_path)
    store.record([label("r1", "setosa", 3)], [None])
    with pytest.raises(LabelConflict):
        store.record([label("r2", "setosa"), label("r1", "virginica", 3)], [None, None])
    assert store.known("r2", 0) is None
    with pytest.raises(LabelConflict, match="not 'virginica'"):  # two labels for one flower in one batch
        store.record([label("r3", "setosa"), label("r3", "virginica")], [None, None])
    assert store.record([label("r2", "setosa"), label("r1", "setosa", 3)], [None, None]) == [True, False]


def test_a_torn_last_line_from_a_crash_is_skipped(tmp_path):
    store = LabelStore(tmp_path)
    store.record([label("r1", "setosa")], [None])
    with open(store.path, "ab") as handle:
        handle.write(b'{"request_id": "r2", "ind')
    assert [r["request_id"] for r in read_label_lines(store.path)] == ["r1"]
    assert LabelStore(tmp_path).known("r2", 0) is None


def test_each_process_writes_its_own_file(tmp_path):
    store = LabelStore(tmp_path)
    assert store.path.name == f"labels.{os.uname().nodename}.{os.getpid()}.jsonl"


def test_recent_predictions_forget_the_oldest_requests_first():
    recent = RecentPredictions(max_flowers=5)
    recent.remember("a", ["setosa"])
    recent.remember("b", ["versicolor", "virginica", "setosa"])
    assert recent.predicted("b", 1) == "virginica" and recent.predicted("a", 0) == "setosa"
    recent.remember("c", ["setosa", "setosa"])  # 6 flowers: "a" goes
    assert recent.predicted("a", 0) is None
    assert recent.predicted("c", 1) == "setosa"
    assert recent.predicted("c", 2) is None  # no such row


class Answered(list):
    """A request's species that lets other threads run whenever its length is asked (as a GIL switch may)."""

    def __len__(self) -> int:
        time.sleep(0)
        return super().__len__()


def test_recent_predictions_stay_consistent_when_written_from_many_threads():
    """The event loop (/classify) and worker threads (/classify_batch, V2 infer) remember at once: the count of
    flowers must stay the sum of what is remembered, and forgetting must never find the dict emptied under it."""
    recent = RecentPredictions(max_flowers=1_000)
    errors: list[BaseException] = []

    def writer(thread: int) -> None:
        try:
            for request in range(500):
                recent.remember(f"{thread}-{request}", Answered(["setosa"] * (1 + request % 7)))
        except BaseException as error:  # an unlocked popitem() on a dict another thread emptied
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    remembered = sum(len(species) for species in recent._species.values())
    assert recent.flowers == remembered <= 1_000


def test_the_rate_limit_is_per_source_and_says_how_long_to_wait():
    limiter = RateLimiter(rate=10, burst=20)
    assert limiter.take("10.0.0.1", 20) == 0
    wait = limiter.take("10.0.0.1", 5)
    assert 0.4 < wait <= 0.5  # 5 labels at 10/s
    assert limiter.take("10.0.0.2", 5) == 0  # another source has its own bucket


def test_the_token_is_checked_only_when_configured():
    assert authorized(None, None)
    assert authorized("Bearer anything", "")
    assert authorized("Bearer s3cret", "s3cret")
    assert authorized("bearer s3cret", "s3cret")
    assert not authorized(None, "s3cret")
    assert not authorized("Bearer wrong", "s3cret")
    assert not authorized("Basic s3cret", "s3cret")


def test_feedback_says_whether_the_remembered_prediction_was_right_and_counts_it(tmp_path):
    labelled, rejected = counters()
    feedback = Feedback(LabelStore(tmp_path), RecentPredictions(), RateLimiter(10, 100), None, labelled, rejected)
    feedback.recent.remember("r1", ["versicolor", "virginica"])
    answers = feedback.accept([label("r1", "virginica", 0), label("r1", "virginica", 1), label("gone", "setosa")])
    assert [(a.predicted, a.correct, a.recorded) for a in answers] == [
        ("versicolor", False, True),
        ("virginica", True, True),
        (None, None, True),
    ]
    assert labelled.labels(predicted="versicolor", actual="virginica", correct="false")._value.get() == 1
    assert labelled.labels(predicted="unknown", actual="setosa", correct="unknown")._value.get() == 1
    feedback.accept([label("r1", "virginica", 1)])  # the same label again: not counted twice
    assert labelled.labels(predicted="virginica", actual="virginica", correct="true")._value.get() == 1
    with pytest.raises(LabelConflict):
        feedback.accept([label("r1", "setosa", 1)])
    assert rejected.labels(reason="conflict")._value.get() == 1

"""In-process latency of the model call: scikit-learn pipeline vs the ONNX session's trees vs the fast path
(the same session's votes as a lookup table, model/grid.py), alternated.

Run with `make bench-model`. Prints a table of medians and p99s in microseconds, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from iris_classifier.domain.schema import FEATURES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.model.store import ensure_model


def time_calls(predict, rows: np.ndarray, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter_ns()
        predict(rows)
        samples.append((time.perf_counter_ns() - started) / 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def measure(rounds: int = 3, calls: dict[int, int] | None = None) -> list[dict]:
    model = ensure_model()
    contenders = {
        "sklearn pipeline": Predictor.from_dir(Path(model.path), prefer="sklearn"),
        "onnx trees": Predictor.from_dir(Path(model.path), prefer="onnx-trees"),
        "onnx fast path": Predictor.from_dir(Path(model.path), prefer="onnx"),
    }
    calls = calls or {1: 300, 1000: 100, 10_000: 20}
    rng = np.random.default_rng(0)
    results = []
    for batch, count in calls.items():
        ranges = model.info.metadata["feature_ranges_cm"]
        low, high = zip(*(ranges[name] for name in FEATURES), strict=True)
        rows = rng.uniform(low, high, size=(batch, len(FEATURES)))
        samples: dict[str, list[float]] = {name: [] for name in contenders}
        for predictor in contenders.values():  # warm-up
            time_calls(predictor.predict_proba, rows, 20)
        for _ in range(rounds):  # alternate A B A B so drift on a shared machine hits both
            for name, predictor in contenders.items():
                samples[name] += time_calls(predictor.predict_proba, rows, count)
        for name, values in samples.items():
            results.append(
                {
                    "contender": name,
                    "rows": batch,
                    "median_us": statistics.median(values),
                    "p99_us": percentile(values, 99),
                    "us_per_row": statistics.median(values) / batch,
                }
            )
    return results


def render(results: list[dict]) -> str:
    lines = ["| contender | rows per call | median (us) | p99 (us) | us per row |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(
            f"| {r['contender']} | {r['rows']} | {r['median_us']:.1f} | {r['p99_us']:.1f} | {r['us_per_row']:.3f} |"
        )
    for batch in sorted({r["rows"] for r in results}):
        pair = {r["contender"]: r["median_us"] for r in results if r["rows"] == batch}
        fast = pair["onnx fast path"]
        lines.append(
            f"\n{batch:,} row(s): the fast path is {pair['sklearn pipeline'] / fast:.0f}x faster than the sklearn "
            f"pipeline and {pair['onnx trees'] / fast:.1f}x faster than the session's trees (medians)"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print(render(measure(rounds=args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

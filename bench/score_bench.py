"""Offline scoring benchmark, contenders alternated in one run: `make bench-score` (issue #34).

The same CSV of flowers (1,000,000 and 10,000,000 rows, one bad row in 1,000) scored four ways, wall time from
the command's start to its output written:
  spark-local    `make score`'s job (iris_classifier.scoring.job) with SPARK_MASTER=local[*], JVM start included
  spark-cluster  the same job on the standalone cluster of `make spark-up` (started once, before the rounds)
  python         one plain Python process: pandas reads the CSV, score_batch (the job's own function) answers it
                 in chunks of 1,000,000 rows, pyarrow writes Parquet; the one-machine ceiling
  http           /classify_batch of this commit's Bento (`make serve`), 10,000 valid flowers per request over 4
                 connections (bad rows are refused by the client's own check first: the API refuses a whole
                 batch for one bad flower), answers written as Parquet
Writes its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.report import write_section
from iris_classifier.project.paths import ROOT

CONTENDERS = ("spark-local", "spark-cluster", "python", "http")
CHUNK_ROWS = 1_000_000
HTTP_BATCH = 10_000
HTTP_CONNECTIONS = 4


def python_reference(source: Path, output: Path, model_dir: Path, model_tag: str) -> int:
    """The `python` contender's body (run in its own process): CSV -> score_batch -> Parquet."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from iris_classifier.model.pipeline import Predictor
    from iris_classifier.scoring.batch import score_batch

    predictor = Predictor.from_dir(model_dir)
    output.mkdir(parents=True)
    writer = None
    rows = 0
    for chunk in pd.read_csv(source, dtype=str, keep_default_na=False, chunksize=CHUNK_ROWS):
        scored = pa.Table.from_pandas(score_batch(chunk, predictor, model_tag), preserve_index=False)
        writer = writer or pq.ParquetWriter(output / "part-0.parquet", scored.schema)
        writer.write_table(scored)
        rows += len(chunk)
    if writer:
        writer.close()
    return rows


def http_reference(source: Path, output: Path, url: str) -> int:
    """The `http` contender's body: valid flowers to /classify_batch in chunks, answers as Parquet."""
    import numpy as np
    import orjson
    import pandas as pd
    import requests

    from iris_classifier.domain.measurements import check_measurements
    from iris_classifier.domain.schema import FEATURES, SPECIES

    table = pd.read_csv(source, dtype=str, keep_default_na=False)
    checked = check_measurements(table)
    values = checked.values[checked.valid]
    sessions: dict[int, requests.Session] = {}

    def classify(start: int) -> tuple[list[str], np.ndarray]:
        import threading

        session = sessions.setdefault(threading.get_ident(), requests.Session())
        rows = values[start : start + HTTP_BATCH].tolist()
        body = orjson.dumps({"flowers": [dict(zip(FEATURES, row, strict=True)) for row in rows]})
        answer = session.post(f"{url}/classify_batch", data=body, headers={"content-type": "application/json"})
        answer.raise_for_status()
        answers = orjson.loads(answer.content)
        probabilities = np.array([[row["probabilities"][name] for name in SPECIES] for row in answers])
        return [row["species"] for row in answers], probabilities

    with ThreadPoolExecutor(HTTP_CONNECTIONS) as pool:
        chunks = list(pool.map(classify, range(0, len(values), HTTP_BATCH)))
    frame = pd.DataFrame(np.concatenate([p for _, p in chunks]), columns=[f"probability_{name}" for name in SPECIES])
    frame.insert(0, "species", [name for species, _ in chunks for name in species])
    output.mkdir(parents=True)
    frame.to_parquet(output / "part-0.parquet")
    return len(table)


def settings_sweep(source: Path, model_dir: Path, model_tag: str) -> str:
    """bench/score_settings.py's table, run with .venv-spark's Python."""
    from iris_classifier.scoring.spark_env import spark_environment, spark_venv

    python = spark_venv()
    command = [str(python), "-m", "bench.score_settings", str(source), str(model_dir), model_tag]
    result = subprocess.run(command, cwd=ROOT, env=spark_environment(python), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"score_settings failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip()


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:6])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return seconds


def render(results: dict[int, dict[str, list[float]]], notes: dict[str, str]) -> str:
    lines = [
        "## Offline scoring on Spark (`make bench-score`, issue #34)",
        "",
        f"Made by `make bench-score` (`bench/score_bench.py`) on {notes['date']}: {notes['rounds']}, contenders "
        f"alternated in each round. Load average before / after: {notes['load_before']} / {notes['load_after']} "
        f"(the machine is shared: compare ratios). Input: a CSV of made-up flowers "
        "(`python -m iris_classifier.scoring.flower_files`), one bad row in 1,000; output Parquet. Wall time "
        "from the command's start to its output written (the JVM's start included for Spark; the cluster was "
        f"started once before the rounds: `make spark-up` took {notes['cluster_up']} s).",
        "",
        "| rows | contender | wall s (median) | rows/s | vs spark-local |",
        "|---:|---|---:|---:|---:|",
    ]
    for rows, by_contender in results.items():
        local = statistics.median(by_contender["spark-local"])
        for name in CONTENDERS:
            if not by_contender.get(name):
                continue
            wall = statistics.median(by_contender[name])
            runs = ", ".join(f"{s:.1f}" for s in by_contender[name])
            lines.append(f"| {rows:,} | {name} ({runs}) | {wall:.1f} | {rows / wall:,.0f} | {wall / local:.2f}x |")
    sizes = sorted(results)
    lines += [
        "",
        "Goals (2 cores): 1,000,000 rows in at most 30 s wall; 10,000,000 in at most 8x that; faster than HTTP.",
    ]
    if len(sizes) == 2:
        small, big = (statistics.median(results[size]["spark-local"]) for size in sizes)
        lines.append(
            f"Measured, local mode: {small:.1f} s for {sizes[0]:,}; {big:.1f} s for {sizes[1]:,} ({big / small:.1f}x)."
        )
    if notes.get("settings"):
        lines += [
            "",
            f"Settings, {min(sizes):,} rows in one local[*] session (`bench/score_settings.py`, alternated, after a "
            "warm-up run; the job's JVM and Python workers already started, so these are the job's own seconds):",
            "",
            notes["settings"],
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--rounds", type=int, default=2, help="rounds for the smaller size (the largest: one)")
    parser.add_argument("--python-reference", nargs=4, metavar=("CSV", "OUT", "MODEL_DIR", "TAG"))
    parser.add_argument("--http-reference", nargs=3, metavar=("CSV", "OUT", "URL"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--no-settings", action="store_true", help="skip the settings sweep (bench/score_settings.py)")
    args = parser.parse_args(argv)
    if args.python_reference:
        source, out, model_dir, tag = args.python_reference
        print(python_reference(Path(source), Path(out), Path(model_dir), tag))
        return 0
    if args.http_reference:
        source, out, url = args.http_reference
        print(http_reference(Path(source), Path(out), url))
        return 0

    from iris_classifier.harness.servers import Server
    from iris_classifier.registry.bento import bento_tag
    from iris_classifier.scoring import cluster
    from iris_classifier.scoring.flower_files import flowers
    from iris_classifier.scoring.model_choice import choose

    model = choose()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="score-bench-"))
    load_before = os.getloadavg()
    server = Server(bento_tag(), log_path=work / "serve.log").start()
    started = time.monotonic()
    try:
        running = cluster.start(work / "cluster")
    except BaseException:
        server.stop()
        raise
    cluster_up = time.monotonic() - started
    results: dict[int, dict[str, list[float]]] = {}
    settings = ""
    try:
        for size in sizes:
            source = work / f"flowers-{size}.csv"
            flowers(size, bad_every=1000).to_csv(source, index=False)
            results[size] = {name: [] for name in CONTENDERS}
            for round_number in range(args.rounds if size != max(sizes) else 1):
                for name in CONTENDERS:
                    out = work / f"out-{size}-{name}-{round_number}"
                    job = [
                        sys.executable,
                        "-m",
                        "iris_classifier.scoring.job",
                        "--input",
                        str(source),
                        "--output",
                        str(out),
                    ]
                    command = {
                        "spark-local": job,
                        "spark-cluster": [*job, "--master", running.url],
                        "python": [
                            sys.executable,
                            "-m",
                            "bench.score_bench",
                            "--python-reference",
                            str(source),
                            str(out),
                            str(model.path),
                            model.tag,
                        ],
                        "http": [
                            sys.executable,
                            "-m",
                            "bench.score_bench",
                            "--http-reference",
                            str(source),
                            str(out),
                            server.url,
                        ],
                    }[name]
                    seconds = timed(command)
                    results[size][name].append(seconds)
                    print(f"score-bench: {size:,} rows, {name}: {seconds:.1f} s", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
            if size == min(sizes) and not args.no_settings:
                settings = settings_sweep(source, model.path, model.tag)
            source.unlink()
    finally:
        server.stop()
        cluster.stop(running)
    notes = {
        "date": dt.date.today().isoformat(),
        "rounds": f"{args.rounds} rounds at {min(sizes):,} rows, 1 at {max(sizes):,}",
        "load_before": " ".join(f"{v:.1f}" for v in load_before),
        "load_after": " ".join(f"{v:.1f}" for v in os.getloadavg()),
        "cluster_up": f"{cluster_up:.0f}",
        "settings": settings,
    }
    text = render(results, notes)
    print(text)
    if not args.no_write:
        write_section("score-bench", text)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Spark settings that matter for the scoring job, measured in one local session, alternated: the Arrow batch
(spark.sql.execution.arrow.maxRecordsPerBatch) and the input split (spark.sql.files.maxPartitionBytes, so the
number of partitions). Run by `make bench-score` with .venv-spark's Python; its table goes into the section.

    .venv-spark/bin/python -m bench.score_settings CSV MODEL_DIR MODEL_TAG [--rounds 2]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from iris_classifier.scoring.spark_env import LOOPBACK_CONF
from iris_classifier.scoring.spark_job import score, session

BATCHES = (1_000, 10_000, 100_000)
SPLITS = {"2 (128 MB splits: one per core)": "128m", "8 (3 MB splits)": "3m"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("csv", type=Path)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("model_tag")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    spark = session("local[*]", {**LOOPBACK_CONF, "spark.log.level": "ERROR", "spark.ui.showConsoleProgress": "false"})
    work = Path(tempfile.mkdtemp(prefix="score-settings-"))
    settings = [(batch, split) for split in SPLITS for batch in BATCHES]
    seconds: dict[tuple[int, str], list[float]] = {setting: [] for setting in settings}
    try:
        score(
            spark,
            input_path=str(args.csv),
            output=str(work / "warm-up"),
            model_dir=args.model_dir,
            model_tag=args.model_tag,
        )
        for round_number in range(args.rounds):
            for batch, split in settings:
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch))
                spark.conf.set("spark.sql.files.maxPartitionBytes", SPLITS[split])
                output = work / f"{batch}-{SPLITS[split]}-{round_number}"
                started = time.monotonic()
                score(
                    spark,
                    input_path=str(args.csv),
                    output=str(output),
                    model_dir=args.model_dir,
                    model_tag=args.model_tag,
                )
                seconds[(batch, split)].append(time.monotonic() - started)
                shutil.rmtree(output)
    finally:
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("| partitions | Arrow batch (rows) | seconds (median; runs) |")
    print("|---|---:|---:|")
    for batch, split in settings:
        runs = seconds[(batch, split)]
        print(f"| {split} | {batch:,} | {statistics.median(runs):.1f} ({', '.join(f'{s:.1f}' for s in runs)}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Spark part of the scoring job: read the input, score it batch by batch on the executors, write it out.

`make score` runs it in .venv-spark (iris_classifier/scoring/job.py chooses the model first); on a cluster it is
the application spark-submit runs (docs/scoring.md). It is told the model's folder, not the registry: the driver
reads the files the ONNX fast path needs and broadcasts them, and each executor's Python worker loads the
service's Predictor from them once and scores Arrow batches with `score_arrow` (batch.py), as Arrow: the user's
columns go back to the JVM as they came, without a pandas copy.

    python -m iris_classifier.scoring.spark_job --input PATH --output DIR --model-dir DIR --model-tag TAG
        [--format parquet|csv] [--input-format auto|csv|parquet] [--master local[*]] [--conf key=value ...]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from py4j.protocol import Py4JJavaError
from pyspark import SparkContext
from pyspark.errors import PySparkException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.types import DoubleType, StringType, StructField, StructType

from iris_classifier.model.files import FAST_PATH_FILES, ONNX_FILE, SCALER_FILE
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.batch import score_arrow
from iris_classifier.scoring.columns import PROBABILITY_COLUMNS, InputColumnsError, check_input_columns
from iris_classifier.scoring.locations import FORMATS, SUMMARY_FILE, InputError, input_format, local_columns, local_path


def model_files(folder: Path) -> dict[str, bytes]:
    """The files of a store entry the predictor needs (grid.json only when the model has one)."""
    files = {name: (folder / name).read_bytes() for name in FAST_PATH_FILES if (folder / name).exists()}
    for name in (ONNX_FILE, SCALER_FILE):
        if name not in files:
            raise InputError(f"model: {folder} has no {name}; the job scores with the ONNX fast path")
    return files


def files_key(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name])
    return digest.hexdigest()[:16]


# One Predictor per Python worker process and model: Spark reuses its Python workers across tasks. (This holds
# because score_partition travels by reference, as a function of this module: see the end of the file.)
_PREDICTORS: dict[str, Predictor] = {}
COUNTS = ("rows_read", "rows_refused", "tasks", "predictor_loads")


def predictor_for(key: str, files: Any, loads: Any) -> Predictor:
    if key not in _PREDICTORS:
        _PREDICTORS[key] = Predictor.from_dir(model_folder(key, files.value))  # the lookup table is built here, once
        loads.add(1)
    return _PREDICTORS[key]


def model_folder(key: str, files: dict[str, bytes]) -> Path:
    """The broadcast files in a folder of the machine's temp dir, one per model and user (so runs and workers
    share it, and nothing piles up): written to a fresh folder, then renamed into place, so a worker never
    reads a half-written one."""
    folder = Path(tempfile.gettempdir()) / f"iris-model-{os.getuid()}-{key}"
    if not folder.exists():
        draft = Path(tempfile.mkdtemp(prefix=f"{folder.name}-", dir=folder.parent))
        for name, content in files.items():
            (draft / name).write_bytes(content)
        try:
            draft.rename(folder)
        except OSError:  # another worker put it there first
            shutil.rmtree(draft, ignore_errors=True)
    return folder


def score_partition(
    batches: Iterator[pa.RecordBatch], *, files: Any, key: str, model_tag: str, counts: dict[str, Any]
) -> Iterator[pa.RecordBatch]:
    """mapInArrow's function: each Arrow batch of a partition through `score_arrow`, counted."""
    counts["tasks"].add(1)
    predictor = predictor_for(key, files, counts["predictor_loads"])
    rows_read, rows_refused = counts["rows_read"], counts["rows_refused"]
    for batch in batches:
        scored = score_arrow(batch, predictor, model_tag)
        rows_read.add(batch.num_rows)
        rows_refused.add(batch.num_rows - scored.column("error").null_count)
        yield scored


def output_schema(schema: StructType) -> StructType:
    added = [StructField("species", StringType())]
    added += [StructField(name, DoubleType()) for name in PROBABILITY_COLUMNS]
    added += [StructField("model_version", StringType()), StructField("error", StringType())]
    return StructType([*schema.fields, *added])


def read(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    """CSV with a header, every column as text (passed through unchanged; measurements parsed by the job), or
    Parquet as typed. Errors (no such path, not that format) as InputError.

    A local CSV's header is read here and given to Spark as the schema, so Spark runs no job of its own to find
    it (the job's first, and with a cold JVM its slowest, second or more); Spark still checks each file's
    header against it (enforceSchema off). Other paths, and headers Spark would rename (empty or repeated
    names), are left to Spark's header inference.
    """
    folder = local_path(path)
    if folder is not None and not folder.exists():
        raise InputError(f"input: {path} does not exist")
    try:
        if fmt == "csv":
            reader = spark.read.options(header=True, inferSchema=False, mode="PERMISSIVE")
            header = local_columns(path, fmt)
            if header and all(header) and len(set(header)) == len(header):
                text = StructType([StructField(name, StringType()) for name in header])
                reader = reader.schema(text).option("enforceSchema", False)
            return reader.csv(path)
        return spark.read.parquet(path)
    except SPARK_ERRORS as error:
        raise InputError(f"input: cannot read {path} as {fmt}: {first_line(error)}") from None


# What a failed Spark call raises in Python: its own errors, or the JVM's exception wrapped by py4j.
SPARK_ERRORS = (PySparkException, Py4JJavaError)


def first_line(error: BaseException) -> str:
    """The first line of the error Spark reports (the JVM's own message for a wrapped Java exception)."""
    text = str(error.java_exception.getMessage()) if isinstance(error, Py4JJavaError) else str(error)
    return text.strip().splitlines()[0] if text.strip() else type(error).__name__


def write_text(spark: SparkSession, path: str, text: str) -> None:
    """A small file at any path Spark writes to (local, s3a://, hdfs://), through Hadoop's FileSystem."""
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    stream = target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()).create(target, True)
    try:
        stream.write(bytearray(text.encode()))
    finally:
        stream.close()


def score(
    spark: SparkSession,
    *,
    input_path: str,
    output: str,
    model_dir: Path,
    model_tag: str,
    fmt: str = "parquet",
    in_format: str = "auto",
    registry_version: str | None = None,
) -> dict[str, Any]:
    """Read, check the columns, score, write, count: the summary written to OUTPUT/_summary.json."""
    started = time.monotonic()
    files = model_files(model_dir)
    in_format = input_format(input_path, in_format)
    frame = read(spark, input_path, in_format)
    check_input_columns(frame.columns)  # before any work
    # Counted as the rows pass: reading, scoring and writing are one stage (no shuffle), the job's result stage,
    # whose accumulator updates Spark applies once per partition, however often a task is retried.
    # tasks and predictor_loads show that each Python worker loads the model once, however many partitions
    # it scores (tests/scoring/test_spark_job.py).
    counts = {name: spark.sparkContext.accumulator(0) for name in COUNTS}
    function = functools.partial(
        score_partition,
        files=spark.sparkContext.broadcast(files),
        key=files_key(files),
        model_tag=model_tag,
        counts=counts,
    )
    scored = frame.mapInArrow(function, schema=output_schema(frame.schema))
    writer = scored.write.mode("errorifexists")
    try:
        if fmt == "csv":
            writer.option("header", True).csv(output)
        else:
            writer.parquet(output)
    except SPARK_ERRORS as error:
        if "PATH_ALREADY_EXISTS" in str(error):
            raise InputError(f"output: {output} already exists; remove it or choose another OUTPUT") from None
        raise InputError(f"the job failed: {first_line(error)}") from None
    summary = {
        "input": input_path,
        "input_format": in_format,
        "output": output,
        "format": fmt,
        "model_version": model_tag,
        "registry_version": registry_version,
        "master": spark.sparkContext.master,
        "rows_read": counts["rows_read"].value,
        "rows_scored": counts["rows_read"].value - counts["rows_refused"].value,
        "rows_refused": counts["rows_refused"].value,
        "tasks": counts["tasks"].value,
        "predictor_loads": counts["predictor_loads"].value,
        "seconds": round(time.monotonic() - started, 2),
    }
    write_text(spark, output.rstrip("/") + "/" + SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
    return summary


def session(master: str | None, conf: dict[str, str]) -> SparkSession:
    """The job's session; without `master`, spark-submit's (or local[*] when run by plain Python)."""
    builder = SparkSession.builder.appName("iris-score")
    if master:
        builder = builder.master(master)
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def stop(spark: SparkSession) -> None:
    """Stop the session and wait for its JVM to end (it does when its stdin closes), so the job's processes end
    with it, and a class archive the JVM writes at exit (spark_env.ClassArchive) is whole when the job returns."""
    gateway = SparkContext._gateway
    spark.stop()
    process = getattr(gateway, "proc", None)
    if process is not None and process.stdin is not None:
        process.stdin.close()
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:  # a JVM that does not end is not left behind
            process.kill()


def parse_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator:
            raise SystemExit(f"score: --conf {pair!r} is not key=value")
        conf[key] = value
    return conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="a CSV or Parquet file, or a folder of them; any Spark path")
    parser.add_argument("--output", required=True, help="a folder that does not exist yet (Spark's part files)")
    parser.add_argument("--format", choices=FORMATS, default="parquet", help="of the output (csv: with a header)")
    parser.add_argument("--input-format", choices=("auto", *FORMATS), default="auto")
    parser.add_argument("--model-dir", type=Path, required=True, help="the model's store entry (model.onnx, ...)")
    parser.add_argument("--model-tag", required=True, help="the model's store tag: the model_version column")
    parser.add_argument("--registry-version", default=None, help="the registry version, for the summary")
    parser.add_argument("--master", default=None, help="local[*] (default when not set by spark-submit), spark://...")
    parser.add_argument("--conf", action="append", default=[], help="a Spark setting key=value (repeatable)")
    args = parser.parse_args(argv)
    conf = parse_conf(args.conf)
    # The Arrow batch each call of the function gets; also set by --conf.
    conf.setdefault("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
    conf.setdefault("spark.ui.showConsoleProgress", "false")  # a progress bar redrawn in a log is noise
    conf.setdefault("spark.log.level", "ERROR")
    try:
        model_files(args.model_dir)  # a missing model is said before Spark starts
    except (InputError, OSError) as error:
        print(f"score: {error}", file=sys.stderr)
        return 1
    spark = session(args.master, conf)
    try:
        summary = score(
            spark,
            input_path=args.input,
            output=args.output,
            model_dir=args.model_dir,
            model_tag=args.model_tag,
            fmt=args.format,
            in_format=args.input_format,
            registry_version=args.registry_version,
        )
    except (InputError, InputColumnsError) as error:
        print(f"score: {error}", file=sys.stderr)
        return 1
    finally:
        stop(spark)
    print(
        f"score: {summary['rows_read']:,} rows read, {summary['rows_scored']:,} scored, "
        f"{summary['rows_refused']:,} refused (errors in the `error` column); model {summary['model_version']}"
        + (f" ({summary['registry_version']})" if summary["registry_version"] else "")
        + f"; {summary['output']} ({summary['format']}, summary in {SUMMARY_FILE}); {summary['seconds']} s"
    )
    return 0


if __name__ == "__main__":
    # Run as the module, not as __main__: Spark's cloudpickle sends a function of __main__ by value, with a copy
    # of _PREDICTORS in each task, so every partition would load the model again.
    from iris_classifier.scoring import spark_job

    sys.exit(spark_job.main())

"""`make score`: check what Spark needs, choose the model, then run the Spark job (spark_job.py) in .venv-spark.

    python -m iris_classifier.scoring.job --input PATH --output DIR [--format parquet|csv]
        [--input-format auto|csv|parquet] [--stage production|staging | --version x.y.z] [--master local[*]|spark://...]
        [--conf key=value ...]

This part runs in the project's venv (the registry, DVC and the BentoML store live there); the job itself
gets the model's folder and tag, so it needs neither BentoML nor git.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from iris_classifier.registry.versions import Refused
from iris_classifier.scoring.columns import InputColumnsError, check_input_columns
from iris_classifier.scoring.locations import FORMATS, InputError, input_format, local_columns, local_path
from iris_classifier.scoring.model_choice import choose
from iris_classifier.scoring.spark_env import (
    LOOPBACK_CONF,
    ClassArchive,
    SparkUnavailable,
    class_archive,
    require_java,
    spark_environment,
    spark_venv,
)


def job_command(
    python: Path, args: argparse.Namespace, model: dict[str, str], archive: ClassArchive | None = None
) -> list[str]:
    command = [str(python), "-m", "iris_classifier.scoring.spark_job", "--input", args.input, "--output", args.output]
    command += ["--format", args.format, "--input-format", args.input_format, "--master", args.master]
    command += ["--model-dir", model["path"], "--model-tag", model["tag"]]
    if model.get("registry_version"):
        command += ["--registry-version", model["registry_version"]]
    conf = {**LOOPBACK_CONF, "spark.pyspark.python": str(python)}
    if archive is not None:  # the user's own driver options (--conf) replace it
        conf["spark.driver.extraJavaOptions"] = archive.java_option
    conf.update(dict(pair.split("=", 1) for pair in args.conf))
    for key, value in conf.items():
        command += ["--conf", f"{key}={value}"]
    return command


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", default="", help="a CSV or Parquet file, or a folder of them")
    parser.add_argument("--output", default="", help="a folder that does not exist yet")
    parser.add_argument("--format", choices=FORMATS, default="parquet")
    parser.add_argument("--input-format", choices=("auto", *FORMATS), default="auto")
    parser.add_argument("--stage", default="", help="the registry stage whose model scores (production, staging)")
    parser.add_argument("--version", default="", help="the registry version whose model scores (x.y.z)")
    parser.add_argument("--master", default="local[*]", help="local[*], or spark://127.0.0.1:PORT (make spark-up)")
    parser.add_argument("--conf", action="append", default=[], help="a Spark setting key=value (repeatable)")
    args = parser.parse_args(argv)
    if not args.input or not args.output:
        print("score: name the input and the output: make score INPUT=flowers.csv OUTPUT=build/scored", file=sys.stderr)
        return 2
    for pair in args.conf:
        if "=" not in pair:
            print(f"score: CONF entry {pair!r} is not key=value", file=sys.stderr)
            return 2
    source, target = local_path(args.input), local_path(args.output)
    if source is not None and not source.exists():
        print(f"score: input {args.input} does not exist", file=sys.stderr)
        return 1
    if target is not None and target.exists():
        print(f"score: output {args.output} already exists; remove it or choose another OUTPUT", file=sys.stderr)
        return 1
    try:  # a local input's columns are checked before anything starts (the job checks any input again)
        columns = local_columns(args.input, input_format(args.input, args.input_format))
        if columns is not None:
            check_input_columns(columns)
    except (InputError, InputColumnsError) as error:
        print(f"score: {error}", file=sys.stderr)
        return 1
    try:
        java = require_java("score")
        choice = choose(stage=args.stage, version=args.version)
        python = spark_venv()
    except (Refused, SparkUnavailable) as refused:
        return int(refused.code or 1)
    except Exception as error:  # the store or the registry: ModelNotFoundError, a DVC error; already worded
        print(f"score: {error}", file=sys.stderr)
        return 1
    print(f"score: model {choice.tag} ({choice.chosen_by}); master {args.master}", flush=True)
    model = {key: str(value) for key, value in choice.as_dict().items() if value is not None}
    archive = class_archive(java) if args.master.startswith("local") else None  # a cluster's driver: its own JVM
    code = subprocess.run(job_command(python, args, model, archive), env=spark_environment(python)).returncode
    if archive is not None:
        archive.keep(succeeded=code == 0)
    return code


if __name__ == "__main__":
    sys.exit(main())

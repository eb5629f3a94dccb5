"""Real Spark for the scoring tests: the job's venv, a file of flowers, one local-mode run that several tests read."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from iris_classifier.scoring import spark_env
from iris_classifier.scoring.flower_files import flowers
from tests.conftest import ROOT, run

ROWS = 20_000
BAD_EVERY = 97  # rows 96, 193, ... are bad, cycling through the fields and BAD_VALUES


def require_spark() -> Path:
    """.venv-spark's Python, installed on first use (as `make score` does); skips the test where Java 17+ is
    missing (CI has it: ops/agent_setup.sh)."""
    binary = spark_env.java()
    if binary is None or (spark_env.java_major(binary) or 0) < spark_env.MIN_JAVA:
        pytest.skip(f"Spark needs Java {spark_env.MIN_JAVA}+: apt-get install -y {spark_env.JAVA_PACKAGE}")
    return spark_env.spark_venv()


@pytest.fixture(scope="session")
def spark_python(pipeline_ready) -> Path:
    return require_spark()


def score(input_path: Path | str, output: Path, *settings: str, cwd: Path = ROOT, env: dict[str, str] | None = None):
    """`make score INPUT=... OUTPUT=... SETTING=...` as a user runs it; the finished process (not checked)."""
    command = ["make", "-s", "score", f"INPUT={input_path}", f"OUTPUT={output}", *settings]
    if cwd != ROOT:
        command.append(f"VENV={ROOT / '.venv'}")  # a copy of the project runs with the project's venvs
    environment = {**os.environ, "IRIS_SPARK_VENV": str(spark_env.SPARK_VENV), **(env or {})}
    return run(command, cwd=cwd, env=environment, check=False)


def scored_rows(output: Path, fmt: str = "parquet") -> pd.DataFrame:
    """The job's output, every part file, ordered by flower_id."""
    if fmt == "csv":
        parts = sorted(output.glob("part-*.csv"))
        table = pd.concat([pd.read_csv(part, dtype=str, keep_default_na=False) for part in parts])
    else:
        table = pd.read_parquet(output)
    return table.sort_values("flower_id", key=lambda ids: ids.astype(int)).reset_index(drop=True)


def summary(output: Path) -> dict:
    return json.loads((output / "_summary.json").read_text())


@pytest.fixture(scope="session")
def flower_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("flowers") / "flowers.csv"
    flowers(ROWS, bad_every=BAD_EVERY, seed=11).to_csv(path, index=False)
    return path


@pytest.fixture(scope="session")
def local_output(spark_python, flower_csv, tmp_path_factory) -> Path:
    """The flowers scored by `make score` in local mode (local[*]), as Parquet."""
    output = tmp_path_factory.mktemp("scored") / "local"
    result = score(flower_csv, output)
    assert result.returncode == 0, result.stdout + result.stderr
    return output


def completed(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr

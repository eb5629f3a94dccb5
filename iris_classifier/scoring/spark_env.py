"""The scoring job's own venv (.venv-spark, from requirements-spark.lock) and what Spark needs around it: Java 17+,
SPARK_HOME inside the PySpark install, and the executors' Python."""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from iris_classifier.project import environment
from iris_classifier.project.paths import ROOT

SPARK_VENV = Path(os.environ.get("IRIS_SPARK_VENV", ROOT / ".venv-spark"))
SPARK_LOCK = ROOT / "requirements-spark.lock"
JAVA_PACKAGE = "openjdk-17-jre-headless"
MIN_JAVA = 17
LOOPBACK = "127.0.0.1"


class SparkUnavailable(SystemExit):
    """Spark cannot run here (no Java 17+, the venv failed to install); the message says what to install or run."""

    def __init__(self, command: str, message: str) -> None:
        print(f"{command}: {message}", file=sys.stderr)
        super().__init__(2)


def java() -> str | None:
    """The java Spark's launcher runs: $JAVA_HOME/bin/java when JAVA_HOME is set, else the one on PATH."""
    if home := os.environ.get("JAVA_HOME"):
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.exists() else None
    return shutil.which("java")


@functools.cache
def java_build(binary: str) -> str:
    """What `java -version` says (read once per process: each call starts a JVM)."""
    return subprocess.run([binary, "-version"], capture_output=True, text=True).stderr


def java_major(binary: str) -> int | None:
    """17 for `openjdk version "17.0.15"`, 1 for Java 8's "1.8.0"; None when it does not say."""
    output = java_build(binary)
    found = re.search(r'version "(\d+)', output)
    return int(found.group(1)) if found else None


def require_java(command: str) -> str:
    """The java binary, or SparkUnavailable naming the package to install."""
    install = f"an admin installs it once: apt-get install -y {JAVA_PACKAGE} (or set JAVA_HOME to a Java {MIN_JAVA}+)"
    binary = java()
    if binary is None:
        where = (
            f"JAVA_HOME={os.environ['JAVA_HOME']} has no bin/java" if os.environ.get("JAVA_HOME") else "no java on PATH"
        )
        raise SparkUnavailable(command, f"Spark needs Java {MIN_JAVA} or newer and finds none ({where}); {install}")
    major = java_major(binary)
    if major is None or major < MIN_JAVA:
        raise SparkUnavailable(command, f"Spark needs Java {MIN_JAVA} or newer; {binary} is Java {major}; {install}")
    return binary


def spark_venv() -> Path:
    """The venv's Python, installed from requirements-spark.lock on first use (PySpark builds from source: ~2 min).

    Its .pth puts the project on sys.path, as the main venv's does, so the driver and the executors' Python
    workers import iris_classifier from this checkout; IRIS_SPARK_VENV names another venv (the tests' copies of
    the project use the project's). A file lock keeps two callers from installing at once.
    """
    python = SPARK_VENV / "bin" / "python"
    stamp = SPARK_VENV / f".installed-{hashlib.sha1(SPARK_LOCK.read_bytes()).hexdigest()[:12]}"
    if stamp.exists():
        return python
    SPARK_VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(SPARK_VENV.with_name(f"{SPARK_VENV.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return python
        print(
            f"spark: installing PySpark into {SPARK_VENV.name}/ from {SPARK_LOCK.name} (first use; ~2 min)", flush=True
        )
        uv = Path(sys.executable).parent / "uv"
        uv_command = str(uv) if uv.exists() else "uv"
        if not python.exists():
            subprocess.run([uv_command, "venv", "--quiet", "--python", sys.executable, str(SPARK_VENV)], check=True)
        # Bytecode compiled once here: every Python worker of every job imports pandas, pyarrow and onnxruntime,
        # and the project's processes run with PYTHONDONTWRITEBYTECODE (the Makefile).
        sync = [uv_command, "pip", "sync", "--quiet", "--compile-bytecode", "--python", str(python), str(SPARK_LOCK)]
        subprocess.run(sync, check=True)
        purelib = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        (Path(purelib) / "iris_classifier_project.pth").write_text(environment.pth_file())
        for old in SPARK_VENV.glob(".installed-*"):
            old.unlink()
        stamp.touch()
    return python


def spark_home(python: Path) -> Path:
    """SPARK_HOME: the pyspark package of the venv (its jars/ and bin/spark-class)."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the venv is made from this interpreter
    return python.parent.parent / "lib" / version / "site-packages" / "pyspark"


def spark_environment(python: Path) -> dict[str, str]:
    """The environment of the job's driver and of a standalone master and worker: the venv's Python for the
    executors (else they run `python3` from PATH, without pyarrow), everything bound to loopback."""
    return {
        **os.environ,
        "SPARK_HOME": str(spark_home(python)),
        "PYSPARK_PYTHON": str(python),
        "PYSPARK_DRIVER_PYTHON": str(python),
        "SPARK_LOCAL_IP": LOOPBACK,
        # The project's own modules compiled once, into the venv (not into the checkout): each Python worker of
        # each job imports them, ~0.4 s faster than from source.
        "PYTHONPYCACHEPREFIX": str(python.parent.parent / ".pycache"),
    }


# The job's settings for a driver on this machine: reachable on loopback only, no web UI to bind.
LOOPBACK_CONF = {
    "spark.driver.host": LOOPBACK,
    "spark.driver.bindAddress": LOOPBACK,
    "spark.ui.enabled": "false",
}


@dataclass(frozen=True)
class ClassArchive:
    """The driver JVM's class-data-sharing archive (AppCDS): the classes a scoring job loads, as the JVM lays them
    out in memory, written by one job at its exit and mapped by the next ones, which then start and warm up
    ~2.5-4 s sooner (docs/benchmarks.md). One per Java build and Spark lock, in the spark venv (~175 MB); the job
    that writes it writes a draft, kept only when the job succeeded (`keep`)."""

    path: Path
    draft: Path | None  # set when this job writes the archive

    @property
    def java_option(self) -> str:
        return f"-XX:ArchiveClassesAtExit={self.draft}" if self.draft else f"-XX:SharedArchiveFile={self.path}"

    def keep(self, succeeded: bool) -> None:
        """Put the draft in place (the older archives go) when the job succeeded, else drop it."""
        if self.draft is None or not self.draft.exists():
            return
        if not succeeded:
            self.draft.unlink()
            return
        for old in self.path.parent.glob("spark-classes-*.jsa"):
            old.unlink()
        self.draft.rename(self.path)


def class_archive(java_binary: str, venv: Path = SPARK_VENV) -> ClassArchive:
    build = java_build(java_binary)
    key = hashlib.sha1(build.encode() + SPARK_LOCK.read_bytes()).hexdigest()[:12]
    path = venv / f"spark-classes-{key}.jsa"
    return ClassArchive(path, None if path.exists() else venv / f".spark-classes-{key}.{os.getpid()}.draft")

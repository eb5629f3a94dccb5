"""The driver JVM's class archive (spark_env.ClassArchive): the first local job writes a draft, kept only when
the job succeeded; later jobs map the kept one; a new Java build or Spark lock makes a new one."""

from __future__ import annotations

import os
import shutil

import pytest

from iris_classifier.scoring import spark_env
from iris_classifier.scoring.spark_env import class_archive

pytestmark = pytest.mark.skipif(shutil.which("java") is None, reason="needs a java binary to read its build from")


def test_the_first_job_writes_a_draft_that_is_kept_only_when_the_job_succeeded(tmp_path):
    java = shutil.which("java")
    first = class_archive(java, tmp_path)
    assert first.draft is not None and first.java_option == f"-XX:ArchiveClassesAtExit={first.draft}"
    assert str(os.getpid()) in first.draft.name  # two jobs at once write two drafts

    first.draft.write_bytes(b"half")
    first.keep(succeeded=False)
    assert list(tmp_path.iterdir()) == []  # a failed job's draft is not mapped by the next job

    again = class_archive(java, tmp_path)
    again.draft.write_bytes(b"archive")
    stale = tmp_path / "spark-classes-000000000000.jsa"
    stale.write_bytes(b"an older Java's")
    again.keep(succeeded=True)
    assert sorted(path.name for path in tmp_path.iterdir()) == [again.path.name]
    assert again.path.read_bytes() == b"archive"

    mapped = class_archive(java, tmp_path)
    assert mapped.draft is None and mapped.java_option == f"-XX:SharedArchiveFile={again.path}"


def test_another_spark_lock_names_another_archive(tmp_path, monkeypatch):
    java = shutil.which("java")
    before = class_archive(java, tmp_path).path
    lock = tmp_path / "requirements-spark.lock"
    lock.write_text(spark_env.SPARK_LOCK.read_text() + "# re-locked\n")
    monkeypatch.setattr(spark_env, "SPARK_LOCK", lock)
    assert class_archive(java, tmp_path).path != before


def test_a_job_that_wrote_no_draft_leaves_the_archive_alone(tmp_path):
    archive = class_archive(shutil.which("java"), tmp_path)
    archive.keep(succeeded=True)  # e.g. the job ended before its JVM started
    assert list(tmp_path.iterdir()) == []

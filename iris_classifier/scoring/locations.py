"""Where the job reads and writes: a local path or any path Spark reads (s3a://, hdfs://), and its file format."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path
from urllib.parse import urlparse

FORMATS = ("parquet", "csv")
SUMMARY_FILE = "_summary.json"  # in OUTPUT; a leading underscore: Spark's readers skip it when reading OUTPUT back


class InputError(ValueError):
    """The input or output cannot be used as asked; the message names the path and why."""


def local_path(path: str) -> Path | None:
    """The local path a Spark path names (plain or file://), else None (s3a://, hdfs://, ...)."""
    parsed = urlparse(path)
    if parsed.scheme in ("", "file"):
        return Path(parsed.path if parsed.scheme else path)
    return None


def input_format(path: str, given: str) -> str:
    """csv or parquet: as given, else from the name, else (a local folder) from the files in it."""
    if given != "auto":
        return given
    name = path.rstrip("/").lower()
    for fmt in FORMATS:
        if name.endswith(f".{fmt}") or name.endswith(f".{fmt}.gz"):
            return fmt
    folder = local_path(path)
    if folder is not None and folder.is_dir():
        found = {fmt for fmt in FORMATS if any(folder.rglob(f"*.{fmt}*"))}
        if len(found) == 1:
            return found.pop()
    raise InputError(f"input: cannot tell whether {path} is CSV or Parquet; set INPUT_FORMAT=csv or parquet")


def local_columns(path: str, fmt: str) -> list[str] | None:
    """The columns of a local input, read from its first file's CSV header or Parquet schema (no Spark needed);
    None for a path Spark alone reads (s3a://, ...). InputError when that file cannot be read as `fmt`."""
    folder = local_path(path)
    if folder is None:
        return None
    files = (
        sorted(p for p in folder.rglob(f"*.{fmt}*") if not p.name.startswith(("_", ".")))
        if folder.is_dir()
        else [folder]
    )
    if not files:
        raise InputError(f"input: no .{fmt} file in {path}")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(files[0]).names)
        opener = gzip.open if files[0].name.endswith(".gz") else open
        with opener(files[0], "rt", newline="") as table:
            return next(csv.reader(table), [])
    except Exception as error:  # pyarrow's ArrowInvalid, a decoding error, a permission error: all unreadable
        raise InputError(f"input: cannot read {files[0]} as {fmt}: {error}") from None

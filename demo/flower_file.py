"""Score a CSV file of flowers through the service's /classify_batch: every row comes back, scored or with its error.

The rules a row must pass are the typed API's own (the domain's `FlowerFields`, validated by pydantic as the
service validates a /classify_batch body), so a row refused here is one the service would refuse, and the
error names the field and the rule in the service's words. The good rows are sent in chunks that stay within
the service's limits (MAX_BATCH_FLOWERS flowers and MAX_BODY_BYTES per request).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError

from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, SPECIES, FlowerFields
from iris_classifier.serving.middleware import MAX_BODY_BYTES

# The largest file the page takes: about 50,000 flowers of four measurements each, seven requests at most.
MAX_UPLOAD_BYTES = 1_000_000
# What the scored file adds after the input's own columns (as `make score` writes them).
RESULT_COLUMNS = ("species", *(f"probability_{name}" for name in SPECIES), "model_version", "error")

ONE_FLOWER = TypeAdapter(FlowerFields)
# {"flowers": [ ... ]}: the bytes around the flowers of one request body.
BODY_OVERHEAD = len(b'{"flowers":[]}')

# POST a JSON body to /classify_batch: (HTTP status, parsed answer or None).
Poster = Callable[[bytes], tuple[int, Any]]


class FileRefused(ValueError):
    """The file as a whole cannot be scored (too large, not CSV, a column missing); says what to fix."""


class ServiceFailed(RuntimeError):
    """The service did not score a chunk of good rows (down, or answered an error); no partial result is shown."""


@dataclass
class ScoredFile:
    """The input's rows in their order, each with the result columns filled in."""

    columns: list[str]  # the input's columns, then the result columns (renamed if the input has one already)
    rows: list[list[str]]
    scored: int = 0
    refused: int = 0
    refused_rows: list[int] = field(default_factory=list)  # 1-based data row numbers
    model_versions: set[str] = field(default_factory=set)

    def csv_text(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return out.getvalue()


def result_column_names(input_columns: list[str]) -> list[str]:
    """RESULT_COLUMNS, each prefixed `scored_` when the input has a column of that name (iris.csv has `species`)."""
    taken = set(input_columns)
    names = []
    for name in RESULT_COLUMNS:
        while name in taken:
            name = f"scored_{name}"
        names.append(name)
        taken.add(name)
    return names


def read_table(data: bytes) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV file (UTF-8, with or without BOM); refuses files that cannot be scored."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise FileRefused(f"the file has {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FileRefused(f"the file is not UTF-8 text (byte {error.start}); save it as CSV (UTF-8)") from None
    records = list(csv.reader(io.StringIO(text, newline="")))
    while records and not any(cell.strip() for cell in records[-1]):
        records.pop()  # trailing blank lines
    if not records:
        raise FileRefused("the file is empty; the first line must name the columns: " + ", ".join(FEATURES))
    header, rows = records[0], records[1:]
    names = [name.strip() for name in header]
    missing = [name for name in FEATURES if name not in names]
    if missing:
        raise FileRefused(
            f"the file has no column {', '.join(missing)}; its first line must name the columns "
            f"{', '.join(FEATURES)} (found: {', '.join(names) or 'nothing'})"
        )
    if not rows:
        raise FileRefused("the file has a header but no flowers")
    return header, rows


def measurement(cell: str) -> float | str:
    """A cell as the number it spells, or the text itself (which the rules then refuse as not a number)."""
    try:
        return float(cell)
    except ValueError:
        return cell


def row_error(flower: dict[str, float | str]) -> str:
    """'' when the flower passes the service's rules, else each failure as 'field: rule' (the service's words)."""
    try:
        ONE_FLOWER.validate_python(flower, strict=True)
    except ValidationError as refused:
        return "; ".join(map(failure_text, refused.errors()))
    return ""


def failure_text(failure: Any) -> str:
    """One pydantic failure as 'field: rule (got value)'."""
    where = ".".join(str(part) for part in failure["loc"])
    got = "" if failure["type"] == "missing" else f" (got {failure['input']!r})"
    return f"{where}: {failure['msg']}{got}"


def flowers_of(header: list[str], rows: list[list[str]]) -> tuple[list[dict[str, float] | None], list[str]]:
    """Per row, the flower to score (None when refused) and its error ('' when good)."""
    names = [name.strip() for name in header]
    position = {name: names.index(name) for name in FEATURES}
    flowers: list[dict[str, float] | None] = []
    errors: list[str] = []
    for row in rows:
        flower: dict[str, float | str] = {}
        for name, index in position.items():
            cell = row[index].strip() if index < len(row) else ""
            if cell:  # an empty cell is a missing measurement ("Field required")
                flower[name] = measurement(cell)
        error = row_error(flower)
        if len(row) > len(header):
            extra = ", ".join(map(repr, row[len(header) :]))
            shape = f"row: {len(row)} cells for {len(header)} columns (beyond the last column: {extra})"
            error = "; ".join(filter(None, [error, shape]))
        flowers.append(None if error else flower)  # type: ignore[arg-type]
        errors.append(error)
    return flowers, errors


def request_bodies(
    flowers: list[dict[str, float]], *, max_flowers: int = MAX_BATCH_FLOWERS, max_bytes: int = MAX_BODY_BYTES
) -> Iterator[tuple[int, bytes]]:
    """(how many flowers, JSON body) for /classify_batch, in order: at most the service's batch limit of flowers
    and its body limit of bytes each."""
    pieces: list[bytes] = []
    size = BODY_OVERHEAD
    for flower in flowers:
        piece = json.dumps(flower, separators=(",", ":")).encode()
        if pieces and (len(pieces) == max_flowers or size + len(piece) + 1 > max_bytes):
            yield len(pieces), b'{"flowers":[' + b",".join(pieces) + b"]}"
            pieces, size = [], BODY_OVERHEAD
        pieces.append(piece)
        size += len(piece) + 1
    if pieces:
        yield len(pieces), b'{"flowers":[' + b",".join(pieces) + b"]}"


def score_table(header: list[str], rows: list[list[str]], post: Poster) -> ScoredFile:
    """Every row of the table, in order, with its species and probabilities, or its error."""
    flowers, errors = flowers_of(header, rows)
    good = [flower for flower in flowers if flower is not None]
    predictions: list[dict[str, Any]] = []
    for count, body in request_bodies(good):
        status, answer = post(body)
        if status != 200 or not isinstance(answer, list) or len(answer) != count:
            detail = answer.get("error", answer) if isinstance(answer, dict) else answer
            raise ServiceFailed(f"/classify_batch answered HTTP {status} for {count} flowers: {detail}")
        predictions.extend(answer)

    result = ScoredFile(columns=[*header, *result_column_names(header)], rows=[])
    answers = iter(predictions)
    width = len(header)
    for number, (row, flower, error) in enumerate(zip(rows, flowers, errors, strict=True), start=1):
        cells = (row + [""] * width)[:width]  # a short row padded; a long one is refused, its extra cells named
        if flower is None:
            result.refused += 1
            result.refused_rows.append(number)
            result.rows.append([*cells, "", "", "", "", "", error])
            continue
        prediction = next(answers)
        probabilities = prediction["probabilities"]
        result.scored += 1
        result.model_versions.add(prediction["model_version"])
        result.rows.append(
            [
                *cells,
                prediction["species"],
                *(repr(float(probabilities[name])) for name in SPECIES),
                prediction["model_version"],
                "",
            ]
        )
    return result


def summary(scored: ScoredFile, limit: int = 10) -> str:
    """A line for people: how many rows, how many scored and by which model, which were refused."""
    total = scored.scored + scored.refused
    text = f"**{total:,} rows: {scored.scored:,} scored, {scored.refused:,} refused.**"
    if scored.model_versions:
        text += f" Model: {', '.join(sorted(scored.model_versions))}."
    if scored.refused:
        shown = ", ".join(str(number) for number in scored.refused_rows[:limit])
        more = f" and {scored.refused - limit:,} more" if scored.refused > limit else ""
        text += f" Refused rows (the reason is in `error`): {shown}{more}."
    return text


def display_table(scored: ScoredFile, digits: int = 3) -> dict[str, list[Any]]:
    """The table for the page: species and error first (what the person looks for, in view however wide the
    input), then the input's columns and the probabilities (shortened; the downloaded file keeps every digit);
    the model version is in the summary line instead of on every row."""
    width = len(scored.columns) - len(RESULT_COLUMNS)
    species, *probabilities, _version, error = range(width, len(scored.columns))
    order = [species, error, *range(width), *probabilities]

    def shown(row: list[str], index: int) -> str:
        cell = row[index]
        return f"{float(cell):.{digits}f}" if index in probabilities and cell else cell

    return {
        "headers": [scored.columns[index] for index in order],
        "data": [[shown(row, index) for index in order] for row in scored.rows],
    }

"""The demo's CSV scoring (demo/flower_file.py): the service's rules per row, requests within its limits, all rows back.

The rules and limits are checked without a server (fast tier); the last test scores a file of 25,007 rows through
the real service's /classify_batch and holds every scored row to what the service answers for it directly.
"""

from __future__ import annotations

import csv
import io
import json
import random

import pytest
import requests

from demo import flower_file
from demo.flower_file import FileRefused, flowers_of, read_table, request_bodies, score_table
from iris_classifier.domain.schema import FEATURES, MAX_BATCH_FLOWERS, SPECIES
from iris_classifier.serving.middleware import MAX_BODY_BYTES

HEADER = "id," + ",".join(FEATURES)


def table(*lines: str) -> tuple[list[str], list[list[str]]]:
    return read_table(("\n".join(lines) + "\n").encode())


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ("5.1,3.5,1.4,0.2", ""),
        ("5,3,1,1", ""),  # integers are measurements too
        (" 5.1 , 3.5 ,1.4,0.2", ""),  # spaces around a number, as spreadsheets write them
        (",3.5,1.4,0.2", "sepal_length: Field required"),
        ("5.1,3.5,1.4", "petal_width: Field required"),  # a short row
        ("abc,3.5,1.4,0.2", "sepal_length: Input should be a valid number (got 'abc')"),
        ("5.1,3.5,1.4,nan", "petal_width: Input should be a finite number (got nan)"),
        ("5.1,-inf,1.4,0.2", "sepal_width: Input should be a finite number (got -inf)"),
        ("5.1,3.5,0,0.2", "petal_length: Input should be greater than 0 (got 0.0)"),
        ("50.5,3.5,1.4,0.2", "sepal_length: Input should be less than or equal to 50 (got 50.5)"),
        (
            "-1,3.5,1.4,x",
            "sepal_length: Input should be greater than 0 (got -1.0); petal_width: Input should be a valid number "
            "(got 'x')",
        ),
        ("5.1,3.5,1.4,0.2,9,", "row: 7 cells for 5 columns (beyond the last column: '9', '')"),
    ],
)
def test_each_row_is_judged_by_the_services_rules_naming_field_and_rule(cells, expected):
    header, rows = table(HEADER, f"7,{cells}")
    (flower,), (error,) = flowers_of(header, rows)
    assert error == expected
    assert (flower is None) == bool(expected)


def test_the_rules_are_the_services_own_a_refused_row_is_a_400_there(server):
    header, rows = table(HEADER, "1,,3.5,1.4,0.2", "2,abc,3.5,1.4,0.2", "3,5.1,3.5,0,0.2", "4,nan,3.5,1.4,0.2")
    flowers, errors = flowers_of(header, rows)
    assert flowers == [None] * 4
    for row, error in zip(rows, errors, strict=True):
        cells = dict(zip(FEATURES, row[1:], strict=True))
        # what a JSON client sends for such a row: no key, the text, the number (NaN as Python's json writes it)
        flower = {name: flower_file.measurement(cell) for name, cell in cells.items() if cell}
        body = json.dumps({"flowers": [flower]})
        answer = requests.post(
            f"{server.url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert answer.status_code == 400, (row, answer.text)
        field, rule = error.split(": ", 1)
        assert field in answer.text and rule.split(" (got")[0] in answer.text


def test_a_file_that_cannot_be_scored_is_refused_saying_what_to_fix():
    with pytest.raises(FileRefused, match=r"no column petal_width; .*\(found: id, sepal_length"):
        table("id,sepal_length,sepal_width,petal_length", "1,5.1,3.5,1.4")
    with pytest.raises(FileRefused, match="the file is empty"):
        read_table(b"\n\n")
    with pytest.raises(FileRefused, match="header but no flowers"):
        table(HEADER)
    with pytest.raises(FileRefused, match="not UTF-8"):
        read_table(HEADER.encode() + b"\n1,5.1,3.5,1.4,0.2\xff\n")
    too_big = (HEADER + "\n").encode() + b"1,5.1,3.5,1.4,0.2\n" * (flower_file.MAX_UPLOAD_BYTES // 18 + 1)
    with pytest.raises(FileRefused, match=f"the limit is {flower_file.MAX_UPLOAD_BYTES:,} bytes"):
        read_table(too_big)
    # a BOM (as Excel writes UTF-8 CSV) and trailing blank lines are fine
    assert read_table(b"\xef\xbb\xbf" + HEADER.encode() + b"\n1,5.1,3.5,1.4,0.2\n\n\n")[1] == [
        ["1", "5.1", "3.5", "1.4", "0.2"]
    ]


def test_requests_stay_within_the_services_batch_and_body_limits_in_order():
    rng = random.Random(7)
    # the longest numbers a float is written with: still the flower count that cuts, with the service's limits
    flowers = [{name: rng.uniform(0.1, 50) * (1 + 1e-15) for name in FEATURES} for _ in range(25_001)]
    bodies = list(request_bodies(flowers))
    assert [count for count, _ in bodies] == [MAX_BATCH_FLOWERS, MAX_BATCH_FLOWERS, 5_001]
    assert all(len(body) <= MAX_BODY_BYTES for _, body in bodies)
    assert [flower for _, body in bodies for flower in json.loads(body)["flowers"]] == flowers  # all, in order

    # a smaller byte limit cuts by bytes: every body within it, as full as the next flower allows
    small = list(request_bodies(flowers[:1_000], max_bytes=20_000))
    assert all(len(body) <= 20_000 and len(body) > 20_000 - 200 for _, body in small[:-1])
    assert [count for count, _ in small] == [len(json.loads(body)["flowers"]) for _, body in small]
    assert [flower for _, body in small for flower in json.loads(body)["flowers"]] == flowers[:1_000]


def test_result_columns_never_overwrite_an_input_column():
    header, rows = table("species,id," + ",".join(FEATURES), "setosa,1,5.1,3.5,1.4,0.2")
    scored = score_table(header, rows, lambda body: (200, [prediction_of(body)]))
    assert scored.columns[:6] == header
    assert scored.columns[6:] == ["scored_species", *flower_file.RESULT_COLUMNS[1:]]
    assert scored.rows[0][:6] == rows[0]  # the input's own species column, unchanged
    shown = flower_file.display_table(scored)  # on the page: the answer and the error first, then the input
    assert shown["headers"] == ["scored_species", "error", *header, *(f"probability_{name}" for name in SPECIES)]
    assert shown["data"] == [["setosa", "", *rows[0], "0.333", "0.333", "0.333"]]


def prediction_of(body: bytes) -> dict:
    (flower,) = json.loads(body)["flowers"]
    assert set(flower) == set(FEATURES)
    return {"species": "setosa", "probabilities": dict.fromkeys(SPECIES, 1 / 3), "model_version": "m:1", "warnings": []}


def test_a_failing_service_scores_nothing_rather_than_part_of_the_file():
    header, rows = table(HEADER, "1,5.1,3.5,1.4,0.2", "2,7.0,3.2,4.7,1.4")
    with pytest.raises(flower_file.ServiceFailed, match="HTTP 503 for 2 flowers: busy"):
        score_table(header, rows, lambda body: (503, {"error": "busy"}))


def test_a_file_of_25007_rows_comes_back_row_for_row_as_the_service_answers(server):
    rng = random.Random(34)
    lines = [HEADER + ",note"]
    bad = {17: ",3.5,1.4,0.2", 9_999: "abc,3.5,1.4,0.2", 10_000: "5.1,3.5,1.4,inf", 20_001: "5.1,3.5,60,0.2"}
    bad = {row: f"{row},{cells},bad" for row, cells in bad.items()}
    good_rows = 25_007 - len(bad)
    for number in range(1, 25_008):
        if number in bad:
            lines.append(bad[number])
        else:
            values = ",".join(f"{rng.uniform(0.1, 8):.1f}" for _ in FEATURES)
            lines.append(f"{number},{values},row {number}")
    header, rows = table(*lines)
    posted: list[int] = []

    def post(body: bytes) -> tuple[int, object]:
        posted.append(len(json.loads(body)["flowers"]))
        answer = requests.post(
            f"{server.url}/classify_batch", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        return answer.status_code, answer.json()

    scored = score_table(header, rows, post)
    assert posted == [10_000, 10_000, good_rows - 20_000]
    assert (scored.scored, scored.refused, scored.refused_rows) == (good_rows, 4, sorted(bad))

    written = list(csv.reader(io.StringIO(scored.csv_text())))
    assert written[0] == [*header, *flower_file.RESULT_COLUMNS]
    assert len(written) - 1 == len(rows)  # rows in = rows out
    assert [row[: len(header)] for row in written[1:]] == rows  # the input passed through, in order
    for number in bad:
        row = dict(zip(written[0], written[number], strict=True))
        assert row["species"] == "" and row["error"], row
    # a sample of the scored rows: what /classify_batch answers for those flowers, to the last digit
    sample = [number for number in rng.sample(range(1, len(rows) + 1), 300) if number not in bad]
    flowers = [{name: float(written[number][1 + i]) for i, name in enumerate(FEATURES)} for number in sample]
    direct = requests.post(f"{server.url}/classify_batch", json={"flowers": flowers}, timeout=30).json()
    for number, expected in zip(sample, direct, strict=True):
        row = dict(zip(written[0], written[number], strict=True))
        assert row["species"] == expected["species"] and row["error"] == ""
        assert [float(row[f"probability_{name}"]) for name in SPECIES] == [
            expected["probabilities"][name] for name in SPECIES
        ]
        assert row["model_version"] == expected["model_version"]


def test_the_ui_upload_is_the_one_form_post_the_request_guard_lets_through_within_the_body_limit(server):
    """The service refuses POST bodies that are not JSON (415) except a form under /ui/ (the UI's file upload,
    which Gradio's app reads); the 2 MiB body limit still holds there (413)."""
    assert requests.get(f"{server.url}/ui/", timeout=120).status_code == 200  # the UI is built
    csv_file = {"files": ("survey.csv", f"{HEADER}\n1,5.1,3.5,1.4,0.2\n", "text/csv")}
    uploaded = requests.post(f"{server.url}/ui/gradio_api/upload", files=csv_file, timeout=30)
    assert uploaded.status_code == 200, uploaded.text
    (path,) = uploaded.json()
    assert path.endswith("survey.csv")
    refused = requests.post(f"{server.url}/classify_batch", files=csv_file, timeout=30)
    assert refused.status_code == 415 and "'multipart/form-data' is not accepted" in refused.json()["error"]
    too_big = {"files": ("big.csv", b"1" * (MAX_BODY_BYTES + 1), "text/csv")}
    over = requests.post(f"{server.url}/ui/gradio_api/upload", files=too_big, timeout=30)
    assert over.status_code == 413 and over.json()["limit_bytes"] == MAX_BODY_BYTES

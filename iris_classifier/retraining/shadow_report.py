"""`make shadow-report`: the shadow log joined with the labels, judged by params.yaml's `shadow:` rules.

The shadow log (iris_classifier.serving.shadow) holds, per flower the served model (the champion) answered, the
shadow model's (the challenger's) answer under the same request id and row index that `/feedback` takes. Joined
with the labels under IRIS_MONITOR_DIR, both models are scored on the same live flowers:

- `insufficient`: fewer than `shadow.min_labelled` labelled shadowed flowers: no verdict yet.
- `fail`: the challenger loses more than `shadow.tolerance` accuracy to the champion, or more than
  `shadow.species_tolerance` recall on a species with at least `shadow.min_species_labelled` labelled flowers,
  or, when the two disagree on more than `shadow.max_disagreement` of the labelled flowers, it is not
  significantly better where they disagree (the retrain gate's one-sided exact McNemar test, decision.mcnemar_p,
  at `shadow.significance`).
- `pass`: none of these.

Writes reports/shadow.json (the figures, the verdict and its reasons) and reports/shadow.html (the two models
side by side: confusion matrices, the flowers where they disagree). `make promote ... STAGE=production` reads the
JSON (iris_classifier.retraining.promotion). Exit status: 0 pass, 1 fail, 2 insufficient or no shadow log.
"""

from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from iris_classifier.data.production_log import SHADOW_NAME, data_files, monitor_dir, read_records
from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.monitoring.feedback import logged_flowers, read_labels
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import REPORTS_DIR, ROOT
from iris_classifier.retraining.decision import mcnemar_p

SHADOW_JSON = REPORTS_DIR / "shadow.json"
VERDICTS = ("pass", "fail", "insufficient")
DISAGREEMENTS_SHOWN = 200  # rows of the HTML's disagreement table


class NoShadowLog(RuntimeError):
    """No shadow log (or none for the asked version); the message says what to run."""


def normalized_version(version: str) -> str:
    """`1.1.0` and `v1.1.0` name the same registry version; anything else (a model tag) as given."""
    parts = version.lstrip("v").split(".")
    return f"v{version.lstrip('v')}" if len(parts) == 3 and all(part.isdigit() for part in parts) else version


def read_shadow_log(log_dir: Path) -> list[dict[str, Any]]:
    """Every shadow record, oldest first (a torn last line is skipped)."""
    return [
        record
        for path in data_files(log_dir, SHADOW_NAME)
        for record in read_records(path, frozenset({"shadow_version"}))
    ]


def shadowed_flowers(records: list[dict[str, Any]], version: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The asked version's records (default: the version the newest record ran), one per (request id, index)."""
    if not records:
        raise NoShadowLog("the shadow log is empty")
    version = normalized_version(version) if version else records[-1]["shadow_version"]
    flowers: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        if record["shadow_version"] == version:
            flowers.setdefault((str(record["request_id"]), int(record["index"])), record)
    if not flowers:
        seen = ", ".join(sorted({str(record["shadow_version"]) for record in records}))
        raise NoShadowLog(f"the shadow log holds no flower shadowed by {version} (it holds: {seen})")
    return version, list(flowers.values())


def recall(truth: np.ndarray, predicted: np.ndarray, species: str) -> float | None:
    mask = truth == species
    return round(float((predicted[mask] == species).mean()), 6) if mask.any() else None


def confusion(truth: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, int]]:
    """true species -> predicted species -> flowers."""
    table = {actual: dict.fromkeys(SPECIES, 0) for actual in SPECIES}
    for actual, guess in zip(truth.tolist(), predicted.tolist(), strict=True):
        table[actual][guess] += 1
    return table


def judge(figures: dict[str, Any], rules: dict[str, Any]) -> tuple[str, list[str]]:
    """(verdict, reasons: every rule with its figures, failed ones first)."""
    labelled = figures["labelled"]
    if labelled < rules["min_labelled"]:
        return "insufficient", [
            f"only {labelled} labelled flowers among the {figures['shadowed']} the shadow saw; a verdict needs "
            f"shadow.min_labelled = {rules['min_labelled']} (params.yaml): send the true species of more shadowed "
            "flowers to /feedback, then run `make shadow-report` again"
        ]
    failed: list[str] = []
    passed: list[str] = []
    champion, challenger = figures["champion_accuracy"], figures["challenger_accuracy"]
    kept = challenger >= champion - rules["tolerance"] - 1e-12
    (passed if kept else failed).append(
        f"accuracy on {labelled} labelled shadowed flowers: challenger {challenger:.4f} "
        f"{'>=' if kept else '<'} champion {champion:.4f} - shadow.tolerance {rules['tolerance']}"
    )
    for species, per in figures["per_species"].items():
        if per["labelled"] < rules["min_species_labelled"]:
            continue
        ok = per["challenger_recall"] >= per["champion_recall"] - rules["species_tolerance"] - 1e-12
        (passed if ok else failed).append(
            f"{species}: challenger recall {per['challenger_recall']:.4f} {'>=' if ok else '<'} champion "
            f"{per['champion_recall']:.4f} - shadow.species_tolerance {rules['species_tolerance']} "
            f"({per['labelled']} labelled {species})"
        )
    test = figures["mcnemar"]
    share = figures["labelled_disagreement"]
    if share > rules["max_disagreement"]:
        better = challenger > champion and test["p"] < rules["significance"]
        (passed if better else failed).append(
            f"they disagree on {share:.1%} of the labelled flowers (> shadow.max_disagreement "
            f"{rules['max_disagreement']:.0%}): challenger alone right on {test['challenger_only_right']}, champion "
            f"alone on {test['champion_only_right']}: McNemar p = {test['p']:.3g} "
            f"{'<' if test['p'] < rules['significance'] else '>='} shadow.significance {rules['significance']}"
            + ("" if better else " (not significantly better)")
        )
    else:
        passed.append(
            f"they disagree on {share:.1%} of the labelled flowers (<= shadow.max_disagreement "
            f"{rules['max_disagreement']:.0%}): no significance needed"
        )
    return ("fail" if failed else "pass"), failed + passed


def shadow_report(log_dir: Path, version: str | None = None, params_path: Path | None = None) -> dict[str, Any]:
    """The report as a dict (what reports/shadow.json holds, less its paths). Raises NoShadowLog."""
    rules = load_params("shadow", params_path or ROOT / "params.yaml")
    records = read_shadow_log(log_dir)
    if not records:
        raise NoShadowLog(
            f"no shadow log under {log_dir} (IRIS_MONITOR_DIR): serve with a shadow (make serve SHADOW=staging), "
            "let it see traffic and send the true species of its flowers to /feedback first"
        )
    version, flowers = shadowed_flowers(records, version)
    labels, _ = read_labels(log_dir)
    champion_species = np.array([flower["champion_species"] for flower in flowers], dtype=object)
    challenger_species = np.array([flower["shadow_species"] for flower in flowers], dtype=object)
    truth_of = [labels.get((str(flower["request_id"]), int(flower["index"]))) for flower in flowers]
    labelled_mask = np.array([label is not None for label in truth_of], dtype=bool)
    truth = np.array([label["species"] for label in truth_of if label is not None], dtype=object)
    champion_l, challenger_l = champion_species[labelled_mask], challenger_species[labelled_mask]
    champion_right, challenger_right = champion_l == truth, challenger_l == truth
    p, wins, losses = mcnemar_p(challenger_right.astype(bool), champion_right.astype(bool))
    latencies = np.array([float(flower["shadow_latency_ms"]) for flower in flowers])
    champions = Counter(str(flower["champion_version"]) for flower in flowers)
    labelled = int(labelled_mask.sum())
    figures: dict[str, Any] = {
        "challenger_version": version,
        "champion_version": champions.most_common(1)[0][0],
        "champion_versions": dict(champions),
        "shadowed": len(flowers),
        "labelled": labelled,
        "agreement": round(float((champion_species == challenger_species).mean()), 6),
        "labelled_disagreement": round(float((champion_l != challenger_l).mean()), 6) if labelled else 0.0,
        "champion_accuracy": round(float(champion_right.mean()), 6) if labelled else None,
        "challenger_accuracy": round(float(challenger_right.mean()), 6) if labelled else None,
        "mcnemar": {"p": p, "challenger_only_right": wins, "champion_only_right": losses},
        "per_species": {
            species: {
                "labelled": int((truth == species).sum()),
                "champion_recall": recall(truth, champion_l, species),
                "challenger_recall": recall(truth, challenger_l, species),
            }
            for species in SPECIES
        },
        "confusion": {"champion": confusion(truth, champion_l), "challenger": confusion(truth, challenger_l)},
        "shadow_latency_ms": {
            f"p{q}": round(float(np.percentile(latencies, q)), 4) for q in (50, 90, 99)
        },  # per flower: the time of the shadow call that classified it (one call takes what was queued)
        "rules": {key: rules[key] for key in sorted(rules) if key != "alert_agreement"},
    }
    figures["verdict"], figures["reasons"] = judge(figures, rules)
    figures["disagreements"] = disagreements(log_dir, flowers, truth_of)
    return figures


def disagreements(log_dir: Path, flowers: list[dict[str, Any]], truth_of: list[dict | None]) -> list[dict[str, Any]]:
    """The first DISAGREEMENTS_SHOWN flowers the two models disagree on, with their measurements from the prediction
    log (same request id and row; None when rotated away) and their label."""
    shown = [
        (flower, label)
        for flower, label in zip(flowers, truth_of, strict=True)
        if flower["champion_species"] != flower["shadow_species"]
    ][:DISAGREEMENTS_SHOWN]
    logged = logged_flowers(log_dir, {str(flower["request_id"]) for flower, _ in shown})
    rows = []
    for flower, label in shown:
        key = (str(flower["request_id"]), int(flower["index"]))
        measured = logged.get(key, {})
        rows.append(
            {
                "request_id": key[0],
                "index": key[1],
                **{name: measured.get(name) for name in FEATURES},
                "champion": flower["champion_species"],
                "challenger": flower["shadow_species"],
                "label": label["species"] if label is not None else None,
            }
        )
    return rows


def render_html(report: dict[str, Any]) -> str:
    """The two models side by side for a person: figures, confusion matrices, where they disagree."""

    def matrix(table: dict[str, dict[str, int]]) -> str:
        head = "".join(f"<th>{html.escape(name)}</th>" for name in SPECIES)
        rows = "".join(
            f"<tr><th>{html.escape(actual)}</th>" + "".join(f"<td>{table[actual][p]}</td>" for p in SPECIES) + "</tr>"
            for actual in SPECIES
        )
        return f"<table><tr><th>true \\ predicted</th>{head}</tr>{rows}</table>"

    def figure(value: Any) -> str:
        return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else html.escape(str(value))

    species_rows = "".join(
        f"<tr><th>{html.escape(name)}</th><td>{per['labelled']}</td><td>{figure(per['champion_recall'])}</td>"
        f"<td>{figure(per['challenger_recall'])}</td></tr>"
        for name, per in report["per_species"].items()
    )
    disagreement_rows = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key in ("request_id", "index", *FEATURES))
        + f"<td>{html.escape(row['champion'])}</td><td>{html.escape(row['challenger'])}</td>"
        + f"<td>{html.escape(str(row['label'] or '-'))}</td></tr>"
        for row in report["disagreements"]
    )
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in report["reasons"])
    colour = {"pass": "#1a7f37", "fail": "#cf222e", "insufficient": "#9a6700"}[report["verdict"]]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shadow report: {html.escape(report["challenger_version"])}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin:0.5em 0}}
td,th{{border:1px solid #ccc;padding:0.2em 0.6em;text-align:right}}.pair{{display:flex;gap:3em}}</style></head>
<body>
<h1>Shadow report: challenger {html.escape(report["challenger_version"])} vs champion
{html.escape(report["champion_version"])}</h1>
<p>Verdict: <strong style="color:{colour}">{report["verdict"]}</strong></p><ul>{reasons}</ul>
<table>
<tr><th>shadowed flowers</th><td>{report["shadowed"]}</td></tr>
<tr><th>labelled</th><td>{report["labelled"]}</td></tr>
<tr><th>agreement (all shadowed)</th><td>{figure(report["agreement"])}</td></tr>
<tr><th>champion accuracy (labelled)</th><td>{figure(report["champion_accuracy"])}</td></tr>
<tr><th>challenger accuracy (labelled)</th><td>{figure(report["challenger_accuracy"])}</td></tr>
<tr><th>McNemar p (challenger better)</th><td>{report["mcnemar"]["p"]:.3g}</td></tr>
<tr><th>shadow latency p50 / p90 / p99 (ms)</th><td>{report["shadow_latency_ms"]["p50"]} /
{report["shadow_latency_ms"]["p90"]} / {report["shadow_latency_ms"]["p99"]}</td></tr>
</table>
<h2>Recall per species (labelled flowers)</h2>
<table><tr><th>species</th><th>labelled</th><th>champion</th><th>challenger</th></tr>{species_rows}</table>
<h2>Confusion on the labelled flowers</h2>
<div class="pair"><div><h3>champion</h3>{matrix(report["confusion"]["champion"])}</div>
<div><h3>challenger</h3>{matrix(report["confusion"]["challenger"])}</div></div>
<h2>Where they disagree (first {DISAGREEMENTS_SHOWN})</h2>
<table><tr><th>request id</th><th>row</th>{"".join(f"<th>{name}</th>" for name in FEATURES)}<th>champion</th>
<th>challenger</th><th>label</th></tr>{disagreement_rows}</table>
</body></html>
"""


def write_reports(report: dict[str, Any], json_path: Path) -> Path:
    """reports/shadow.json and, beside it, reports/shadow.html; returns the HTML's path."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    html_path = json_path.with_suffix(".html")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    html_path.write_text(render_html(report))
    return html_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-dir", type=Path, default=None, help="default: IRIS_MONITOR_DIR or .monitor/")
    parser.add_argument("--version", default="", help="the challenger's version (default: the newest in the log)")
    parser.add_argument("--json", type=Path, default=SHADOW_JSON)
    args = parser.parse_args(argv)
    args.json.unlink(missing_ok=True)  # an old verdict must never be read as this run's
    args.json.with_suffix(".html").unlink(missing_ok=True)
    log_dir = (args.log_dir or monitor_dir()).resolve()
    try:
        report = shadow_report(log_dir, args.version or None)
    except NoShadowLog as error:
        print(f"shadow-report: no verdict: {error}", file=sys.stderr)
        return 2
    report["monitor_dir"] = str(log_dir)
    html_path = write_reports(report, args.json)
    print(
        f"shadow-report: {report['verdict']}: challenger {report['challenger_version']} vs champion "
        f"{report['champion_version']}: {report['shadowed']} shadowed, {report['labelled']} labelled, agreement "
        f"{report['agreement']:.3f}"
    )
    for reason in report["reasons"]:
        print(f"  - {reason}")
    print(f"shadow-report: {args.json} and {html_path} written")
    return {"pass": 0, "fail": 1, "insufficient": 2}[report["verdict"]]


if __name__ == "__main__":
    raise SystemExit(main())

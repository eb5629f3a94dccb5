"""`make retrain`: labels -> a new data version -> a challenger -> judged against production -> staged only if better.

1. The champion: the model GTO's `production` stage holds (its model file at that commit, through DVC),
   or the pipeline's current model when nothing is in production.
2. `dvc repro --force --single-item feedback`: the labels under IRIS_MONITOR_DIR joined with the
   prediction log into data/feedback/{train,holdout}.csv (a new DVC data version) and reports/feedback.json.
   Too few labels: stop here (exit 1), the work tree as it was.
3. `dvc repro`: train (the split plus the feedback's train rows, same params) and evaluate: the challenger.
4. Both models scored on the original held-out split and the recent held-out labels; decision.decide.
5. Promoted: commit the new data/model pointers (dvc.lock, reports), release the next minor version and
   assign it `staging`. Never `production`: that stays a person's or Jenkins' `make promote`.
   Rejected: dvc.lock, reports and data/models back to HEAD's; the challenger stays in the BentoML store.
Always: reports/retrain.json (the decision) and reports/retrain.html (Evidently's classification report).

Exit status: 0 when a decision was recorded (either one), 1 when none could be made (too few labels, no
prediction log, no model), 2 when tracked files have uncommitted changes (a promotion commits). Through
make, any non-zero status is make's 2.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from iris_classifier.data.production_log import monitor_dir
from iris_classifier.data.table import read_table, validate
from iris_classifier.domain.schema import FEATURES, SPECIES, TARGET
from iris_classifier.model.pipeline import Predictor
from iris_classifier.model.store import ModelCard, ModelNotFoundError, ensure_model
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import (
    FEEDBACK_HOLDOUT_CSV,
    FEEDBACK_JSON,
    MODEL_EXPORT,
    MODEL_INFO,
    RETRAIN_HTML,
    RETRAIN_JSON,
    ROOT,
    TEST_CSV,
)
from iris_classifier.registry.stage_model import StageModelError, stage_model
from iris_classifier.registry.versions import (
    ARTIFACT,
    BIN,
    registered_versions,
    semver_key,
    stage_holds,
)
from iris_classifier.retraining.decision import Scores, decide

# What a retrain changes in git; restored from HEAD when the challenger is rejected.
PIPELINE_RECORDS = ("dvc.lock", "reports/metrics.json", "reports/confusion.csv", "reports/feedback.json")


class CannotDecide(RuntimeError):
    """No decision possible; the message says what is missing and what to run."""


@dataclass
class Contender:
    role: str  # champion | challenger
    tag: str
    version: str | None
    predictor: Predictor

    def scores(self, original: pd.DataFrame, recent: pd.DataFrame) -> Scores:
        def right(rows: pd.DataFrame) -> np.ndarray:
            if rows.empty:
                return np.zeros(0, dtype=bool)
            chosen = self.predictor.predict_proba(rows[list(FEATURES)].to_numpy(dtype=np.float64)).argmax(axis=1)
            return np.asarray(SPECIES)[chosen] == rows[TARGET].to_numpy()

        return Scores(original_accuracy=float(right(original).mean()), recent_right=right(recent))

    def predicted(self, rows: pd.DataFrame) -> list[str]:
        chosen = self.predictor.predict_proba(rows[list(FEATURES)].to_numpy(dtype=np.float64)).argmax(axis=1)
        return [SPECIES[i] for i in chosen]


def run(command: list[str], *, root: Path, env: dict[str, str] | None = None, check: bool = True) -> int:
    print("retrain: $ " + " ".join(command), flush=True)
    result = subprocess.run(command, cwd=root, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise CannotDecide(f"`{' '.join(command)}` failed with exit status {result.returncode}")
    return result.returncode


def tool(name: str) -> str:
    return str(BIN / name) if (BIN / name).exists() else name


def git(*args: str, root: Path) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()


def predictor_of(tag: str) -> Predictor:
    import bentoml

    return Predictor.from_dir(Path(bentoml.models.get(tag).path))


def champion(root: Path) -> Contender:
    """The production model, restored from DVC at its commit when the store lacks it; else the pipeline's."""
    if stage_holds("production", root) is None:
        try:
            model = ensure_model(root / MODEL_INFO.relative_to(ROOT), root / MODEL_EXPORT.relative_to(ROOT))
        except ModelNotFoundError as error:
            raise CannotDecide(f"no champion: nothing in production and no pipeline model ({error})") from error
        return Contender("champion", str(model.tag), None, Predictor.from_dir(Path(model.path)))
    try:
        held = stage_model("production", root)
    except StageModelError as error:
        raise CannotDecide(f"no champion: {error}") from error
    return Contender("champion", held.tag, held.version, predictor_of(held.tag))


def next_minor(root: Path) -> str:
    versions = sorted(registered_versions(root), key=semver_key)
    if not versions:
        return "1.0.0"
    major, minor, _ = semver_key(versions[-1])
    return f"{major}.{minor + 1}.0"


def restore(root: Path) -> None:
    """dvc.lock and the reports back to HEAD's, then the data and model files they point to."""
    run(["git", "checkout", "HEAD", "--", *PIPELINE_RECORDS], root=root, check=False)
    run([tool("dvc"), "checkout", "--quiet"], root=root, check=False)


def html_report(champion: Contender, challenger: Contender, judged: pd.DataFrame, path: Path) -> None:
    """Evidently's classification report on both judging sets: challenger (current) vs champion (reference).

    The original held-out split is included so every species is present (recent labels may hold one).
    """
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.presets import ClassificationPreset

    definition = DataDefinition(
        categorical_columns=[TARGET, "prediction"],
        numerical_columns=list(FEATURES),
        classification=[MulticlassClassification(target=TARGET, prediction_labels="prediction")],
    )

    def dataset(contender: Contender) -> Any:
        frame = judged[[*FEATURES, TARGET]].copy()
        frame["prediction"] = contender.predicted(judged)
        return Dataset.from_pandas(frame, data_definition=definition)

    snapshot = Report([ClassificationPreset()]).run(current_data=dataset(challenger), reference_data=dataset(champion))
    path.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(path))


def retrain(*, root: Path = ROOT, log_dir: Path | None = None, report_path: Path | None = None) -> dict[str, Any]:
    """The whole job; returns what reports/retrain.json says. Raises CannotDecide."""
    from iris_classifier.registry.versions import promote, release

    log_dir = (log_dir or monitor_dir()).resolve()
    report_path = report_path or root / RETRAIN_JSON.relative_to(ROOT)
    report_path.unlink(missing_ok=True)  # an old decision must never be read as this run's
    report_path.with_suffix(".html").unlink(missing_ok=True)
    params = load_params(path=root / "params.yaml")
    if git("status", "--porcelain", "--untracked-files=no", root=root):
        print(
            "retrain: refused (clean working tree): a promotion commits dvc.lock and the reports; "
            "commit or stash your changes to tracked files first",
            file=sys.stderr,
        )
        raise SystemExit(2)
    defender = champion(root)
    print(f"retrain: champion {defender.tag} ({defender.version or 'the pipeline model: nothing in production'})")

    env = {"IRIS_MONITOR_DIR": str(log_dir)}
    try:
        run([tool("dvc"), "repro", "--force", "--single-item", "feedback"], root=root, env=env)
        feedback = json.loads((root / FEEDBACK_JSON.relative_to(ROOT)).read_text())
        if feedback["prediction_log"] != "found":
            raise CannotDecide(
                f"no prediction log under {log_dir} (IRIS_MONITOR_DIR): serve the model, classify flowers and "
                "POST their true species to /feedback first"
            )
        needed = params["feedback"]["min_labels"]
        if feedback["labels_used"] < needed:
            raise CannotDecide(
                f"too few labels: {feedback['labels_used']} labelled flowers match the prediction log "
                f"({feedback['labels_unmatched']} more match none); retraining needs feedback.min_labels = {needed} "
                "(params.yaml)"
            )
        if feedback["holdout_rows"] == 0:
            raise CannotDecide("no recent label fell in the held-out part: send more labels (feedback.holdout_percent)")
        gate_passed = run([tool("dvc"), "repro"], root=root, check=False) == 0
        card = ModelCard.read(root / MODEL_INFO.relative_to(ROOT))
        if card.tag == defender.tag:
            raise CannotDecide("`dvc repro` trained no new model; see its output above")
    except BaseException:
        restore(root)
        raise
    challenger = Contender("challenger", card.tag, None, predictor_of(card.tag))
    original = validate(read_table(root / TEST_CSV.relative_to(ROOT)))
    recent = validate(read_table(root / FEEDBACK_HOLDOUT_CSV.relative_to(ROOT)), every_species=False)
    champion_scores = defender.scores(original, recent)
    challenger_scores = challenger.scores(original, recent)
    decision, reasons = decide(
        champion_scores,
        challenger_scores,
        tolerance=params["retrain"]["tolerance"],
        min_accuracy=params["evaluate"]["min_accuracy"],
        significance=params["retrain"]["significance"],
    )
    if decision == "promoted" and not gate_passed:  # the evaluate stage refused it: never stage it
        decision, reasons = "rejected", ["the evaluate stage failed (see its output above)", *reasons]
    html_path = report_path.with_suffix(".html")
    try:
        html_report(defender, challenger, pd.concat([original, recent], ignore_index=True), html_path)
        html_error = None
    except Exception as error:  # the decision never depends on the picture of it
        html_error = f"{type(error).__name__}: {error}"
        html_path.write_text(f"<html><body><p>The Evidently report failed: {html_error}</p></body></html>\n")
    report: dict[str, Any] = {
        "decision": decision,
        "reasons": reasons,
        "champion": contender_summary(defender, champion_scores),
        "challenger": contender_summary(challenger, challenger_scores),
        "labels_used": feedback["labels_used"],
        "labels_unmatched": feedback["labels_unmatched"],
        "labels_conflicting": feedback["labels_conflicting"],
        "train_rows_from_feedback": feedback["train_rows"],
        "holdout_rows": feedback["holdout_rows"],
        "monitor_dir": str(log_dir),
        "html": str(html_path),
    }
    if html_error:
        report["html_error"] = html_error
    if decision == "promoted":
        version = next_minor(root)
        run(["git", "add", "--", *PIPELINE_RECORDS], root=root)
        run(
            ["git", "commit", "--quiet", "-m", f"Retrain: {card.tag} on {feedback['labels_used']} labels (staging)"],
            root=root,
        )
        report["tags"] = [release(version, root=root), promote(version, "staging", root=root)]
        report["version"] = f"v{version}"
        report["challenger"]["version"] = f"v{version}"
        report["commit"] = git("rev-parse", "HEAD", root=root)
    else:
        restore(root)
    write_report(report, report_path)
    return report


def contender_summary(contender: Contender, scores: Scores) -> dict[str, Any]:
    return {
        "tag": contender.tag,
        "version": contender.version,
        "original_accuracy": round(scores.original_accuracy, 6),
        "recent_accuracy": None if np.isnan(scores.recent_accuracy) else round(scores.recent_accuracy, 6),
    }


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


def push(branch: str, *, root: Path = ROOT, report_path: Path | None = None) -> list[str]:
    """After a promotion: the retrain commit to `branch`, then its release and staging tags (Jenkinsfile.retrain)."""
    report_path = report_path or root / RETRAIN_JSON.relative_to(ROOT)
    try:
        report = json.loads(report_path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        raise CannotDecide(f"no readable {report_path.name}: run `make retrain` first") from None
    head = git("rev-parse", "HEAD", root=root)
    if report.get("decision") != "promoted":
        raise CannotDecide(f"the last retrain decided {report.get('decision')!r}, not 'promoted': nothing to push")
    if report.get("commit") != head:
        raise CannotDecide(f"the promoted commit {str(report.get('commit'))[:12]} is not HEAD ({head[:12]})")
    pushed = [f"HEAD:refs/heads/{branch}", *report["tags"]]
    for ref in pushed:
        run(["git", "push", "origin", ref], root=root)
    return pushed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-dir", type=Path, default=None, help="default: IRIS_MONITOR_DIR or .monitor/")
    parser.add_argument("--push", metavar="BRANCH", help="push a promotion's commit to BRANCH and its tags, then stop")
    args = parser.parse_args(argv)
    if args.push is not None:
        if not args.push:
            print("retrain-push: name the branch: make retrain-push BRANCH=main", file=sys.stderr)
            return 2
        try:
            print("retrain-push: pushed " + ", ".join(push(args.push)))
        except CannotDecide as error:
            print(f"retrain-push: refused: {error}", file=sys.stderr)
            return 1
        return 0
    try:
        report = retrain(log_dir=args.log_dir)
    except CannotDecide as error:
        print(f"retrain: no decision: {error}", file=sys.stderr)
        write_report({"decision": "none", "reasons": [str(error)]}, RETRAIN_JSON)
        return 1
    print(f"retrain: {report['decision']}")
    for reason in report["reasons"]:
        print(f"  - {reason}")
    challenger = report["challenger"]
    if report["decision"] == "promoted":
        print(f"retrain: {ARTIFACT}@{report['version']} is in staging; production is unchanged (make promote)")
    else:
        print(f"retrain: staged nothing; try the challenger locally: IRIS_MODEL_TAG={challenger['tag']} make serve")
    print(f"retrain: {RETRAIN_JSON.relative_to(ROOT)} and {RETRAIN_HTML.relative_to(ROOT)} written")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

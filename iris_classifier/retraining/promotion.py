"""Promotion to production gated on live evidence: the shadow report for that version must pass.

`make promote VERSION=x.y.z STAGE=production` assigns the stage only when
- reports/shadow.json (`make shadow-report`) judged that version `pass` against the model production serves now;
  its key figures and the file's SHA-256 go into the assignment tag's message, so `make registry`, `make which`
  and Jenkins show why the version is in production; or
- nothing is in production yet (the first production version: there is no champion to shadow it against); or
- the version held production before (a rollback to a version production already served); or
- FORCE=1 REASON="..." (an emergency): the reason, and what the report said if there is one, go into the message.
Otherwise it refuses, exit status 1, saying what evidence is missing and how to get it. Other stages: unchanged.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from iris_classifier.project.paths import ROOT
from iris_classifier.registry.stage_model import StageModelError, stage_model
from iris_classifier.registry.versions import (
    ARTIFACT,
    Refused,
    normalized,
    promote,
    registered_versions,
    stage_holds,
)
from iris_classifier.retraining.shadow_report import SHADOW_JSON

GATED_STAGE = "production"
HOW_TO_GET_EVIDENCE = (
    "serve production with the candidate as its shadow (make serve SHADOW=staging, or IRIS_SHADOW in the "
    "production pod), send the true species of the flowers it saw to /feedback, then run `make shadow-report`"
)


def held_before(version: str, stage: str, root: Path) -> str | None:
    """An assignment tag that gave `stage` to `version`'s commit, if one ever did."""
    commit = registered_versions(root).get(version)
    listing = ["git", "tag", "--list", f"{ARTIFACT}#{stage}#*", "--format=%(refname:short) %(*objectname)"]
    tags = subprocess.run(listing, cwd=root, capture_output=True, text=True, check=True).stdout.splitlines()
    for line in tags:
        tag, _, points_at = line.partition(" ")
        if commit and points_at == commit:
            return tag
    return None


def read_report(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The report and its SHA-256, or (None, None) when there is none or it is unreadable."""
    try:
        content = path.read_bytes()
        return json.loads(content), hashlib.sha256(content).hexdigest()
    except (OSError, json.JSONDecodeError):
        return None, None


def report_problem(report: dict[str, Any] | None, version: str, path: Path, root: Path) -> str | None:
    """Why the report is not evidence for promoting `version` now; None when it is."""
    if report is None:
        return f"no shadow report ({path}); {HOW_TO_GET_EVIDENCE}"
    if report.get("challenger_version") != version:
        return (
            f"{path.name} judges {report.get('challenger_version')!r}, not {version}; {HOW_TO_GET_EVIDENCE} "
            f"(make shadow-report VERSION={version.lstrip('v')})"
        )
    if report.get("verdict") != "pass":
        reasons = "; ".join(report.get("reasons", [])[:3])
        return f"the shadow report for {version} says {report.get('verdict')!r}: {reasons}"
    try:
        production = stage_model(GATED_STAGE, root)
    except StageModelError:
        return None  # production's model cannot be read here: the report's own champion stands
    if production.tag not in report.get("champion_versions", {report.get("champion_version"): 0}):
        return (
            f"the shadow report compared {version} with {report.get('champion_version')}, but production holds "
            f"{production.version} ({production.tag}) now; {HOW_TO_GET_EVIDENCE}"
        )
    return None


def evidence_text(report: dict[str, Any], digest: str, path: Path) -> str:
    """The report's key figures for the tag message."""
    return (
        f"Evidence: shadow report {path.name} sha256:{digest}\n"
        f"verdict: {report['verdict']}; challenger {report['challenger_version']} vs champion "
        f"{report['champion_version']}\n"
        f"shadowed: {report['shadowed']}; labelled: {report['labelled']}; agreement: {report['agreement']}\n"
        f"accuracy on labelled: champion {report['champion_accuracy']}, challenger {report['challenger_accuracy']}; "
        f"McNemar p = {report['mcnemar']['p']:.3g}"
    )


def gated_promote(
    version: str,
    stage: str,
    *,
    force: bool = False,
    reason: str = "",
    push: bool = False,
    root: Path = ROOT,
    report_path: Path | None = None,
) -> str | None:
    """`promote`, gated for production as the module says. Raises Refused."""
    if stage != GATED_STAGE:
        return promote(version, stage, push=push, root=root)
    version = normalized("promote", version)
    if version not in registered_versions(root):
        return promote(version, stage, push=push, root=root)  # refuses, naming what is registered
    path = report_path or root / SHADOW_JSON.relative_to(ROOT)
    report, digest = read_report(path)
    problem = None
    held = stage_holds(stage, root)
    if held is None:
        evidence = "Evidence: the first production version (nothing was in production to shadow it against)"
    elif held[0] != version and (earlier := held_before(version, stage, root)):
        evidence = f"Evidence: a rollback to a version production served before ({earlier})"
    elif held[0] == version:
        return promote(version, stage, push=push, root=root)  # says it holds it already
    elif (problem := report_problem(report, version, path, root)) is None:
        evidence = evidence_text(report, digest, path)
    elif force:
        if not reason.strip():
            raise Refused("promote", "a forced promotion says why", 'FORCE=1 needs REASON="..." (recorded in the tag)')
        evidence = f"FORCED without passing shadow evidence: {reason.strip()}\nMissing evidence: {problem}"
        if report is not None:
            evidence += f"\nShadow report {path.name} sha256:{digest}: verdict {report.get('verdict')!r}"
    else:
        raise Refused(
            "promote",
            "production needs a passing shadow report",
            f'{problem}. Emergency override: FORCE=1 REASON="..." (recorded in the tag)',
        )
    tag = promote(version, stage, push=push, root=root, evidence=evidence)
    if tag:
        print("promote: recorded in the tag's message: " + evidence.splitlines()[0])
    return tag

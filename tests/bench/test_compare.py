"""bench.compare (make bench-compare): what a contender is, what is served for it, how ratios are formed."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from bench.compare import Contender, export_source
from bench.measure import paired_ratios
from iris_classifier.project.paths import ROOT


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_a_contender_is_a_commit_with_its_switches():
    contender = Contender.parse("HEAD,IRIS_PREDICTION_LOG=0,IRIS_GC_FREEZE=0")
    assert contender.commit == git("rev-parse", "HEAD").strip()
    assert contender.env == {"IRIS_PREDICTION_LOG": "0", "IRIS_GC_FREEZE": "0"}
    assert contender.label == f"`HEAD` ({contender.commit[:7]}, IRIS_PREDICTION_LOG=0, IRIS_GC_FREEZE=0)"


def test_a_switch_without_a_value_is_refused_naming_it():
    with pytest.raises(SystemExit, match=r"'IRIS_PREDICTION_LOG' in 'HEAD,IRIS_PREDICTION_LOG' is not NAME=VALUE"):
        Contender.parse("HEAD,IRIS_PREDICTION_LOG")


def test_a_ref_git_does_not_know_is_refused_saying_what_to_do():
    with pytest.raises(SystemExit, match=r"'no-such-ref-1234' is not a commit here \(git fetch it"):
        Contender.parse("no-such-ref-1234")


def test_the_export_is_the_commits_tracked_source_and_names_its_service(tmp_path):
    # The commit that added the service: far from the work tree, so nothing can come from it.
    first = git("log", "--diff-filter=A", "--format=%H", "--", "bentofile.yaml").split()[-1]
    service = export_source(first, tmp_path)
    assert service == yaml.safe_load(git("show", f"{first}:bentofile.yaml"))["service"]
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        git("ls-tree", "-r", "--name-only", first).split()
    )
    assert (tmp_path / "service.py").read_text() == git("show", f"{first}:service.py")


def test_a_commit_before_the_service_is_refused_saying_why(tmp_path):
    root = git("rev-list", "--max-parents=0", "HEAD").split()[0]
    with pytest.raises(SystemExit, match=rf"commit {root[:7]} has no bentofile.yaml \(it predates the service\)"):
        export_source(root, tmp_path)


def test_ratios_are_paired_round_by_round():
    baseline = [1000.0, 500.0, 1000.0]  # the machine slowed down in round 2
    assert paired_ratios([900.0, 450.0, 1100.0], baseline) == pytest.approx([0.9, 0.9, 1.1])
    with pytest.raises(ValueError):  # a round missing on one side is an error, not a silent shift
        paired_ratios([900.0, 450.0], baseline)

"""Releases and promotions on a throwaway copy: GTO tags, stages, refusals, and nothing rebuilt by a promotion."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, run
from tests.registry.conftest import Copy

STATE_DIRS = ("data", "models", "reports", ".bentoml")


def registry_state(copy: Copy) -> dict:
    """What `make registry` shows of iris-classifier, as GTO's JSON: {"version": latest, "stage": {...}, ...}."""
    return json.loads(run(["gto", "show", "--json"], cwd=copy.path, env=copy.env).stdout)["iris-classifier"]


def snapshot(copy: Copy) -> dict[str, object]:
    """Everything a rebuild or retrain would touch: files' mtimes and sizes, HEAD, the commit count, the tree."""
    files = {
        str(path.relative_to(copy.path)): (path.stat().st_mtime_ns, path.stat().st_size)
        for name in STATE_DIRS
        if (copy.path / name).exists()
        for path in sorted((copy.path / name).rglob("*"))
        if path.is_file()
    }
    return {
        "files": files,
        "head": copy.git("rev-parse", "HEAD"),
        "commits": copy.git("rev-list", "--count", "--all"),
        "status": copy.git("status", "--porcelain", "--ignored"),
    }


def refused(result, rule: str) -> str:
    assert result.returncode != 0, result.stdout
    assert f"refused ({rule})" in result.stderr, result.stderr
    return result.stderr


@pytest.mark.slow
def test_release_promote_new_commit_release_promote_shows_both_stages(registry_copy):
    """The issue's acceptance sequence, then `make which`, the CI view of each tag, and a rollback."""
    copy = registry_copy
    project_tags = set(run(["git", "tag", "--list"]).stdout.split())
    first = copy.git("rev-parse", "HEAD")

    released = copy.make("release", "VERSION=1.0.0")
    assert f"iris-classifier@v1.0.0 registers commit {first[:12]}" in released.stdout
    assert "git push origin 'iris-classifier@v1.0.0'" in released.stdout  # printed, never pushed by itself
    before = snapshot(copy)
    promoted = copy.make("promote", "VERSION=1.0.0", "STAGE=production")
    assert "iris-classifier#production#1 assigns production to iris-classifier@v1.0.0" in promoted.stdout
    assert snapshot(copy) == before  # a promotion is one tag: no retrain, no Bento, no commit, no file touched

    second = copy.commit("a change after v1.0.0")
    copy.make("release", "VERSION=1.1.0")
    before = snapshot(copy)
    copy.make("promote", "VERSION=1.1.0", "STAGE=staging")
    assert snapshot(copy) == before

    assert copy.tags() == {
        "iris-classifier@v1.0.0",
        "iris-classifier#production#1",
        "iris-classifier@v1.1.0",
        "iris-classifier#staging#2",
    }
    # Annotated tags (what GTO reads and CI reacts to), on the released commits.
    assert copy.git("cat-file", "-t", "iris-classifier@v1.0.0") == "tag"
    assert copy.git("rev-list", "-n1", "iris-classifier#production#1") == first
    assert copy.git("rev-list", "-n1", "iris-classifier#staging#2") == second

    copy.make("registry")  # the people's view runs; what it shows, as data:
    state = registry_state(copy)
    assert state["version"] == "v1.1.0" and state["registered"]
    assert state["stage"] == {"staging": "v1.1.0", "production": "v1.0.0"}

    production = copy.make("which", "STAGE=production").stdout
    assert f"production: iris-classifier@v1.0.0 commit {first} (assigned by iris-classifier#production#1)" in production
    # DVC resolves the stage through the artifact dvc.yaml declares.
    assert f"model: models/iris_classifier.bentomodel at {first[:12]}" in production
    assert f"staging: iris-classifier@v1.1.0 commit {second}" in copy.make("which", "STAGE=staging").stdout

    # What CI does with each pushed ref.
    def ref(name: str) -> str:
        return copy.make("registry-ref", f"REF={name}").stdout.strip()

    assert ref("iris-classifier@v1.1.0") == "registration v1.1.0 -"
    assert ref("iris-classifier#production#1") == "assignment v1.0.0 production"
    assert ref("master") == ref("") == "none - -"

    # Rollback: production moves to v1.1.0, then back to v1.0.0 by assigning it again.
    # (v1.1.0 was never shadowed: production takes it only forced, with a reason; tests/registry/test_shadow_promotion)
    moved = copy.make("promote", "VERSION=1.1.0", "STAGE=production", "FORCE=1", "REASON=rollback drill").stdout
    assert "to roll back: make promote VERSION=1.0.0 STAGE=production" in moved
    copy.make("promote", "VERSION=1.0.0", "STAGE=production")
    assert "production: iris-classifier@v1.0.0" in copy.make("which", "STAGE=production").stdout
    assert registry_state(copy)["stage"]["production"] == "v1.0.0"
    assert ref("iris-classifier#production#4") == "assignment v1.0.0 production"
    assert ref("iris-classifier#production#3") == "stale v1.1.0 production"  # superseded: CI deploys nothing
    assert "already holds" in copy.make("promote", "VERSION=1.0.0", "STAGE=production").stdout

    assert set(run(["git", "tag", "--list"]).stdout.split()) == project_tags  # the project itself got no tag


@pytest.mark.slow
def test_every_refusal_names_its_rule_and_creates_no_tag(registry_copy):
    copy = registry_copy
    assert copy.make("which", "STAGE=production").stdout.startswith("production: no version assigned yet")

    stderr = refused(copy.make("release", "VERSION=1.0", check=False), "version must be semver")
    assert "'1.0' is not MAJOR.MINOR.PATCH" in stderr
    missing = copy.make("promote", "VERSION=9.9.9", "STAGE=staging", check=False)
    refused(missing, "only a registered version is promoted")

    copy.make("release", "VERSION=1.0.0")
    stderr = refused(copy.make("promote", "VERSION=1.0.0", "STAGE=prod", check=False), "stages are declared in .gto")
    assert "unknown stage 'prod'; one of: staging, production" in stderr
    refused(copy.make("which", "STAGE=qa", check=False), "stages are declared in .gto")
    refused(copy.make("promote", "VERSION=1.0", "STAGE=staging", check=False), "version must be semver")
    stderr = refused(
        copy.make("promote", "VERSION=1.2.0", "STAGE=staging", check=False), "only a registered version is promoted"
    )
    assert "iris-classifier@v1.2.0 does not exist (registered: v1.0.0)" in stderr
    refused(copy.make("release", "VERSION=1.1.0", check=False), "one version per commit")

    copy.commit("next")
    stderr = refused(copy.make("release", "VERSION=1.0.0", check=False), "a version is registered once")
    assert "iris-classifier@v1.0.0 already exists" in stderr

    # A dirty tree (code differs from the commit); pipeline records alone (dvc.lock, reports/) do not count.
    (copy.path / "train.py").write_text((copy.path / "train.py").read_text() + "\n# an uncommitted edit\n")
    stderr = refused(copy.make("release", "VERSION=1.1.0", check=False), "clean working tree")
    assert "uncommitted changes to train.py" in stderr
    copy.git("checkout", "--", "train.py")

    # Outputs that no longer match the commit's pipeline record: not a reproduced pipeline.
    train = copy.path / "data/prepared/train.csv"
    original = train.read_bytes()
    train.write_bytes(original + b"9.9,9.9,9.9,9.9,setosa\n")
    stderr = refused(copy.make("release", "VERSION=1.1.0", check=False), "reproduced pipeline")
    assert "`dvc status` is not clean (prepare" in stderr and "make pipeline" in stderr
    train.write_bytes(original)

    # A model that fails the accuracy gate of the commit's params.
    params = copy.path / "params.yaml"
    params.write_text(params.read_text().replace("min_accuracy: 0.9", "min_accuracy: 0.999"))
    copy.git("commit", "-qam", "a stricter gate")
    stderr = refused(copy.make("release", "VERSION=1.1.0", check=False), "accuracy gate")
    assert re.search(r"held-out accuracy 0\.9\d+ < evaluate\.min_accuracy 0\.999 \(params\.yaml\)", stderr)

    assert copy.tags() == {"iris-classifier@v1.0.0"}  # no refusal left a tag behind


def test_release_refuses_a_model_the_commit_does_not_record(registry_copy):
    """A retrained model whose dvc.lock is not committed: the tag would point at a commit naming another model."""
    copy = registry_copy
    lock = copy.path / "dvc.lock"
    lock.write_text(lock.read_text().replace("md5: ", "md5: 0", 1))
    stderr = refused(copy.make("release", "VERSION=1.0.0", check=False), "the commit records its model")
    assert "dvc.lock differs from HEAD" in stderr
    assert copy.tags() == set()


@pytest.mark.parametrize("version", ["1.0", "v1", "1.0.0-rc1", "01.0.0", "1.0.0.0", "", "latest"])
def test_versions_are_plain_semver(version, capsys):
    from iris_classifier.registry.versions import normalized

    with pytest.raises(SystemExit) as refusal:
        normalized("release", version)
    assert refusal.value.code == 1
    assert "refused (version must be semver)" in capsys.readouterr().err


def test_versions_get_gtos_v_prefix():
    from iris_classifier.registry.versions import normalized

    assert normalized("release", "1.2.3") == normalized("release", "v1.2.3") == "v1.2.3"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {"registry_version": "v1.2.3", "registry_ref": "iris-classifier@v1.2.3"},
            {"registry_version": "v1.2.3", "registry": "iris-classifier@v1.2.3"},
        ),
        (
            {"registry_version": "unreleased", "registry_ref": "no iris-classifier@v* tag on commit abc"},
            {"registry_version": None, "registry": "unreleased: no iris-classifier@v* tag on commit abc"},
        ),
        ({}, {"registry_version": None, "registry": "unreleased: built before the registry existed"}),
        (None, {"registry_version": None, "registry": "unreleased: served from the source tree, not a built Bento"}),
    ],
)
def test_model_card_registry_fields_from_bento_labels(labels, expected):
    from iris_classifier.registry.versions import image_labels, served_release

    assert served_release(labels) == expected
    if labels is not None:
        oci = image_labels(labels, "abc123")
        assert oci["org.opencontainers.image.version"] == (expected["registry_version"] or "abc123")
        assert oci["ai.iris.model.registry_version"] == (expected["registry_version"] or "unreleased")


def test_stages_and_artifact_are_declared_once():
    import yaml

    assert yaml.safe_load((ROOT / ".gto").read_text()) == {"stages": ["staging", "production"]}
    artifact = yaml.safe_load((ROOT / "dvc.yaml").read_text())["artifacts"]["iris-classifier"]
    assert artifact["type"] == "model" and artifact["path"] == "models/iris_classifier.bentomodel"
    assert artifact["desc"] and artifact["labels"]
    assert Path(ROOT / artifact["path"]).name in (ROOT / "dvc.yaml").read_text().split("artifacts:")[0]  # a train out

"""`make score STAGE=...` / `VERSION=...` score with the registry's model: two versions that answer differently,
the older one restored from DVC at its commit when the store has lost it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from iris_classifier.domain.schema import FEATURES
from iris_classifier.model.pipeline import Predictor
from iris_classifier.scoring.columns import PROBABILITY_COLUMNS
from iris_classifier.scoring.flower_files import flowers
from tests.conftest import run
from tests.registry.conftest import Copy
from tests.scoring.conftest import completed, require_spark, score, scored_rows, summary

pytestmark = [pytest.mark.slow, pytest.mark.spark]


def second_version(copy: Copy) -> None:
    """A model trained with another seed, committed, released as 1.1.0 and promoted to staging."""
    params = yaml.safe_load((copy.path / "params.yaml").read_text())
    params["train"]["seed"] += 1
    (copy.path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], cwd=copy.path, env=copy.env)
    copy.git("add", "-A")
    copy.git("commit", "-qm", "retrain with another seed")
    copy.make("release", "VERSION=1.1.0")
    copy.make("promote", "VERSION=1.1.0", "STAGE=staging")


def store_entry(copy: Copy, tag: str) -> Path:
    name, version = tag.split(":")
    return Path(copy.env["BENTOML_HOME"]) / "models" / name / version


def test_stage_and_version_pick_the_registrys_models(production_copy, tmp_path):
    require_spark()
    copy = production_copy
    first = (copy.path / "models" / "model.json").read_text()
    second_version(copy)
    assert (copy.path / "models" / "model.json").read_text() != first
    table = tmp_path / "flowers.csv"
    flowers(3_000, bad_every=500, seed=2).to_csv(table, index=False)
    # The store loses the production model: the job's model is restored from DVC at v1.0.0's commit.
    production_tag = json.loads(first)["tag"]
    run(["bentoml", "models", "delete", production_tag, "-y"], cwd=copy.path, env=copy.env)
    assert not store_entry(copy, production_tag).exists()

    production = score(table, tmp_path / "production", "STAGE=production", "FORMAT=csv", cwd=copy.path, env=copy.env)
    assert production.returncode == 0, completed(production)
    staging = score(table, tmp_path / "staging", "VERSION=1.1.0", cwd=copy.path, env=copy.env)
    assert staging.returncode == 0, completed(staging)

    old, new = scored_rows(tmp_path / "production", "csv"), scored_rows(tmp_path / "staging")
    staging_tag = json.loads((copy.path / "models" / "model.json").read_text())["tag"]
    assert set(old["model_version"]) == {production_tag} and set(new["model_version"]) == {staging_tag}
    assert summary(tmp_path / "production")["registry_version"] == "v1.0.0"
    assert summary(tmp_path / "staging")["registry_version"] == "v1.1.0"
    assert (old["error"] == "").sum() == (new["error"].isna()).sum() == 3_000 - 6
    # Each version's numbers are its own model's, bit for bit; and the two models disagree somewhere.
    for rows, tag, valid in ((old, production_tag, old["error"] == ""), (new, staging_tag, new["error"].isna())):
        expected = Predictor.from_dir(store_entry(copy, tag)).predict_proba(
            rows.loc[valid, list(FEATURES)].astype(np.float64).to_numpy()
        )
        assert (rows.loc[valid, list(PROBABILITY_COLUMNS)].astype(np.float64).to_numpy() == expected).all()
    valid = new["error"].isna()
    assert (
        old.loc[valid, list(PROBABILITY_COLUMNS)].astype(np.float64) != new.loc[valid, list(PROBABILITY_COLUMNS)]
    ).any(axis=None)

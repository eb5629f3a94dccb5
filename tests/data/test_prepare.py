"""The `prepare` stage: standardization and a stratified, seeded split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import RAW_CSV, STANDARDIZED_CSV, TEST_CSV, TRAIN_CSV
from stages.prepare import prepare, split

# The CSV keeps 10 significant digits, so the moments are exact to about 1e-9.
TOLERANCE = 1e-6


def test_data_prep_standardizes_each_feature(pipeline_ready):
    frame = pd.read_csv(STANDARDIZED_CSV)
    values = frame[list(FEATURES)]
    assert np.allclose(values.mean(), 0.0, atol=TOLERANCE)
    assert np.allclose(values.std(ddof=0), 1.0, atol=TOLERANCE)
    assert frame["species"].tolist() == pd.read_csv(RAW_CSV)["species"].tolist()


def test_split_is_stratified_and_disjoint(pipeline_ready):
    train, test = pd.read_csv(TRAIN_CSV), pd.read_csv(TEST_CSV)
    test_size = load_params("prepare")["test_size"]
    assert len(test) == round(150 * test_size) and len(train) + len(test) == 150
    assert test["species"].value_counts().to_dict() == {s: len(test) // 3 for s in SPECIES}
    assert train["species"].value_counts().to_dict() == {s: len(train) // 3 for s in SPECIES}
    raw = pd.read_csv(RAW_CSV)
    both = pd.concat([train, test]).sort_values([*FEATURES, "species"]).reset_index(drop=True)
    assert both.equals(raw.sort_values([*FEATURES, "species"]).reset_index(drop=True))


def test_split_is_identical_across_runs(pipeline_ready, tmp_path):
    params = load_params("prepare")
    outputs = {name: tmp_path / f"{name}.csv" for name in ("standardized", "train", "test")}
    prepare(test_size=params["test_size"], seed=params["seed"], raw=RAW_CSV, **outputs)
    assert outputs["train"].read_bytes() == TRAIN_CSV.read_bytes()
    assert outputs["test"].read_bytes() == TEST_CSV.read_bytes()
    assert outputs["standardized"].read_bytes() == STANDARDIZED_CSV.read_bytes()


def test_another_seed_gives_another_split(pipeline_ready):
    raw = pd.read_csv(RAW_CSV)
    _, first = split(raw, test_size=0.2, seed=1)
    _, second = split(raw, test_size=0.2, seed=2)
    assert not first.equals(second)

"""The `train` stage: what lands in the BentoML store, with its provenance."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from iris_classifier.data.table import file_md5
from iris_classifier.domain.schema import EXAMPLE_FLOWERS, FEATURES, SPECIES
from iris_classifier.model.files import ONNX_FILE, PIPELINE_FILE
from iris_classifier.model.pipeline import Predictor
from iris_classifier.model.store import ModelCard
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import TRAIN_CSV
from iris_classifier.project.stage_code import stage_code_md5
from tests.conftest import ROOT


def dvc_lock_md5(stage: str, path: str) -> str:
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    return next(dep["md5"] for dep in lock["stages"][stage]["deps"] if dep["path"] == path)


def test_train_model_is_in_the_store_and_predicts_from_raw_cm(stored_model):
    import joblib

    files = {p.name for p in Path(stored_model.path).iterdir()}
    assert {PIPELINE_FILE, ONNX_FILE} <= files
    pipeline = joblib.load(Path(stored_model.path) / PIPELINE_FILE)
    assert [name for name, _ in pipeline.steps] == ["scale", "classify"]
    rows = np.array([[EXAMPLE_FLOWERS[s][f] for f in FEATURES] for s in SPECIES])
    assert pipeline.predict(rows).tolist() == [0, 1, 2]


def test_model_metadata_names_its_training_data_and_code(stored_model, model_card):
    metadata, labels = stored_model.info.metadata, stored_model.info.labels
    assert str(stored_model.tag) == model_card.tag
    assert ModelCard.from_store_entry(stored_model) == model_card
    # The DVC hash of the training data, as dvc.lock records it for the train stage.
    assert labels["train_data_md5"] == metadata["train_data_md5"] == file_md5(TRAIN_CSV)
    assert metadata["train_data_md5"] == dvc_lock_md5("train", "data/prepared/train.csv")
    # The code the train stage runs, by content (a commit would change with any edit, a README typo included).
    assert labels["code_md5"] == metadata["code_md5"] == stage_code_md5("train")
    assert "git_commit" not in labels and "git_commit" not in metadata
    assert json.loads(metadata["params"]) == load_params("train")
    assert metadata["features"] == list(FEATURES) and metadata["species"] == list(SPECIES)
    assert metadata["fast_path"] == "onnx" and metadata["onnx_conversion_error"] == ""
    assert set(metadata["library_versions"]) >= {"scikit-learn", "bentoml", "onnxruntime", "python"}
    assert re.fullmatch(r"3\.\d+", metadata["library_versions"]["python"])  # no patch release: not a model byte
    for name in FEATURES:
        low, high = metadata["feature_ranges_cm"][name]
        assert 0 < low < high


def test_feature_ranges_are_those_of_the_training_split(stored_model):
    import pandas as pd

    train = pd.read_csv(TRAIN_CSV)
    ranges = stored_model.info.metadata["feature_ranges_cm"]
    assert ranges == {name: [train[name].min(), train[name].max()] for name in FEATURES}


def test_both_backends_load_from_the_store_entry(stored_model):
    assert Predictor.from_dir(Path(stored_model.path)).backend == "onnx"
    assert Predictor.from_dir(Path(stored_model.path), prefer="sklearn").backend == "sklearn"

"""The forest as a lookup table (model/grid.py) gives the ONNX session's votes bit for bit, edges included."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iris_classifier.domain.schema import FEATURES
from iris_classifier.model.files import GRID_FILE, ONNX_FILE
from iris_classifier.model.grid import VoteGrid, cells, grid_json
from iris_classifier.model.pipeline import Predictor


@pytest.fixture(scope="module")
def table_and_trees(stored_model) -> tuple[Predictor, Predictor]:
    path = Path(stored_model.path)
    return Predictor.from_dir(path), Predictor.from_dir(path, prefer="onnx-trees")


def test_the_stored_forest_has_its_thresholds_and_the_service_loads_them_as_a_table(stored_model, table_and_trees):
    grid = json.loads((Path(stored_model.path) / GRID_FILE).read_text())
    assert grid["mode"] == "BRANCH_LEQ"
    assert len(grid["thresholds"]) == len(FEATURES)
    for values in grid["thresholds"]:
        assert values == sorted(set(values)) and len(values) > 1
        assert values == np.asarray(values, dtype=np.float32).astype(float).tolist()  # float32 values, exactly
    table, trees = table_and_trees
    assert table.grid is not None and trees.grid is None
    assert table.grid.cells == cells(grid["thresholds"]) == len(table.grid.table)
    # Read from the converted model, the same as when it was trained.
    assert json.loads(grid_json((Path(stored_model.path) / ONNX_FILE).read_bytes(), len(FEATURES))) == grid


def test_a_batch_gets_the_sessions_probabilities_bit_for_bit_inside_and_outside_the_training_ranges(
    stored_model, table_and_trees
):
    table, trees = table_and_trees
    ranges = stored_model.info.metadata["feature_ranges_cm"]
    low = np.array([ranges[f][0] for f in FEATURES]) - 2
    high = np.array([ranges[f][1] for f in FEATURES]) + 2
    rng = np.random.default_rng(11)
    rows = np.concatenate([rng.uniform(low, high, size=(50_000, 4)), np.round(rng.uniform(low, high, (50_000, 4)), 1)])
    assert np.array_equal(table.predict_proba(rows), trees.predict_proba(rows))
    some = rows[::97].tolist()
    assert [table.predict_one(row) for row in some] == [trees.predict_one(row) for row in some]


def test_rows_exactly_on_a_threshold_and_one_float32_step_either_side_get_the_sessions_votes(table_and_trees):
    table, trees = table_and_trees
    grid = table.grid
    middle = np.array([values[len(values) // 2] for values in grid.thresholds], dtype=np.float32)
    for feature, values in enumerate(grid.thresholds):
        on_and_beside = np.concatenate(
            [values, np.nextafter(values, np.float32(np.inf)), np.nextafter(values, np.float32(-np.inf))]
        )
        rows = np.tile(middle, (len(on_and_beside), 1))
        rows[:, feature] = on_and_beside
        expected = trees._votes(rows)
        assert np.array_equal(grid.votes(rows), expected), f"feature {FEATURES[feature]}"
        assert [grid.votes_one(row) for row in rows.astype(float).tolist()] == expected.tolist()


def _one_split_model(mode: str, threshold: float) -> bytes:
    """One tree: feature 0 against `threshold` (true branch: class 0), as an ONNX model made by hand."""
    from onnx import TensorProto, helper

    node = helper.make_node(
        "TreeEnsembleClassifier",
        ["X"],
        ["label", "probabilities"],
        domain="ai.onnx.ml",
        classlabels_int64s=[0, 1, 2],  # three classes: two would take ONNX's binary path
        nodes_treeids=[0, 0, 0],
        nodes_nodeids=[0, 1, 2],
        nodes_featureids=[0, 0, 0],
        nodes_modes=[mode, "LEAF", "LEAF"],
        nodes_values=[threshold, 0.0, 0.0],
        nodes_truenodeids=[1, 0, 0],
        nodes_falsenodeids=[2, 0, 0],
        class_treeids=[0, 0],
        class_nodeids=[1, 2],
        class_ids=[0, 1],
        class_weights=[1.0, 1.0],
        post_transform="NONE",
    )
    graph = helper.make_graph(
        [node],
        "one_split",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 3)])
    return model.SerializeToString()


@pytest.mark.parametrize("mode", ["BRANCH_LEQ", "BRANCH_LT"])
def test_either_comparison_puts_a_value_equal_to_the_threshold_on_the_sessions_side(mode):
    import onnxruntime as ort

    onnx_bytes = _one_split_model(mode, 0.5)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])

    def votes(rows: np.ndarray) -> np.ndarray:
        return session.run(["probabilities"], {"X": rows})[0]

    grid_spec = json.loads(grid_json(onnx_bytes, 2))
    assert grid_spec == {"mode": mode, "thresholds": [[0.5], []]}
    grid = VoteGrid.build(grid_spec, votes)
    at = np.float32(0.5)
    column = np.array([np.nextafter(at, np.float32(-1)), at, np.nextafter(at, np.float32(1))], dtype=np.float32)
    rows = np.stack([column, np.zeros(3, dtype=np.float32)], axis=1)
    expected = votes(rows)
    # The value on the threshold goes with the smaller one under <=, with the bigger one under <.
    assert expected[1].tolist() == ([1.0, 0.0, 0.0] if mode == "BRANCH_LEQ" else [0.0, 1.0, 0.0])
    assert np.array_equal(grid.votes(rows), expected)  # a few rows: bisect
    assert np.array_equal(grid.votes(np.repeat(rows, 5, axis=0)), np.repeat(expected, 5, axis=0))  # numpy
    assert [grid.votes_one(row) for row in rows.astype(float).tolist()] == expected.tolist()


def test_a_model_that_is_not_one_tree_ensemble_or_whose_grid_is_too_big_has_no_table():
    from sklearn.datasets import load_iris

    from iris_classifier.model.pipeline import build_pipeline, to_onnx_bytes

    x, y = load_iris(return_X_y=True)
    linear = build_pipeline(estimator="logistic_regression").fit(x, y)
    assert grid_json(to_onnx_bytes(linear), len(FEATURES)) is None
    forest = build_pipeline(estimator="random_forest", n_estimators=5, seed=0).fit(x, y)
    forest_onnx = to_onnx_bytes(forest)
    spec = json.loads(grid_json(forest_onnx, len(FEATURES)))
    assert grid_json(forest_onnx, len(FEATURES), max_cells=cells(spec["thresholds"]) - 1) is None

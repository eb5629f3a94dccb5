"""Build, convert and run the classifier: the sklearn pipeline is the reference, ONNX the fast path."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.model.files import GRID_FILE, ONNX_FILE, PIPELINE_FILE
from iris_classifier.model.grid import VoteGrid
from iris_classifier.model.scaler_file import read_scaler

if TYPE_CHECKING:  # scikit-learn is imported only where a pipeline is built or loaded: not by the ONNX fast path
    from sklearn.pipeline import Pipeline

# From this many rows a call is split into one chunk of rows per core (a 10,000-flower batch: ~17 ms
# -> ~10 ms on 2 cores); below it, one thread: a flower takes microseconds and a hand-off costs more.
# Rows, not trees, are split: each row's votes are summed exactly as in a single-threaded call
# (onnxruntime's own intra-op threads split the trees, and the float32 sums then differ).
PARALLEL_FROM_ROWS = 1_000


def build_pipeline(*, estimator: str, n_estimators: int = 100, max_depth: int | None = None, seed: int = 0) -> Pipeline:
    """StandardScaler + classifier as ONE object, so serving never repeats scaling constants."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    factories = {
        "random_forest": lambda: RandomForestClassifier(
            n_estimators=n_estimators, max_depth=max_depth, random_state=seed, n_jobs=1
        ),
        "logistic_regression": lambda: LogisticRegression(max_iter=1000, random_state=seed),
        "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(
            max_iter=n_estimators, max_depth=max_depth, random_state=seed
        ),
    }
    if estimator not in factories:
        raise ValueError(f"train.estimator: unknown estimator {estimator!r}; choose one of {', '.join(factories)}")
    return Pipeline([("scale", StandardScaler()), ("classify", factories[estimator]())])


def to_onnx_bytes(pipeline: Pipeline) -> bytes:
    """Convert the fitted classifier (the step after scaling) to ONNX with plain probability tensors.

    Scaling stays in float64 numpy with the pipeline's own fitted scaler: scikit-learn trees compare
    float32(scaled x) with their thresholds, and an ONNX scaler rounds differently near a threshold.
    """
    from skl2onnx import to_onnx

    classifier = pipeline.steps[-1][1]
    sample = np.zeros((1, len(FEATURES)), dtype=np.float32)
    onnx_model = to_onnx(
        classifier, sample, options={id(classifier): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3}
    )
    return onnx_model.SerializeToString()


@dataclass
class Predictor:
    """Loaded once; answers probabilities in SPECIES order for rows of raw centimetres."""

    backend: str
    pipeline: Pipeline | None  # loaded for the scikit-learn backend only
    _session: Any = None
    _pool: ThreadPoolExecutor | None = None
    _chunks: int = 1
    _input_name: str = ""
    _mean: np.ndarray | None = None
    _scale: np.ndarray | None = None
    _output_name: str = ""
    grid: VoteGrid | None = None  # the forest as a lookup table (model/grid.py), when the entry has grid.json

    def __post_init__(self) -> None:
        # Plain-float copies of the scaler's constants, for predict_one.
        self._mean_list: list[float] = [] if self._mean is None else self._mean.tolist()
        self._scale_list: list[float] = [] if self._scale is None else self._scale.tolist()

    @classmethod
    def from_dir(cls, path: Path, *, prefer: str = "onnx", grid_in_background: bool = False) -> Predictor:
        """Load the store entry's files; the ONNX fast path when present and preferred.

        `prefer`: "onnx" (the session, and its votes as a lookup table when the entry has grid.json),
        "onnx-trees" (the session alone), "sklearn" (the pickled pipeline). With `grid_in_background` the
        table (~0.5 s of one core) is built by a thread while the session answers: the same votes either way,
        so a server is ready that much sooner (`grid` is None until then).
        """
        onnx_path = Path(path) / ONNX_FILE
        if prefer not in ("onnx", "onnx-trees") or not onnx_path.exists():
            import joblib

            return cls(backend="sklearn", pipeline=joblib.load(Path(path) / PIPELINE_FILE))
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        cores = os.cpu_count() or 1
        mean, scale = read_scaler(Path(path))  # scaler.json: no scikit-learn import at start
        predictor = cls(
            backend="onnx",
            pipeline=None,
            _session=session,
            # onnxruntime releases the GIL while it runs, so chunks of one batch run side by side.
            _pool=ThreadPoolExecutor(max_workers=cores, thread_name_prefix="onnx") if cores > 1 else None,
            _chunks=cores,
            _input_name=session.get_inputs()[0].name,
            _output_name=session.get_outputs()[1].name,  # [label, probabilities]: only the second is used
            _mean=mean,
            _scale=scale,
        )
        grid_path = Path(path) / GRID_FILE
        if prefer == "onnx" and grid_path.exists():
            spec = json.loads(grid_path.read_text())
            if grid_in_background:
                threading.Thread(target=predictor.use_grid, args=(spec,), name="vote-grid", daemon=True).start()
            else:
                predictor.use_grid(spec)
        return predictor

    def use_grid(self, spec: dict[str, Any]) -> None:
        """Answer from now on from the lookup table of grid.json's `spec`, built with this session's votes."""
        self.grid = VoteGrid.build(spec, self._votes)  # one assignment: a call sees the table or the session

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """Probabilities, shape (n, 3), columns in SPECIES order (the labels are encoded 0, 1, 2)."""
        rows = np.asarray(rows, dtype=np.float64)
        if self._session is None:
            return self.pipeline.predict_proba(rows)
        if len(rows) == 1:  # one flower: predict_one's plain floats, bit for bit the same, without numpy's overhead
            return np.array([self.predict_one(rows[0].tolist())])
        scaled = ((rows - self._mean) / self._scale).astype(np.float32)
        if self.grid is not None:
            probabilities = self.grid.votes(scaled).astype(np.float64)
        elif self._pool is not None and len(rows) >= PARALLEL_FROM_ROWS:
            chunks = np.array_split(scaled, self._chunks)
            probabilities = np.concatenate(list(self._pool.map(self._votes, chunks))).astype(np.float64)
        else:
            probabilities = self._votes(scaled).astype(np.float64)
        # Tree votes are summed in float32; renormalize so each row sums to 1 in float64.
        return probabilities / probabilities.sum(axis=1, keepdims=True)

    def _votes(self, scaled: np.ndarray) -> np.ndarray:
        return self._session.run([self._output_name], {self._input_name: scaled})[0]

    def predict_one(self, values: list[float]) -> list[float]:
        """`predict_proba` for one flower, bit for bit, in plain floats: ~4x less overhead than numpy on one row."""
        if self._session is None:
            return self.predict_proba(np.array([values], dtype=np.float64))[0].tolist()
        # The same float64 arithmetic as predict_proba, element by element, then the same rounding to float32.
        scaled = [
            (value - mean) / scale for value, mean, scale in zip(values, self._mean_list, self._scale_list, strict=True)
        ]
        if self.grid is not None:
            votes = self.grid.votes_one(scaled)
        else:
            votes = self._votes(np.array([scaled], dtype=np.float32))[0].tolist()
        total = sum(votes)
        return [vote / total for vote in votes]


def encode_species(names: Any) -> np.ndarray:
    """Species names -> 0, 1, 2 in SPECIES order (the model's class indices)."""
    index = {name: i for i, name in enumerate(SPECIES)}
    return np.array([index[n] for n in names], dtype=np.int64)

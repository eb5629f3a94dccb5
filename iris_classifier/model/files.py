"""The file names inside a stored model (a BentoML store entry): the pipeline, its ONNX fast path, the scaler."""

PIPELINE_FILE = "pipeline.joblib"  # the scikit-learn Pipeline(StandardScaler, classifier): the reference
ONNX_FILE = "model.onnx"  # the classifier alone, converted by skl2onnx: the fast path
SCALER_FILE = "scaler.json"  # the scaler's mean and scale, so the fast path starts without scikit-learn
GRID_FILE = "grid.json"  # the forest's split thresholds per feature: its votes as a lookup table (grid.py)
# What the ONNX fast path loads (Predictor.from_dir): the files a copy of the model needs to answer as the service.
FAST_PATH_FILES = (ONNX_FILE, SCALER_FILE, GRID_FILE)

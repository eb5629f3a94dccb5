"""The model: the scikit-learn pipeline and its ONNX fast path, the scaler file, the BentoML model store and card.

May import: data, domain, project.
"""

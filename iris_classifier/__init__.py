"""The Iris classifier's shared package, in layers that follow the flow (each imports only what sits below it):

    harness     real `bentoml serve` / demo processes for tests, benchmarks and ops    (top)
    retraining  labelled feedback -> challenger -> judged against production -> staged if better
    monitoring  drift, live accuracy from labels, dashboard queries, synthetic traffic
    serving     what the service needs at request time: middlewares, V2, the prediction log, the UI
    scoring     files scored offline on Apache Spark with the service's predictor (beside serving)
    registry    GTO versions and stages, and the Bento that carries them
    model       the pipeline and its ONNX fast path, the scaler file, the model store and card
    data        the measurements table, DVC remotes
    domain      the vocabulary: features, species, bounds, payloads                     (bottom)
    project     where things live and how processes start: paths, params, environment  (bottom)

The order is written once, in pyproject.toml's import-linter contracts, and `make lint` holds it.
Entry points (train.py, service.py, stages/, demo/, ops/, bench/) sit outside and import from here.
"""

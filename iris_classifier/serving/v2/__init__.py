"""The Open Inference Protocol (KServe V2) over REST, split as MLServer splits it (`codecs` apart from `rest`).

Spec: https://github.com/kserve/open-inference-protocol (REST: health, metadata, inference). The model
takes one input tensor `measurements_cm` of shape [N, 4] (FP64 or FP32, data flat or nested row-major)
and gives `probabilities` (FP64, [N, 3]) and `species` (BYTES, [N]). The measurement rules and the batch
limit are the schema's own (`Measurement`, `MAX_BATCH_FLOWERS`).

    types    the spec's request and response shapes, as pydantic models (they validate and document)
    errors   ProtocolError, and the one handler that answers it as the spec's {"error": "..."} with a 4xx
    codec    request bodies -> an InferenceRequest and its rows of cm; answers -> response bodies
    routes   what the service's thin V2 routes call, their OpenAPI documentation, and the middleware that
             gives the framework's own errors under /v2 the spec's form

Each imports only the ones listed above it. May import: domain, and serving.answers (the request id header).
"""

"""The Open Inference Protocol (KServe V2) over REST and gRPC, split as MLServer splits it (`codecs` apart from
`rest` and `grpc`): the semantics once, each transport a thin translation of its wire format and error codes.

Spec: https://github.com/kserve/open-inference-protocol (REST: health, metadata, inference; gRPC: its
open_inference_grpc.proto). The model takes one input tensor `measurements_cm` of shape [N, 4] (FP64 or FP32,
data flat or nested row-major, or raw bytes) and gives `probabilities` (FP64, [N, 3]) and `species` (BYTES, [N]).
The measurement rules and the batch limit are the schema's own (`Measurement`, `MAX_BATCH_FLOWERS`).

    types        the spec's request and response shapes, as pydantic models (they validate and document)
    errors       ProtocolError, and the one handler that answers it as the spec's {"error": "..."} with a 4xx
    codec        request bodies -> an InferenceRequest and its rows of cm (any transport's decoder goes through
                 `decode`); answers -> response bodies
    dataplane    the protocol over one served model: metadata, readiness, and inference from a decoder
    routes       REST: what the service's thin V2 routes call, their OpenAPI documentation, and the middleware
                 that gives the framework's own errors under /v2 the spec's form
    proto        gRPC: KServe's .proto and the stubs generated from it (`make grpc-stubs`)
    grpc_codec   gRPC: a ModelInferRequest read by the codec's rules, an answer written as a ModelInferResponse
    grpc_server  gRPC: the grpc.aio server beside HTTP, its status codes, limits, health and reflection

Each imports only the ones listed above it. May import: domain, and from serving: answers (the request id
header), admission, middleware and settings (the gRPC server shares the HTTP side's budget and limits).
"""

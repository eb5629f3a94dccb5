"""gRPC messages <-> the protocol: a ModelInferRequest read as an InferenceRequest and its values (a
`RequestDecoder`), and an Inference written as a ModelInferResponse.

Both ways of carrying a tensor are read: typed `contents` (fp64_contents for FP64, fp32_contents for FP32)
and `raw_input_contents` (little-endian bytes, row-major; what tritonclient.grpc sends). The answer follows
the request's form: raw outputs for raw inputs (as Triton answers, and tritonclient.grpc reads only those),
typed contents for typed inputs (as KServe and MLServer answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from iris_classifier.domain.schema import MODEL_NAME, SPECIES
from iris_classifier.serving.v2.codec import SPECIES_BYTES, asked_outputs, passes, raw_values
from iris_classifier.serving.v2.dataplane import Inference
from iris_classifier.serving.v2.errors import ProtocolError, describe
from iris_classifier.serving.v2.proto import open_inference_grpc_pb2 as pb
from iris_classifier.serving.v2.types import PROBABILITIES, SPECIES_OUTPUT, InferenceRequest, RequestInput

# Where a datatype's values go in InferTensorContents.
CONTENTS_FIELD = {"FP64": "fp64_contents", "FP32": "fp32_contents"}
SPECIES_UTF8 = {name: name.encode() for name in SPECIES}


def parameters(message: Any) -> dict[str, Any]:
    """A map<string, InferParameter> as plain values (the one set of each parameter's oneof)."""
    return {
        key: getattr(value, value.WhichOneof("parameter_choice") or "string_param") for key, value in message.items()
    }


@dataclass
class GrpcDecoder:
    """A ModelInferRequest: its fields read as the protocol's request, its tensor's values from contents or raw."""

    message: pb.ModelInferRequest
    where: str = "inputs[0].contents"

    def request(self) -> InferenceRequest:
        message = self.message
        inputs = []
        for tensor in message.inputs:
            document: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.shape), "datatype": tensor.datatype}
            if tensor.parameters:
                document["parameters"] = parameters(tensor.parameters)
            inputs.append(document)
        request: dict[str, Any] = {"inputs": inputs}
        if message.id:
            request["id"] = message.id
        if message.parameters:
            request["parameters"] = parameters(message.parameters)
        if message.outputs:
            request["outputs"] = [
                {"name": output.name, **({"parameters": parameters(output.parameters)} if output.parameters else {})}
                for output in message.outputs
            ]
        try:
            return InferenceRequest.model_validate(request)
        except ValidationError as error:
            raise ProtocolError(describe(error.errors(include_url=False))) from None

    def values(self, tensor: RequestInput) -> Sequence[Any] | np.ndarray:
        proto = self.message.inputs[0]
        raw = self.message.raw_input_contents
        if raw:
            if len(raw) != 1:
                raise ProtocolError(f"raw_input_contents: {len(raw)} entries for 1 input; send one")
            if proto.HasField("contents"):
                raise ProtocolError("inputs[0].contents and raw_input_contents: send the values once")
            self.where = "raw_input_contents[0]"
            return raw_values(raw[0], tensor, self.where)
        field = CONTENTS_FIELD[tensor.datatype]
        wrong = [described.name for described, _ in proto.contents.ListFields() if described.name != field]
        if wrong:
            raise ProtocolError(
                f"inputs[0].contents.{wrong[0]}: a {tensor.datatype} tensor's values go in contents.{field}"
            )
        contents = getattr(proto.contents, field)
        if not contents:
            raise ProtocolError(
                f"inputs[0].contents.{field}: the tensor's values are missing (send contents.{field}, or "
                "raw_input_contents)"
            )
        self.where = f"inputs[0].contents.{field}"
        n, width = tensor.shape
        if len(contents) != n * width:
            return list(contents)  # the count is checked, and explained, by the caller
        values = np.array(contents, dtype=np.float64)  # FP32 contents are float32 values already
        return values if passes(values) else values.tolist()


def infer_response(inference: Inference, *, version: str, raw: bool) -> pb.ModelInferResponse:
    """The ModelInferResponse: the outputs asked for, in the order asked, as raw bytes or typed contents."""
    probabilities, species = inference.probabilities, inference.species
    n = len(species)
    response = pb.ModelInferResponse(model_name=MODEL_NAME, model_version=version, id=inference.request.id or "")
    for name, _ in asked_outputs(inference.request):
        if name == PROBABILITIES:
            output = response.outputs.add(name=PROBABILITIES, datatype="FP64", shape=[n, len(SPECIES)])
            if raw:
                response.raw_output_contents.append(np.ascontiguousarray(probabilities, dtype="<f8").tobytes())
            else:
                output.contents.fp64_contents.extend(probabilities.ravel().tolist())
        else:
            output = response.outputs.add(name=SPECIES_OUTPUT, datatype="BYTES", shape=[n])
            if raw:
                response.raw_output_contents.append(b"".join(map(SPECIES_BYTES.__getitem__, species)))
            else:
                output.contents.bytes_contents.extend(map(SPECIES_UTF8.__getitem__, species))
    return response

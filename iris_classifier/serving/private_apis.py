"""Every reach into a library's private internals, named once: the library version it was written for, what it
does, and the switch that turns it off for an A/B measurement. docs/private-apis.md lists them with what each
saves (measured); tests/service/test_private_apis.py checks on a served request that each is in effect, and its
failure names the reach and the version it was written for, so an upgrade never undoes one silently."""

from __future__ import annotations

import importlib.metadata
import os
from dataclasses import dataclass

# A/B measurements only (`make bench-compare CONTENDERS='HEAD HEAD,IRIS_PRIVATE_APIS_OFF=batch-fast-path'`):
# the named reaches (comma-separated) are left out; the service still serves, without what they give.
OFF_ENV = "IRIS_PRIVATE_APIS_OFF"


@dataclass(frozen=True)
class PrivateAPI:
    name: str
    library: str  # its distribution name
    written_for: str  # the version whose internals it was written against
    where: str  # the module that holds it

    def enabled(self) -> bool:
        return self.name not in os.environ.get(OFF_ENV, "").split(",")

    def tripped(self, what: str) -> str:
        """The tripwire's message: which reach stopped applying, on which version, and what was seen."""
        installed = importlib.metadata.version(self.library)
        return (
            f"private API '{self.name}' ({self.where}) was written for {self.library} {self.written_for} and no "
            f"longer applies on {self.library} {installed}: {what}. Revisit it (docs/private-apis.md)."
        )


# The versions the reaches were written against (the locks pin them; a re-lock that moves one trips its tests).
BENTOML, UVICORN = "1.4.40", "0.55.0"
BENTOML_COMPAT = "iris_classifier/serving/bentoml_compat.py"

BOUNDED_REQUEST_HEAD = PrivateAPI(
    "bounded-request-head", "uvicorn", UVICORN, "iris_classifier/serving/uvicorn_compat.py"
)
RESPONSE_START_TIMEOUT = PrivateAPI("response-start-timeout", "bentoml", BENTOML, BENTOML_COMPAT)
REQUEST_ID = PrivateAPI("request-id", "bentoml", BENTOML, BENTOML_COMPAT)
SERVED_BENTO_LABELS = PrivateAPI("served-bento-labels", "bentoml", BENTOML, BENTOML_COMPAT)
BATCH_FAST_PATH = PrivateAPI("batch-fast-path", "bentoml", BENTOML, "service.py (FlowerBatch.model_validate_json)")

PRIVATE_APIS = (BOUNDED_REQUEST_HEAD, RESPONSE_START_TIMEOUT, REQUEST_ID, SERVED_BENTO_LABELS, BATCH_FAST_PATH)

"""Runtime settings of the server, shared by the service and the benchmark's contenders."""

from __future__ import annotations

import gc
import os
from typing import Any


def server_settings() -> dict[str, Any]:
    """The BentoML server settings (a plain dict: no side effects).

    One worker: a second competes with the load generator for this machine's two cores (IRIS_WORKERS
    changes it). Access log and CORS off (IRIS_ACCESS_LOG=true turns the log on). The 30 s
    `traffic.timeout` is enforced by ResponseStartTimeout once `bentoml_compat` installs it.
    """
    return {
        "workers": int(os.environ.get("IRIS_WORKERS", "1")),
        "traffic": {"timeout": 30},
        "logging": {"access": {"enabled": os.environ.get("IRIS_ACCESS_LOG", "false") == "true"}},
        "http": {"cors": {"enabled": False}},
    }


def freeze_heap() -> None:
    """Move everything loaded so far out of the cyclic GC's reach.

    BentoML, Gradio and friends leave ~300k long-lived objects; without this, a full collection
    triggered by a 10,000-flower batch walks them all and stalls the worker for 200+ ms.
    """
    if os.environ.get("IRIS_GC_FREEZE", "1") == "0":  # for A/B measurements only
        return
    gc.collect()
    gc.freeze()

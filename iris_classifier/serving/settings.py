"""Runtime settings of the server, shared by the service and the benchmark's contenders."""

from __future__ import annotations

import gc
import os
from typing import Any

# What one request may hold, beside the admission budget (serving/admission.py) that bounds flowers in flight:
# BentoML's traffic.max_concurrency bounds requests in flight per worker, of any size (probes and /metrics
# bypass it; beyond it BentoML answers 429, given a Retry-After by ResponseStartTimeout). 1,000 is ~30x the 32
# connections that saturate a worker, so it never refuses ordinary load, and bounds what a flood of small
# requests can queue (each holds a task and its buffers: tens of MB at most).
MAX_CONCURRENCY = 1_000
# A request's head (request line and headers): at most 32 KiB, complete within 10 s of the connection opening
# or of its first byte (uvicorn_compat.BoundedHttpToolsProtocol; uvicorn's httptools protocol has no bound).
MAX_HEAD_BYTES = 32 * 1024
HEAD_TIMEOUT_SECONDS = 10.0


def server_settings() -> dict[str, Any]:
    """The BentoML server settings (a plain dict: no side effects).

    One worker: a second competes with the load generator for this machine's two cores (IRIS_WORKERS
    changes it). Access log and CORS off (IRIS_ACCESS_LOG=true turns the log on). The 30 s
    `traffic.timeout` is enforced by ResponseStartTimeout once `bentoml_compat` installs it; it also ends a
    request whose body stalls. `traffic.max_concurrency`: MAX_CONCURRENCY (IRIS_MAX_CONCURRENCY). `threads`, the
    threads BentoML runs sync APIs in (/classify_batch, /feedback): one per core (IRIS_THREADS), so two batches can
    overlap their model call (which lets go of the GIL) with the other's parsing and answer; how many batches run
    at once is the admission control's (serving/admission.py: one per CPU of the pod's quota). BentoML's default,
    one, made /classify_batch ~0.7x V2 infer's flowers/s on the same server.
    """
    return {
        "workers": int(os.environ.get("IRIS_WORKERS", "1")),
        "threads": int(os.environ.get("IRIS_THREADS") or os.cpu_count() or 1),
        "traffic": {"timeout": 30, "max_concurrency": int(os.environ.get("IRIS_MAX_CONCURRENCY") or MAX_CONCURRENCY)},
        "logging": {"access": {"enabled": os.environ.get("IRIS_ACCESS_LOG", "false") == "true"}},
        "http": {"cors": {"enabled": False}},
    }


def head_limits() -> dict[str, Any]:
    """The bounds on a request's head (IRIS_MAX_HEAD_BYTES, IRIS_HEAD_TIMEOUT_S), for uvicorn_compat."""
    return {
        "max_head_bytes": int(os.environ.get("IRIS_MAX_HEAD_BYTES") or MAX_HEAD_BYTES),
        "head_timeout": float(os.environ.get("IRIS_HEAD_TIMEOUT_S") or HEAD_TIMEOUT_SECONDS),
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

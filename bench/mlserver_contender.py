"""MLServer as a benchmark contender: the project's stored scikit-learn pipeline served by MLServer's own
scikit-learn runtime (mlserver-sklearn), so a benchmark compares servers, not models.

    from bench import mlserver_contender
    process, url = mlserver_contender.start(mlserver_contender.model_dir(), port)
    # POST {url}/v2/models/iris_classifier/infer, input "measurements_cm" [N, 4] FP64 (JSON `data`):
    # answers the output "predict_proba" [N, 3] (setosa, versicolor, virginica) unless `outputs` asks otherwise
    mlserver_contender.stop(process)

MLServer pins packages that conflict with the project's lock, so it lives in a venv of its own, `.venv-mlserver`
(gitignored), installed from bench/mlserver/requirements.lock by `make mlserver-venv` or by `start` itself.
That lock pins the project's own scikit-learn, numpy and joblib, so the stored `pipeline.joblib` unpickles as it
was saved. The server uses MLServer's defaults (one parallel inference worker beside the HTTP process, metrics
on) except: loopback only, free ports (HTTP, gRPC, metrics), `debug: false` (no access log: the project's
service runs without one too), and `predict_fn: predict_proba` (the default output gives probabilities, as
the project's V2 answer does). Python: `python -m bench.mlserver_contender install | serve`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iris_classifier.domain.schema import MODEL_NAME
from iris_classifier.project.paths import ROOT
from iris_classifier.project.processes import free_port, stop_process_group, wait_for_200

VENV = ROOT / ".venv-mlserver"
LOCK = ROOT / "bench" / "mlserver" / "requirements.lock"
PIPELINE_FILE = "pipeline.joblib"  # the scikit-learn Pipeline in a BentoML store entry (iris_classifier.model)


def install() -> Path:
    """The venv's `mlserver` command, installing the venv from the lock first when it is missing or stale."""
    mlserver = VENV / "bin" / "mlserver"
    stamp = VENV / f".installed-{hashlib.sha1(LOCK.read_bytes()).hexdigest()[:12]}"
    if stamp.exists() and mlserver.exists():
        return mlserver
    print(f"mlserver: installing MLServer into {VENV.name}/ from {LOCK.relative_to(ROOT)}", flush=True)
    uv = Path(sys.executable).parent / "uv"  # the project's lock pins uv
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(VENV)], check=True)
    subprocess.run([str(uv), "pip", "sync", "--quiet", "--python", str(python), str(LOCK)], check=True)
    for old in VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return mlserver


def model_dir() -> Path:
    """The BentoML store entry of the model the service serves (models/model.json names its tag)."""
    from iris_classifier.model.store import model_tag_to_serve, stored_model

    return Path(stored_model(model_tag_to_serve()).path)


# MLServer's two configurations: its default (one parallel inference worker process beside the HTTP/gRPC one),
# and in-process (`parallel_workers: 0`: the model runs in the server process, no hand-off; its fastest for
# big batches on this machine). `make bench` races both.
CONFIGURATIONS = {"default": None, "in-process": 0}


def start(
    model_dir: Path,
    port: int | None = None,
    *,
    log_path: Path | None = None,
    timeout: float = 180.0,
    parallel_workers: int | None = None,
) -> tuple[subprocess.Popen, str]:
    """Serve `model_dir`'s pipeline with MLServer on 127.0.0.1:`port` (a free port if None): (process, url)
    once the model answers ready; its gRPC address is `process.grpc_target`. `parallel_workers`: MLServer's
    setting (None: its default). The process leads its own group; `stop` ends it and its workers."""
    mlserver = install()
    pipeline = Path(model_dir) / PIPELINE_FILE
    if not pipeline.exists():
        raise FileNotFoundError(f"mlserver: no {PIPELINE_FILE} in {model_dir}")
    port = port or free_port()
    home = Path(tempfile.mkdtemp(prefix="mlserver-"))  # settings, and MLServer's .metrics and logs
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    if parallel_workers is not None:
        settings["parallel_workers"] = parallel_workers
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {
            "uri": str(pipeline.resolve()),
            "version": Path(model_dir).name,
            "extra": {"predict_fn": "predict_proba"},
        },
    }
    (home / "settings.json").write_text(json.dumps(settings))
    (home / MODEL_NAME).mkdir()
    (home / MODEL_NAME / "model-settings.json").write_text(json.dumps(model_settings))
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [str(mlserver), "start", str(home)],
        cwd=home,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: stop() ends the inference workers too
    )
    process.mlserver_home = home  # removed by stop()
    process.grpc_target = f"127.0.0.1:{settings['grpc_port']}"
    url = f"http://127.0.0.1:{port}"
    try:
        if wait_for_200(f"{url}/v2/models/{MODEL_NAME}/ready", process, timeout) is None:
            raise TimeoutError(f"mlserver: {MODEL_NAME} not ready on {url} after {timeout} s")
    except BaseException:
        stop(process)
        raise
    return process, url


def stop(process: subprocess.Popen | None) -> None:
    """End the MLServer that `start` started (its process group, by pid) and remove its settings folder."""
    stop_process_group(process)
    home = getattr(process, "mlserver_home", None)
    if home is not None:
        shutil.rmtree(home, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="MLServer, the benchmark's contender, in .venv-mlserver")
    parser.add_argument("command", choices=["install", "serve"])
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--parallel-workers", type=int, default=None, help="MLServer's parallel_workers (0: in-process)"
    )
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"mlserver: {install()}")
        return 0
    process, url = start(model_dir(), args.port, parallel_workers=args.parallel_workers)
    print(
        f"mlserver: serving {MODEL_NAME} on {url}, gRPC {process.grpc_target} (pid {process.pid}); Ctrl-C stops it",
        flush=True,
    )
    try:
        while process.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(process)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Build the image iris-classifier:<git commit> from the Bento, and run it as this project's container.

python -m ops.image build               bentoml containerize, with OCI labels
python -m ops.image run --port 3000     replace this project's container (by name), wait for /readyz
python -m ops.image stop                remove this project's container (by name), nothing else
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time

from iris_classifier.model.store import ModelCard, git_commit
from iris_classifier.project.paths import BENTOML, ROOT
from iris_classifier.project.processes import seconds_until_ready
from iris_classifier.registry.bento import build as build_bento
from iris_classifier.registry.versions import image_labels as registry_image_labels

IMAGE = os.environ.get("IMAGE", "iris-classifier")
CONTAINER = os.environ.get("CONTAINER", "iris-classifier")
BASE_IMAGE = "python:3.11-slim"  # what BentoML's Dockerfile for python_version 3.11 starts FROM
SOURCE = "https://github.com/example/iris-classifier"


def docker(*args: str, check: bool = True, capture: bool = False, timeout: float | None = None):
    try:
        return subprocess.run(["docker", *args], check=check, capture_output=capture, text=True, timeout=timeout)
    except FileNotFoundError:
        raise SystemExit("image: no docker client; run `make docker-engine` (installs and starts one)") from None


def require_engine() -> None:
    if docker("info", check=False, capture=True).returncode != 0:
        raise SystemExit("image: no Docker engine answers; run `make docker-engine` (or start Docker)")


def ensure_base_image() -> str:
    """The real base image if it can be pulled; else an offline stand-in with the same name."""
    if docker("image", "inspect", BASE_IMAGE, check=False, capture=True).returncode == 0:
        return "present"
    try:
        pulled = docker("pull", BASE_IMAGE, check=False, capture=True, timeout=120).returncode == 0
    except subprocess.TimeoutExpired:
        pulled = False
    if pulled:
        return "pulled"
    if os.geteuid() != 0:
        raise SystemExit(
            f"image: base image {BASE_IMAGE} is missing and cannot be pulled; an admin must provide it once: "
            "`sudo ops/agent_setup.sh <agent user>` (or `docker pull` it where a registry is reachable)"
        )
    print(f"image: cannot pull {BASE_IMAGE}; building the offline stand-in")
    subprocess.run([str(ROOT / "ops" / "standin_base.sh"), BASE_IMAGE], check=True)
    return "stand-in"


def image_tag(commit: str | None = None) -> str:
    return f"{IMAGE}:{commit or git_commit()}"


def build(shadow: str | None = None) -> str:
    """The image of this commit's Bento; with `shadow`, of the Bento that also carries that version's model
    (iris-classifier:<commit>-shadow-<version>: a production pod shadows it with IRIS_SHADOW, docs/shadow.md)."""
    import bentoml

    require_engine()
    bento = build_bento(shadow=shadow)
    commit = bento.split(":", 1)[1]  # with a shadow: <commit>-shadow-<version>
    bento_labels = bentoml.bentos.get(bento).info.labels
    card = ModelCard.read()
    base = ensure_base_image()
    labels = {
        "org.opencontainers.image.revision": bento_labels["git_commit"],  # the commit alone: a git revision
        "org.opencontainers.image.created": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "org.opencontainers.image.source": SOURCE,
        "org.opencontainers.image.title": "iris-classifier",
        "org.opencontainers.image.version": commit,
        "ai.iris.model.tag": card.tag,
        "ai.iris.model.held_out_accuracy": f"{card.held_out_accuracy:.4f}",
        "ai.iris.model.train_data_md5": card.train_data_md5,
        "ai.iris.bento": bento,
        **registry_image_labels(bento_labels, commit),  # version: the release, if any
    }
    command = [BENTOML, "containerize", bento, "-t", image_tag(commit), "--opt", "network=host"]
    for key, value in labels.items():
        command += ["--opt", f"label={key}={value}"]
    started = time.monotonic()
    # The classic builder: BuildKit's own image pulls need a registry this machine may not reach.
    # cwd: BentoML only reads a Dockerfile template below the working directory, and it copies the
    # Bento to a build context under the system temp dir.
    subprocess.run(command, check=True, env={**os.environ, "DOCKER_BUILDKIT": "0"}, cwd=tempfile.gettempdir())
    print(f"image: built {image_tag(commit)} in {time.monotonic() - started:.0f} s (base image: {base})")
    return image_tag(commit)


def wait_ready(url: str, timeout: float) -> float:
    seconds = seconds_until_ready(url, timeout, interval=0.25)
    if seconds is None:
        raise SystemExit(f"run-image: {url}/readyz not ready after {timeout:.0f} s; see `docker logs {CONTAINER}`")
    return seconds


def run(*, port: int, grpc_port: int = 3001, tag: str | None = None, timeout: float = 180) -> None:
    require_engine()
    tag = tag or image_tag()
    if docker("image", "inspect", tag, check=False, capture=True).returncode != 0:
        raise SystemExit(f"run-image: no image {tag}; run `make image` first")
    stop(quiet=True)
    docker(
        "run", "--detach", "--name", CONTAINER, "--network", "host", "--restart", "unless-stopped", "--init",
        "--env", f"BENTOML_PORT={port}", "--env", "BENTOML_HOST=127.0.0.1", "--env", f"IRIS_GRPC_PORT={grpc_port}", tag,
        capture=True,
    )  # fmt: skip
    seconds = wait_ready(f"http://127.0.0.1:{port}", timeout)
    print(
        f"run-image: {CONTAINER} ({tag}) ready on http://127.0.0.1:{port} after {seconds:.1f} s; UI at /ui/; "
        f"gRPC on 127.0.0.1:{grpc_port}"
    )


def stop(*, quiet: bool = False) -> None:
    """Remove this project's container by its name; other containers are never touched."""
    if docker("info", check=False, capture=True).returncode != 0:
        if not quiet:
            print("image: no Docker engine answers; no container to remove")
        return
    found = docker("ps", "-aq", "--filter", f"name=^/{CONTAINER}$", capture=True).stdout.strip()
    if found:
        docker("rm", "--force", CONTAINER, capture=True)
        if not quiet:
            print(f"image: removed container {CONTAINER}")


def inspect(tag: str) -> dict:
    return json.loads(docker("image", "inspect", tag, capture=True).stdout)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "run", "stop", "tag"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")))
    parser.add_argument("--grpc-port", type=int, default=int(os.environ.get("GRPC_PORT", "3001")))
    parser.add_argument("--tag", default=None, help="image to run (default: this commit's)")
    parser.add_argument("--shadow", default="", help="build: also pack this stage's or version's model")
    args = parser.parse_args(argv)
    if args.command == "build":
        build(shadow=args.shadow or None)
    elif args.command == "run":
        run(port=args.port, grpc_port=args.grpc_port, tag=args.tag)
    elif args.command == "stop":
        stop()
    else:
        print(image_tag())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image size and cold start: this commit's image against a baseline image, alternated, N runs each.

    python -m bench.start_bench [--baseline iris-classifier-lean:baseline] [--candidate iris-classifier:<commit>]
                                [--runs 3] [--output docs/benchmarks.md]

A cold start is `docker run` of a new container -> the first 200 from /readyz (polled every 50 ms on
127.0.0.1, host networking); the container is removed after each run. The images' layers are on the
local disk, as on a node that has pulled the image. Contenders alternate (A B, then B A, ...), because
this machine is shared and noisy: read the ratio. The section in the output file between the
`bench-start` markers is replaced; the rest of the file is kept.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import REPORT, write_section
from iris_classifier.project.processes import seconds_until_ready

CONTAINER = "iris-lean-bench"  # the only container this benchmark starts; removed by name
BASELINE = "iris-classifier-lean:baseline"

TARGET_MB, TARGET_S = 900, 6.0
BASELINE_RECIPE = (
    "build the baseline once from the commit to compare with, e.g. `git worktree add /tmp/iris-baseline <commit> && "
    "make -C /tmp/iris-baseline pipeline image IMAGE=iris-classifier-lean && docker tag iris-classifier-lean:<commit> "
    f"{BASELINE}` (then `git worktree remove /tmp/iris-baseline`), or pass --baseline / BASELINE_IMAGE=<image>"
)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def image_mb(tag: str) -> float:
    return json.loads(docker("image", "inspect", tag).stdout)[0]["Size"] / 1e6


def cold_start(tag: str, timeout: float = 600) -> float:
    """Seconds from `docker run` to the first 200 from /readyz; the container is removed afterwards."""
    port = free_port()
    docker("rm", "--force", CONTAINER, check=False)
    started = time.monotonic()
    docker(
        "run", "--detach", "--name", CONTAINER, "--network", "host",
        "--env", f"BENTOML_PORT={port}", "--env", "BENTOML_HOST=127.0.0.1", "--env", f"IRIS_GRPC_PORT={free_port()}",
        tag,
    )  # fmt: skip
    try:
        if seconds_until_ready(f"http://127.0.0.1:{port}", timeout) is None:
            raise SystemExit(f"bench-start: {tag} not ready after {timeout:.0f} s")
        return time.monotonic() - started  # from `docker run`, not from the first poll
    finally:
        docker("rm", "--force", CONTAINER, check=False)


def measure(contenders: dict[str, str], runs: int) -> dict[str, list[float]]:
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for run in range(runs):
        for name in names if run % 2 == 0 else names[::-1]:
            seconds[name].append(cold_start(contenders[name]))
            print(f"bench-start: run {run + 1}/{runs} {name} ({contenders[name]}): {seconds[name][-1]:.1f} s")
    return seconds


def render(contenders: dict[str, str], sizes: dict[str, float], seconds: dict[str, list[float]], base: str) -> str:
    median = {name: statistics.median(values) for name, values in seconds.items()}
    runs = {name: ", ".join(f"{s:.1f}" for s in values) for name, values in seconds.items()}
    rows = [
        f"| {name} | `{tag}` | {sizes[name]:,.0f} | {median[name]:.1f} | {runs[name]} |"
        for name, tag in contenders.items()
    ]
    lean, before, lean_mb = median["this commit"], median["baseline"], sizes["this commit"]
    verdict = {True: "met", False: "**not met**"}
    return "\n".join(
        [
            "## Image size and cold start (`make bench-start`)",
            "",
            f"Made by `make bench-start` (`bench/start_bench.py`) on {dt.date.today().isoformat()}, "
            f"{os.cpu_count()} cores, Docker {docker('version', '--format', '{{.Server.Version}}').stdout.strip()}, "
            f"{platform.machine()}. Cold start: `docker run` -> first 200 from `/readyz`, the contenders "
            f"alternated, {len(next(iter(seconds.values())))} runs each, one run. Size: `docker image inspect`. "
            f"Base image of both: `python:3.11-slim` = {base}.",
            "",
            "| image | tag | size MB | cold start s (median) | runs (s) |",
            "|---|---|---:|---:|---|",
            *rows,
            "",
            f"Ratio: {lean_mb / sizes['baseline']:.2f}x the size, {lean / before:.2f}x the start time.",
            "",
            "| target | measured | |",
            "|---|---|---|",
            f"| image <= {TARGET_MB} MB | {lean_mb:,.0f} MB | {verdict[lean_mb <= TARGET_MB]} |",
            f"| start to ready <= {TARGET_S:.0f} s (median) | {lean:.1f} s | {verdict[lean <= TARGET_S]} |",
        ]
    )


def base_image_kind() -> str:
    """The offline stand-in carries the host's CA bundle settings in its env; the real image does not."""
    env = json.loads(docker("image", "inspect", "python:3.11-slim").stdout)[0]["Config"].get("Env") or []
    size = image_mb("python:3.11-slim")
    kind = (
        "the offline Debian-bookworm stand-in (ops/standin_base.sh)"
        if any("PIP_CERT" in e for e in env)
        else "Docker Hub's"
    )
    return f"{kind}, {size:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=os.environ.get("BASELINE_IMAGE", BASELINE))
    parser.add_argument("--candidate", default=None, help="default: this commit's image (make image)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    from ops.image import image_tag

    contenders = {"baseline": args.baseline, "this commit": args.candidate or image_tag()}
    for name, tag in contenders.items():
        if docker("image", "inspect", tag, check=False).returncode != 0:
            hint = "make image" if name == "this commit" else "build it from the baseline commit: see docs/image.md"
            raise SystemExit(f"bench-start: no image {tag} ({name}); {hint}")
    sizes = {name: image_mb(tag) for name, tag in contenders.items()}
    seconds = measure(contenders, args.runs)
    section = render(contenders, sizes, seconds, base_image_kind())
    write_section("bench-start", section, args.output)
    print(section)
    print(f"bench-start: wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where an image's bytes and its start-up seconds go: layers, packages, imports, model load, server start.

    python -m ops.image_report [--tag iris-classifier:<commit>] [--top 15]

Prints Markdown (paste-ready for docs/benchmarks.md). Every figure comes from the image itself:
`docker history`, a walk over the venv's site-packages in a throwaway container (`--entrypoint python`),
`python -X importtime -c "import service"` in the Bento's folder, the model load in a fresh process,
and one real server start (`PYTHONPROFILEIMPORTTIME=1`, so every Python process that BentoML starts
logs its imports: how many of them import the service, and what each pays).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass

from iris_classifier.project.processes import seconds_until_ready

CONTAINER = "iris-lean-report"  # the only container this script starts; removed by name
MB = 1_000_000  # docker reports decimal megabytes

# Run inside the image: size of every top-level entry of site-packages (and the venv's bin/), named by
# the distribution that installed it. Prints JSON.
PACKAGE_SIZES = r"""
import json, os, sys, sysconfig
from importlib import metadata
site = sysconfig.get_paths()["purelib"]
owners = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    for file in dist.files or []:
        top = str(file).split("/")[0]
        if top.endswith(".dist-info"):
            continue
        owners.setdefault(top, name)  # scipy.libs (auditwheel's vendored libraries) is scipy's too
def size(path):
    if os.path.islink(path):
        return 0
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for file in files:
            full = os.path.join(folder, file)
            if not os.path.islink(full):
                total += os.path.getsize(full)
    return total
sizes = {}
for entry in os.listdir(site):
    if entry.endswith(".dist-info"):
        owner = entry.split("-")[0].replace("_", "-")
    else:
        owner = owners.get(entry) or owners.get(entry.split(".")[0]) or entry
    sizes[owner] = sizes.get(owner, 0) + size(os.path.join(site, entry))
bin_dir = os.path.join(sys.prefix, "bin")
for entry in os.listdir(bin_dir):
    full = os.path.join(bin_dir, entry)
    if os.path.getsize(full) > 1_000_000 and not os.path.islink(full):
        sizes[f"bin/{entry}"] = size(full)
print(json.dumps({"site_packages": site, "total": size(sys.prefix), "sizes": sizes}))
"""

# Run inside the image: the model load as the service does it, in a fresh process. Prints JSON.
MODEL_LOAD = r"""
import json, sys, time
started = time.perf_counter()
import bentoml
from iris_classifier.model.pipeline import Predictor
imported = time.perf_counter() - started
model = bentoml.models.list()[0]
before = set(sys.modules)
started = time.perf_counter()
predictor = Predictor.from_dir(model.path)
load = time.perf_counter() - started
new = {name.split(".")[0] for name in set(sys.modules) - before}
heavy = sorted(new & {"sklearn", "scipy", "onnxruntime", "joblib", "pandas", "gradio"})
started = time.perf_counter()
fallback = Predictor.from_dir(model.path, prefer="sklearn")
fallback_load = time.perf_counter() - started
print(json.dumps({"model": str(model.tag), "backend": predictor.backend, "import_s": imported, "load_s": load,
                  "imported_by_load": heavy, "fallback_backend": fallback.backend, "fallback_load_s": fallback_load}))
"""

# Run inside the running container: its Python processes, their command lines and resident memory.
PROCESSES = r"""
import json, os
found = []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode().strip()
        rss = [line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")]
    except OSError:
        continue
    if "python" in cmd or "bentoml" in cmd:
        found.append({"pid": int(pid), "cmd": cmd[:160], "rss_mb": int(rss[0].split()[1]) / 1024 if rss else 0})
print(json.dumps(found))
"""

IMPORT_LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def docker(*args: str, check: bool = True, timeout: float | None = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], check=check, capture_output=True, text=True, timeout=timeout)


def in_image(tag: str, *python_args: str) -> subprocess.CompletedProcess[str]:
    """Run the image's own Python (the venv's, in the Bento's source folder) in a throwaway container.

    BENTOML_HOME is the Bento itself, so its models/ is the model store (as `bentoml serve` of a Bento sees it).
    """
    return docker(
        "run", "--rm", "--network", "none", "--entrypoint", "python", "--workdir", "/home/bentoml/bento/src",
        "--env", "BENTOML_HOME=/home/bentoml/bento", tag, *python_args,
    )  # fmt: skip


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, timeout: float = 180) -> float:
    seconds = seconds_until_ready(f"http://127.0.0.1:{port}", timeout)
    if seconds is None:
        raise SystemExit(f"image-report: /readyz not ready after {timeout:.0f} s; see `docker logs {CONTAINER}`")
    return seconds


@dataclass
class ImportTimes:
    """`-X importtime` lines of one or more processes."""

    lines: list[tuple[int, int, int, str]]  # (self us, cumulative us, depth, module)

    @classmethod
    def parse(cls, text: str) -> ImportTimes:
        lines = []
        for match in IMPORT_LINE.finditer(text):
            self_us, cumulative_us, indent, module = match.groups()
            lines.append((int(self_us), int(cumulative_us), len(indent) // 2, module))
        return cls(lines)

    def by_package(self) -> list[tuple[str, float]]:
        """Self time summed per top-level package: what each package's own modules cost."""
        totals: dict[str, int] = defaultdict(int)
        for self_us, _, _, module in self.lines:
            totals[module.split(".")[0]] += self_us
        return sorted(((name, us / 1e6) for name, us in totals.items()), key=lambda item: -item[1])

    def top_cumulative(self, top: int) -> list[tuple[str, float]]:
        """Modules by cumulative time (their own imports included), heaviest first, each module once."""
        best: dict[str, int] = {}
        for _, cumulative_us, _, module in self.lines:
            best[module] = max(best.get(module, 0), cumulative_us)
        return sorted(((m, us / 1e6) for m, us in best.items()), key=lambda item: -item[1])[:top]

    def total(self) -> float:
        return sum(self_us for self_us, *_ in self.lines) / 1e6


def layers(tag: str, top: int) -> list[tuple[int, str]]:
    out = docker("history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}", tag).stdout
    rows = []
    for line in out.splitlines():
        size, _, created_by = line.partition("\t")
        command = created_by.replace("/bin/sh -c #(nop) ", "").replace("/bin/sh -c ", "RUN ")
        command = re.sub(r"^\|\d+ (\S+=\S* )*", "", re.sub(r"\s+", " ", command))  # the builder's ARG prefix
        rows.append((int(size), command))
    return sorted(rows, key=lambda row: -row[0])[:top]


def start_container(tag: str, *env: str) -> int:
    port = free_port()
    docker("rm", "--force", CONTAINER, check=False)
    env_args = [arg for pair in env for arg in ("--env", pair)]
    docker(
        "run", "--detach", "--name", CONTAINER, "--network", "host", "--env", f"BENTOML_PORT={port}",
        "--env", "BENTOML_HOST=127.0.0.1", "--env", f"IRIS_GRPC_PORT={free_port()}", *env_args, tag,
    )  # fmt: skip
    return port


def since_start(stamp: str, started: str) -> float:
    """Seconds between two of Docker's RFC 3339 timestamps (nanoseconds cut to microseconds)."""

    def parse(text: str) -> dt.datetime:
        head, _, fraction = text.rstrip("Z").partition(".")
        return dt.datetime.fromisoformat(f"{head}.{(fraction + '000000')[:6]}")

    return (parse(stamp) - parse(started)).total_seconds()


def server_start(tag: str) -> dict:
    """A plain start (timeline from the logs, the processes at ready), then one with every process
    logging its imports (which processes import what)."""
    port = start_container(tag)
    try:
        ready = wait_ready(port)
        processes = [p for p in json.loads(docker("exec", CONTAINER, "python", "-c", PROCESSES).stdout)
                     if not p["cmd"].startswith("python -c")]  # fmt: skip
        started = docker("inspect", "--format", "{{.State.StartedAt}}", CONTAINER).stdout.strip()
        logs = docker("logs", "--timestamps", CONTAINER)
    finally:
        docker("rm", "--force", CONTAINER, check=False)
    timeline = []
    for line in (logs.stdout + logs.stderr).splitlines():
        stamp, _, message = line.partition(" ")
        if any(event in message for event in TIMELINE_EVENTS):
            timeline.append((since_start(stamp, started), re.sub(r"^\S+ ", "", message)[:110]))
    port = start_container(tag, "PYTHONPROFILEIMPORTTIME=1")
    try:
        traced_ready = wait_ready(port)
        traced = docker("logs", CONTAINER)
    finally:
        docker("rm", "--force", CONTAINER, check=False)
    times = ImportTimes.parse(traced.stdout + traced.stderr)
    return {
        "ready_s": ready,
        "traced_ready_s": traced_ready,
        "timeline": sorted(timeline),
        "processes": processes,
        "heavy_imports": dict(Counter(module for _, _, _, module in times.lines if module in HEAVY)),
    }


TIMELINE_EVENTS = ("Service loaded", "Starting production", "Initializing gradio", "initialized", "Application startup")
# iris_classifier.domain.schema: every process that imports the service imports it (BentoML's own import of
# service.py does not show in -X importtime).
HEAVY = (
    "bentoml",
    "fastapi",
    "iris_classifier.domain.schema",
    "gradio",
    "sklearn",
    "scipy",
    "pandas",
    "joblib",
    "onnxruntime",
)


def report(tag: str, top: int) -> str:
    image = json.loads(docker("image", "inspect", tag).stdout)[0]
    out = [f"### `{tag}`", "", f"Image size (`docker image inspect`): **{image['Size'] / MB:,.0f} MB**", ""]

    out += ["Largest layers (`docker history`):", "", "| MB | layer |", "|---:|---|"]
    for size, command in layers(tag, top):
        out.append(f"| {size / MB:,.0f} | `{command[:110].replace('|', '/')}` |")

    sizes = json.loads(in_image(tag, "-c", PACKAGE_SIZES).stdout)
    ranked = sorted(sizes["sizes"].items(), key=lambda item: -item[1])
    out += ["", f"Largest packages in the venv (whole venv: {sizes['total'] / MB:,.0f} MB):", ""]
    out += ["| MB | package |", "|---:|---|"]
    out += [f"| {size / MB:,.1f} | {name} |" for name, size in ranked[:top]]

    started = time.monotonic()
    in_image(tag, "-c", "import service")
    plain = time.monotonic() - started
    traced = in_image(tag, "-X", "importtime", "-c", "import service")
    times = ImportTimes.parse(traced.stderr)
    out += [
        "",
        f"`import service` in a fresh container: {plain:.1f} s wall (container start included); "
        f"{times.total():.2f} s of imports under `-X importtime`.",
        "",
        "| package | s (own modules' self time) |",
        "|---|---:|",
    ]
    out += [f"| {name} | {seconds:.2f} |" for name, seconds in times.by_package()[:top]]
    out += ["", "| module | s cumulative |", "|---|---:|"]
    out += [f"| {module} | {seconds:.2f} |" for module, seconds in times.top_cumulative(top)]

    load = json.loads(in_image(tag, "-c", MODEL_LOAD).stdout)
    out += [
        "",
        f"Model load (`Predictor.from_dir`, fresh process, {load['model']}): backend **{load['backend']}** in "
        f"{load['load_s']:.2f} s, importing {', '.join(load['imported_by_load']) or 'nothing heavy'}; "
        f"`import bentoml` + the model module before it: {load['import_s']:.2f} s. "
        f"The scikit-learn fallback loads in {load['fallback_load_s']:.2f} s (backend {load['fallback_backend']}).",
    ]

    start = server_start(tag)
    out += [
        "",
        f"Server start (`docker run` -> first 200 from `/readyz`): {start['ready_s']:.1f} s. "
        "Timeline from the container's logs (s after the container started):",
        "",
        "| s | log line |",
        "|---:|---|",
    ]
    out += [f"| {seconds:.1f} | {line.replace('|', '/')} |" for seconds, line in start["timeline"]]
    out += ["", "Processes at ready:", "", "| pid | RSS MB | command |", "|---:|---:|---|"]
    out += [f"| {p['pid']} | {p['rss_mb']:.0f} | `{p['cmd'][:100]}` |" for p in start["processes"]]
    out += [
        "",
        f"A second start with `PYTHONPROFILEIMPORTTIME=1` (ready after {start['traced_ready_s']:.1f} s, importtime's "
        "own cost included): how many processes imported each module.",
        "",
        "| module | processes |",
        "|---|---:|",
    ]
    out += [f"| {module} | {start['heavy_imports'].get(module, 0)} |" for module in HEAVY]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tag", action="append", help="image(s) to report (default: this commit's image)")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    if docker("info", check=False).returncode != 0:
        raise SystemExit("image-report: no Docker engine answers; run `make docker-engine`")
    tags = args.tag
    if not tags:
        from ops.image import image_tag

        tags = [image_tag()]
    for tag in tags:
        if docker("image", "inspect", tag, check=False).returncode != 0:
            raise SystemExit(f"image-report: no image {tag}; run `make image` first")
        print(report(tag, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())

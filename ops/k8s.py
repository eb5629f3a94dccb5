"""Render, check and deploy the Kubernetes manifests under deploy/k8s, and prove the pod's constraints on the image.

python -m ops.k8s render --env production [--tag COMMIT] [--registry REG]   writes build/k8s/<env>.yaml
python -m ops.k8s validate build/k8s/production.yaml   strict schema check against Kubernetes 1.31
python -m ops.k8s scan build/k8s/production.yaml       checkov's Kubernetes policies (own venv, .venv-scan)
python -m ops.k8s pod-check --env production           the image in Docker under the rendered pod's constraints
python -m ops.k8s deploy --env staging                 render, apply, wait for the rollout, smoke test; undo on failure
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests
import yaml

from iris_classifier.domain.schema import EXAMPLE_FLOWERS
from iris_classifier.model.store import git_commit
from iris_classifier.project.paths import ROOT

ENVIRONMENTS = ("staging", "production")
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
BUILD = ROOT / "build" / "k8s"
KUBERNETES_VERSION = "1.31.0"
IMAGE_NAME = "iris-classifier"
DEPLOYMENT = "iris-classifier"
SCAN_VENV = ROOT / ".venv-scan"
SCAN_LOCK = ROOT / "requirements-scan.lock"
VENV_BIN = Path(sys.executable).parent  # kubectl, kubernetes-validate and uv come from the project's lock


class CheckFailed(SystemExit):
    """A check failed; the message says what and how to reproduce it."""


def tool(name: str) -> str:
    """A CLI from the project's venv (the lock pins it), else from PATH."""
    override = os.environ.get(name.upper().replace("-", "_"))  # e.g. KUBECTL=/path/to/kubectl
    if override:
        return override
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise CheckFailed(f"k8s: `{name}` not found; run `make install` (it comes from requirements.lock)")
    return found


# -- render -----------------------------------------------------------------------------------------------


def image_reference(tag: str | None = None, registry: str | None = None) -> str:
    name = f"{registry.rstrip('/')}/{IMAGE_NAME}" if registry else IMAGE_NAME
    return f"{name}:{tag or git_commit()}"


def render(env: str, *, tag: str | None = None, registry: str | None = None, out_dir: Path = BUILD) -> Path:
    """`kubectl kustomize` of the overlay with the image set, written to build/k8s/<env>.yaml."""
    if env not in ENVIRONMENTS:
        raise CheckFailed(f"k8s: ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    image = image_reference(tag, registry)
    name, _, image_tag = image.rpartition(":")
    out_dir.mkdir(parents=True, exist_ok=True)
    # A throwaway kustomization on top of the overlay sets the image, so no tracked file is edited.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".render-{env}-") as work:
        overlay = os.path.relpath(OVERLAYS / env, work)
        Path(work, "kustomization.yaml").write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "kustomize.config.k8s.io/v1beta1",
                    "kind": "Kustomization",
                    "resources": [overlay],
                    "images": [{"name": IMAGE_NAME, "newName": name, "newTag": image_tag}],
                }
            )
        )
        result = subprocess.run([tool("kubectl"), "kustomize", work], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckFailed(f"k8s: kubectl kustomize {OVERLAYS / env} failed:\n{result.stderr}")
    target = out_dir / f"{env}.yaml"
    header = f"# Rendered by `make k8s-render ENV={env}` from deploy/k8s/overlays/{env}; image {image}\n"
    target.write_text(header + result.stdout)
    return target


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict], kind: str) -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind]
    if len(matches) != 1:
        raise CheckFailed(f"k8s: expected one {kind}, found {len(matches)}")
    return matches[0]


# -- schema and policy ------------------------------------------------------------------------------------


def validate(paths: list[Path]) -> str:
    """Strict schema validation (unknown fields are errors) against the Kubernetes 1.31 OpenAPI schemas."""
    command = [tool("kubernetes-validate"), "-k", KUBERNETES_VERSION, "--strict", *map(str, paths)]
    result = subprocess.run(command, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if result.returncode != 0 or "ERROR" in output:
        raise CheckFailed(f"k8s: schema validation failed ({' '.join(command)}):\n{output}")
    return output


def scan_venv() -> Path:
    """checkov in a venv of its own (it conflicts with the main lock), installed from requirements-scan.lock."""
    python = SCAN_VENV / "bin" / "python"
    stamp = SCAN_VENV / f".installed-{hashlib.sha1(SCAN_LOCK.read_bytes()).hexdigest()[:12]}"
    if stamp.exists():
        return SCAN_VENV / "bin" / "checkov"
    print(f"k8s: installing checkov into {SCAN_VENV.name}/ from {SCAN_LOCK.name}", flush=True)
    uv = tool("uv")
    if not python.exists():
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(SCAN_VENV)], check=True)
    subprocess.run([uv, "pip", "sync", "--quiet", "--python", str(python), str(SCAN_LOCK)], check=True)
    for old in SCAN_VENV.glob(".installed-*"):
        old.unlink()
    stamp.touch()
    return SCAN_VENV / "bin" / "checkov"


@dataclass
class ScanResult:
    passed: int
    failed: int
    skipped: int
    output: str = field(repr=False)


def scan(paths: list[Path]) -> ScanResult:
    """checkov's Kubernetes checks; skips are `checkov:skip=` annotations in the manifests, each with its reason."""
    checkov = scan_venv()
    command = [str(checkov), "--framework", "kubernetes", "--compact", "--quiet", "--output", "cli"]
    for path in paths:
        command += ["--file", str(path)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run([*command, "--skip-download"], capture_output=True, text=True, env=env)
    output = result.stdout + result.stderr
    counts = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", output)
    if not counts:
        # --quiet prints nothing when all pass: ask for the summary line without it
        full = subprocess.run(
            [c for c in command if c != "--quiet"] + ["--skip-download"], capture_output=True, text=True, env=env
        )
        output = full.stdout + full.stderr
        counts = re.search(r"Passed checks: (\d+), Failed checks: (\d+), Skipped checks: (\d+)", output)
    if not counts:
        raise CheckFailed(f"k8s: checkov gave no summary ({' '.join(command)}):\n{output[-3000:]}")
    found = ScanResult(*map(int, counts.groups()), output=output)
    if found.failed or result.returncode != 0:
        raise CheckFailed(f"k8s: checkov found {found.failed} failed checks:\n{output[-6000:]}")
    return found


# -- the pod's constraints in Docker ------------------------------------------------------------------------


def _cpus(quantity: str) -> str:
    return str(int(quantity[:-1]) / 1000) if quantity.endswith("m") else quantity


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(float(quantity[: -len(suffix)]) * factor)
    return int(quantity)


@dataclass
class PodConstraints:
    """The production container's runtime constraints, as `docker run` flags."""

    image: str
    uid: int
    gid: int
    groups: list[int]
    read_only: bool
    memory_bytes: int
    cpus: str
    tmpfs: dict[str, int]  # mount path -> size in bytes (the emptyDir's sizeLimit)
    env: dict[str, str]
    cap_drop: list[str]
    no_new_privileges: bool
    container_port: int

    def docker_args(self, *, port: int) -> list[str]:
        args = ["--network", "host", "--user", f"{self.uid}:{self.gid}", "--memory", str(self.memory_bytes)]
        args += ["--memory-swap", str(self.memory_bytes), "--cpus", self.cpus]  # no swap: as on a kubelet
        args += [arg for group in self.groups for arg in ("--group-add", str(group))]
        if self.read_only:
            args.append("--read-only")
        for path, size in self.tmpfs.items():
            args += ["--tmpfs", f"{path}:rw,size={size},mode=1777"]
        for cap in self.cap_drop:
            args += ["--cap-drop", cap]
        if self.no_new_privileges:
            args += ["--security-opt", "no-new-privileges"]
        # seccomp RuntimeDefault is Docker's default profile: nothing to add.
        # The one deviation from the pod: host networking shares ports, so the test picks a free one.
        env = {**self.env, "BENTOML_PORT": str(port)}
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        return args


def pod_constraints(docs: list[dict]) -> PodConstraints:
    pod = find(docs, "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_security = pod.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}  # the container's fields win
    volumes = {volume["name"]: volume for volume in pod.get("volumes", [])}
    claims = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "PersistentVolumeClaim"}
    tmpfs = {}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit", "64Mi")
        elif "persistentVolumeClaim" in volume:  # Docker has no claims: a writable tmpfs of the claim's size
            size = claims[volume["persistentVolumeClaim"]["claimName"]]["spec"]["resources"]["requests"]["storage"]
        else:
            raise CheckFailed(f"k8s: volume {mount['name']} is not an emptyDir or a claim; pod-check cannot copy it")
        tmpfs[mount["mountPath"]] = _bytes(size)
    limits = container["resources"]["limits"]
    if any("valueFrom" in item for item in container.get("env", [])):
        raise CheckFailed("k8s: env from secrets or fields cannot be reproduced by pod-check")
    return PodConstraints(
        image=container["image"],
        uid=security["runAsUser"],
        gid=security["runAsGroup"],
        groups=[pod_security["fsGroup"]] if "fsGroup" in pod_security else [],
        read_only=security.get("readOnlyRootFilesystem", False),
        memory_bytes=_bytes(limits["memory"]),
        cpus=_cpus(str(limits["cpu"])),
        tmpfs=tmpfs,
        env={item["name"]: item["value"] for item in container.get("env", [])},
        cap_drop=security.get("capabilities", {}).get("drop", []),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        container_port=container["ports"][0]["containerPort"],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, timeout: float, container: str | None = None) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        if container and not _running(container):
            raise CheckFailed(f"k8s: container {container} exited before /readyz:\n{_logs(container)}")
        time.sleep(0.25)
    raise CheckFailed(f"k8s: {url}/readyz not ready after {timeout:.0f} s:\n{_logs(container) if container else ''}")


def _running(container: str) -> bool:
    state = subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Running}}", container], capture_output=True, text=True
    ).stdout.strip()
    return state == "true"


def _logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", "--tail", "60", container], capture_output=True, text=True)
    return result.stdout + result.stderr


@dataclass
class PodCheck:
    image: str
    docker_args: list[str]
    ready_seconds: float
    species: dict[str, str]
    metrics: str = field(repr=False)
    writes: list[str]  # `docker diff`: paths written outside the tmpfs mounts (must be none: the root is read-only)
    prediction_log_lines: int | None = None  # lines in the prediction log (IRIS_MONITOR_DIR), when the pod sets it


@contextlib.contextmanager
def running_pod(constraints: PodConstraints, *, name: str, port: int, timeout: float = 180) -> Iterator[str]:
    """The image running under the pod's constraints; yields its URL, removes the container (by name) after."""
    subprocess.run(["docker", "rm", "--force", name], capture_output=True)
    args = constraints.docker_args(port=port)
    started = subprocess.run(
        ["docker", "run", "--detach", "--name", name, *args, constraints.image], capture_output=True, text=True
    )
    if started.returncode != 0:
        raise CheckFailed(f"k8s: docker run failed: {started.stderr.strip()}")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def pod_check(render_path: Path, *, name: str = "iris-k8s-pod-check", image: str | None = None) -> PodCheck:
    constraints = pod_constraints(documents(render_path))
    if image:
        constraints.image = image
    if subprocess.run(["docker", "image", "inspect", constraints.image], capture_output=True).returncode != 0:
        raise CheckFailed(f"k8s: no image {constraints.image}; run `make image` first")
    port = free_port()
    with running_pod(constraints, name=name, port=port) as url:
        ready = wait_ready(url, timeout=180, container=name)
        species = {}
        for expected, flower in EXAMPLE_FLOWERS.items():
            answer = requests.post(f"{url}/classify", json=flower, timeout=10)
            if answer.status_code != 200:
                raise CheckFailed(f"k8s: /classify answered {answer.status_code}: {answer.text[:300]}\n{_logs(name)}")
            species[expected] = answer.json()["species"]
        ui = requests.get(f"{url}/ui/", timeout=10)
        if ui.status_code != 200:
            raise CheckFailed(f"k8s: /ui/ answered {ui.status_code}\n{_logs(name)}")
        metrics = requests.get(f"{url}/metrics", timeout=10)
        if metrics.status_code != 200:
            raise CheckFailed(f"k8s: /metrics answered {metrics.status_code}\n{_logs(name)}")
        log_lines = None
        if "IRIS_MONITOR_DIR" in constraints.env:  # the log is flushed every second by a background thread
            time.sleep(2.5)
            pattern = f"{constraints.env['IRIS_MONITOR_DIR']}/iris_predictions/data/data.*.log"
            shell = f"cat {pattern} 2>/dev/null | wc -l"
            counted = subprocess.run(["docker", "exec", name, "sh", "-c", shell], capture_output=True, text=True)
            log_lines = int(counted.stdout.strip() or 0)
        diff = subprocess.run(["docker", "diff", name], capture_output=True, text=True).stdout.split("\n")
        writes = [line for line in diff if line.strip()]
        return PodCheck(
            image=constraints.image,
            docker_args=constraints.docker_args(port=port),
            ready_seconds=ready,
            species=species,
            metrics=metrics.text,
            writes=writes,
            prediction_log_lines=log_lines,
        )


# -- deploy (needs a cluster: Jenkins' Deploy stage) ---------------------------------------------------------


def kubectl(*args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
    print("+ kubectl " + " ".join(args), flush=True)
    return subprocess.run([tool("kubectl"), *args], check=check, timeout=timeout)


def deploy(env: str, *, tag: str | None = None, registry: str | None = None, rollout_timeout: int = 300) -> None:
    """Apply the render, wait for the rollout, smoke-test through the Service; `rollout undo` if any of it fails."""
    path = render(env, tag=tag, registry=registry)
    validate([path])
    docs = documents(path)
    namespace = find(docs, "Deployment")["metadata"]["namespace"]
    commit = (tag or git_commit()).removesuffix("-dirty")
    if registry:  # the cluster pulls from the registry: push this commit's image there first
        local, remote = image_reference(tag), image_reference(tag, registry)
        subprocess.run(["docker", "tag", local, remote], check=True)
        subprocess.run(["docker", "push", remote], check=True)
    kubectl("apply", "-f", str(path))  # nothing changed yet if this fails: no undo
    try:
        kubectl("-n", namespace, "rollout", "status", f"deployment/{DEPLOYMENT}", f"--timeout={rollout_timeout}s")
        port = free_port()
        forward = subprocess.Popen(
            [tool("kubectl"), "-n", namespace, "port-forward", f"service/{DEPLOYMENT}", f"{port}:80"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", timeout=60)
            smoke = [sys.executable, "-m", "ops.smoke", "--url", f"http://127.0.0.1:{port}", "--commit", commit]
            subprocess.run(smoke, check=True, cwd=ROOT)
        finally:
            forward.send_signal(signal.SIGTERM)
            forward.wait(timeout=10)
    except (subprocess.CalledProcessError, CheckFailed, subprocess.TimeoutExpired) as error:
        print(f"k8s: deploy to {env} failed ({error}); rolling back", flush=True)
        kubectl("-n", namespace, "rollout", "undo", f"deployment/{DEPLOYMENT}", check=False)
        kubectl("-n", namespace, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s", check=False)
        raise CheckFailed(f"k8s: deploy to {env} failed and was rolled back") from None
    print(f"k8s: {env} serves {image_reference(tag, registry)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("render", "deploy"):
        sub = commands.add_parser(name)
        sub.add_argument("--env", required=True, choices=ENVIRONMENTS)
        sub.add_argument("--tag", default=os.environ.get("IMAGE_TAG") or None, help="image tag (default: git commit)")
        sub.add_argument("--registry", default=os.environ.get("REGISTRY") or None, help="e.g. registry.example.com/ml")
    for name in ("validate", "scan"):
        commands.add_parser(name).add_argument("files", nargs="+", type=Path)
    pod = commands.add_parser("pod-check")
    pod.add_argument("--env", default="production", choices=ENVIRONMENTS)
    pod.add_argument("--image", default=None, help="image to run (default: the render's)")
    args = parser.parse_args(argv)

    if args.command == "render":
        path = render(args.env, tag=args.tag, registry=args.registry)
        print(f"k8s-render: wrote {path.relative_to(ROOT)} ({image_reference(args.tag, args.registry)})")
    elif args.command == "validate":
        validate(args.files)
        print(f"k8s-validate: {len(args.files)} file(s) valid against Kubernetes {KUBERNETES_VERSION} (strict)")
    elif args.command == "scan":
        found = scan(args.files)
        print(
            f"k8s-scan: checkov passed {found.passed}, failed {found.failed}, skipped {found.skipped} (each justified)"
        )
    elif args.command == "pod-check":
        path = render(args.env)
        result = pod_check(path, image=args.image)
        print(f"pod-check: {result.image} ready in {result.ready_seconds:.1f} s under: {' '.join(result.docker_args)}")
        print(
            f"pod-check: species {result.species}; /metrics {len(result.metrics)} bytes; "
            f"prediction log {result.prediction_log_lines} lines; writes outside tmpfs:"
        )
        print("\n".join(result.writes) or "  none")
    else:
        deploy(args.env, tag=args.tag, registry=args.registry)
    return 0


if __name__ == "__main__":
    sys.exit(main())

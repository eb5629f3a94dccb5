"""Render, check and deploy the Kubernetes manifests under deploy/k8s, and prove the pod's constraints on the image.

python -m ops.k8s render --env production [--tag COMMIT | --version X.Y.Z] [--registry REG] [--out-dir DIR]
                                                       writes build/k8s/<env>.yaml; image@sha256:... when
                                                       build/image.json records that image's push
python -m ops.k8s validate build/k8s/production.yaml   strict schema check against Kubernetes 1.31
python -m ops.k8s scan build/k8s/production.yaml       checkov's Kubernetes policies (own venv, .venv-scan)
python -m ops.k8s pod-check --env production           the image in Docker under the rendered pod's constraints
python -m ops.k8s deploy --env staging --registry REG --version X.Y.Z --pubkey FILE
                                                       check the signature, render by digest, apply, wait for the
                                                       rollout, smoke test; undo on failure
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
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
from iris_classifier.registry.published import BadRecord, ImageReference, recorded
from iris_classifier.registry.versions import SEMVER
from ops import publish

ENVIRONMENTS = ("staging", "production")
OVERLAYS = ROOT / "deploy" / "k8s" / "overlays"
BUILD = ROOT / "build" / "k8s"
KUBERNETES_VERSION = "1.31.0"
IMAGE_NAME = "iris-classifier"
REVISION = "org.opencontainers.image.revision"  # the image label naming its git commit
DEPLOYMENT = "iris-classifier"
SCAN_VENV = ROOT / ".venv-scan"
SCAN_LOCK = ROOT / "requirements-scan.lock"
VENV_BIN = Path(sys.executable).parent  # kubectl, kubernetes-validate and uv come from the project's lock
RECORD = publish.RECORD  # build/image.json: what make publish-image pushed, with its digest
DIGEST_CHECK = "CKV_K8S_43"  # checkov: "Image should use digest"; skipped only while the render names a tag


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


def version_tag(version: str) -> str:
    """VERSION (x.y.z or vx.y.z) as the image tag make publish-image pushes: vX.Y.Z."""
    if version == "-":  # what the Jenkinsfile's Registry stage answers for a branch build
        raise CheckFailed(
            "k8s: VERSION is '-': this build registered no version, so it published no image to deploy; "
            "deploy a published version (a release tag's build, or a stage tag: make promote ... PUSH=1)"
        )
    if not SEMVER.match(version):
        raise CheckFailed(f"k8s: VERSION={version!r} is not MAJOR.MINOR.PATCH (e.g. VERSION=1.2.0)")
    return version if version.startswith("v") else f"v{version}"


def digest_skips() -> list[str]:
    """The base Deployment's checkov skip annotations for the digest check (a pinned render drops them)."""
    base = yaml.safe_load((OVERLAYS.parent / "base" / "deployment.yaml").read_text())
    annotations = base.get("metadata", {}).get("annotations", {})
    return [key for key, value in annotations.items() if str(value).startswith(f"{DIGEST_CHECK}=")]


def pinned_digest(image: str, record: Path) -> str | None:
    """The digest build/image.json records for this image (same repository and tag), if any."""
    try:
        published = recorded(record, ImageReference.parse(image))
    except BadRecord as error:
        raise CheckFailed(f"k8s: {error}; fix or remove it (make publish-image writes it)") from None
    return published.digest if published else None


def render(
    env: str,
    *,
    tag: str | None = None,
    registry: str | None = None,
    out_dir: Path = BUILD,
    record: Path = RECORD,
    digest: str | None = None,
    shadow: str | None = None,
) -> Path:
    """`kubectl kustomize` of the overlay with the image set, written to <out_dir>/<env>.yaml.

    `shadow` (a stage or version) sets the container's IRIS_SHADOW and IRIS_SHADOW_MODEL to that version and its
    model's tag, resolved from the registry here (iris_classifier.registry.stage_model; docs/shadow.md).

    The image is pinned (repository@sha256:...) when `digest` is given or `record` holds this image's push;
    then checkov's digest check needs no skip, and the skip annotation is left out of the render.
    """
    if env not in ENVIRONMENTS:
        raise CheckFailed(f"k8s: ENV must be one of {', '.join(ENVIRONMENTS)}, not {env!r}")
    image = image_reference(tag, registry)
    name, _, image_tag = image.rpartition(":")
    digest = digest or pinned_digest(image, record)
    setting = {"name": IMAGE_NAME, "newName": name, **({"digest": digest} if digest else {"newTag": image_tag})}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [],
        "images": [setting],
    }
    if digest and (skips := digest_skips()):
        removals = [{"op": "remove", "path": f"/metadata/annotations/{key.replace('/', '~1')}"} for key in skips]
        deployment = {"kind": "Deployment", "name": DEPLOYMENT}
        kustomization["patches"] = [{"target": deployment, "patch": json.dumps(removals)}]
    if shadow:
        kustomization.setdefault("patches", []).append(shadow_patch(shadow))
    out_dir.mkdir(parents=True, exist_ok=True)
    # A throwaway kustomization on top of the overlay sets the image, so no tracked file is edited.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".render-{env}-") as work:
        kustomization["resources"] = [os.path.relpath(OVERLAYS / env, work)]
        Path(work, "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        result = subprocess.run([tool("kubectl"), "kustomize", work], capture_output=True, text=True)
    if result.returncode != 0:
        raise CheckFailed(f"k8s: kubectl kustomize {OVERLAYS / env} failed:\n{result.stderr}")
    target = out_dir / f"{env}.yaml"
    shown = f"{name}@{digest} ({image} as published)" if digest else image
    header = f"# Rendered by `make k8s-render ENV={env}` from deploy/k8s/overlays/{env}; image {shown}\n"
    target.write_text(header + result.stdout)
    return target


def shadow_patch(name: str) -> dict:
    """A strategic-merge patch setting the container's shadow variables (merged by name) to `name`'s model."""
    from iris_classifier.registry.stage_model import StageModelError, stage_model

    try:
        model = stage_model(name)
    except StageModelError as error:
        raise CheckFailed(f"k8s: SHADOW={name}: {error}") from None
    env = [{"name": "IRIS_SHADOW", "value": model.version}, {"name": "IRIS_SHADOW_MODEL", "value": model.tag}]
    patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT},
        "spec": {"template": {"spec": {"containers": [{"name": DEPLOYMENT, "env": env}]}}},
    }
    return {"target": {"kind": "Deployment", "name": DEPLOYMENT}, "patch": yaml.safe_dump(patch)}


def documents(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(docs: list[dict], kind: str) -> dict:
    matches = [doc for doc in docs if doc["kind"] == kind]
    if len(matches) != 1:
        raise CheckFailed(f"k8s: expected one {kind}, found {len(matches)}")
    return matches[0]


# -- schema and policy ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Validated:
    path: Path
    kind: str
    name: str
    version: str  # the Kubernetes schema version it passed against


def validate(paths: list[Path]) -> list[Validated]:
    """Strict schema validation (unknown fields are errors) of every document against the Kubernetes 1.31 OpenAPI
    schemas (kubernetes-validate's API); raises CheckFailed naming each document and field that fails."""
    import kubernetes_validate

    passed, errors = [], []
    for path in paths:
        for doc in documents(path):
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            try:
                version = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                field_path = ".".join(map(str, error.path))
                errors.append(f"{path}: {name}: {field_path}: {error.message}")
                continue
            passed.append(Validated(path, doc["kind"], doc["metadata"]["name"], version))
    if errors:
        raise CheckFailed(
            "k8s: schema validation failed (Kubernetes " + KUBERNETES_VERSION + "):\n" + "\n".join(errors)
        )
    return passed


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
    skipped: list[dict] = field(default_factory=list)  # checkov's records of the skipped checks (id, resource)
    output: str = field(default="", repr=False)


def scan(paths: list[Path], *, checks: list[str] | None = None) -> ScanResult:
    """checkov's Kubernetes checks (all, or only `checks`), read from its JSON report; skips are `checkov:skip=`
    annotations in the manifests, each with its reason."""
    checkov = scan_venv()
    # Not --quiet: in JSON it drops the passed and skipped checks' records.
    command = [str(checkov), "--framework", "kubernetes", "--compact", "--output", "json", "--skip-download"]
    command += ["--check", ",".join(checks)] if checks else []
    for path in paths:
        command += ["--file", str(path)]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        raise CheckFailed(
            f"k8s: checkov wrote no JSON report ({' '.join(command)}):\n{result.stderr[-3000:]}"
        ) from None
    reports = report if isinstance(report, list) else [report]  # one framework: an object; several: a list
    summary = {key: sum(r["summary"][key] for r in reports) for key in ("passed", "failed")}
    skipped = [check for r in reports for check in r["results"].get("skipped_checks", [])]
    found = ScanResult(summary["passed"], summary["failed"], skipped, output=result.stdout)
    if found.failed or result.returncode != 0:
        failed = [
            f"{check['check_id']} {check['resource']} ({check['file_path']}): {check['check_name']}"
            for r in reports
            for check in r["results"].get("failed_checks", [])
        ]
        raise CheckFailed(f"k8s: checkov found {found.failed} failed checks:\n" + "\n".join(failed))
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

    def docker_args(self, *, port: int, grpc_port: int | None = None) -> list[str]:
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
        # The one deviation from the pod: host networking shares ports, so the test picks free ones.
        env = {**self.env, "BENTOML_PORT": str(port), "IRIS_GRPC_PORT": str(grpc_port or free_port())}
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


def prediction_log_lines(container: str, folder: str, *, expected: int, timeout: float = 15) -> int:
    """Lines in the container's prediction log, polled until `expected` are there (or the timeout: then the
    count found, for the caller's assertion to show)."""
    shell = f"cat {folder}/data.*.log 2>/dev/null | wc -l"
    deadline = time.monotonic() + timeout
    while True:
        counted = subprocess.run(["docker", "exec", container, "sh", "-c", shell], capture_output=True, text=True)
        lines = int(counted.stdout.strip() or 0)
        if lines >= expected or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


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
            folder = f"{constraints.env['IRIS_MONITOR_DIR']}/iris_predictions/data"
            log_lines = prediction_log_lines(name, folder, expected=len(species))
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


def deploy(
    env: str,
    *,
    tag: str | None = None,
    registry: str | None = None,
    public_key: Path | None = None,
    sigstore: Path | None = None,
    record: Path = RECORD,
    out_dir: Path = BUILD,
    rollout_timeout: int = 300,
    shadow: str | None = None,
) -> None:
    """Check the image's signature, render it by digest, apply, wait for the rollout, smoke-test through the
    Service; `rollout undo` if any of that fails after the apply. Nothing is applied unless the image is
    signed by `public_key` for exactly this name and the render names it by digest."""
    if not registry:
        raise CheckFailed(
            "k8s-deploy: REGISTRY is empty: a cluster pulls from a registry, and a deploy names the image by the "
            "digest the registry answered at publish. Publish first: make publish-image VERSION=x.y.z REGISTRY=..."
        )
    if not public_key:
        raise CheckFailed(
            "k8s-deploy: SIGN_PUBKEY is empty: a deploy checks the image's signature before it applies anything "
            "(the same check as make verify-image); pass the signing key's public half (a file)"
        )
    reference = ImageReference.parse(image_reference(tag, registry))
    try:  # the same check as `make verify-image`, before anything reaches the cluster
        digest = publish.verify(reference, Path(public_key), sigstore=sigstore, what="k8s-deploy")
    except publish.PublishFailed as refused:
        raise CheckFailed(f"{refused}\nk8s-deploy: nothing was applied") from None
    try:
        published = recorded(record, reference)
    except BadRecord as error:
        raise CheckFailed(f"k8s-deploy: {error}; nothing was applied") from None
    if published and published.digest != digest:
        raise CheckFailed(
            f"k8s-deploy: {reference} now answers {digest}, but {record} recorded {published.digest} when it was "
            "published: the tag was moved. Nothing was applied."
        )
    path = render(env, tag=tag, registry=registry, out_dir=out_dir, record=record, digest=digest, shadow=shadow)
    docs = documents(path)
    image = find(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
    if "@sha256:" not in image:  # never reached through render(digest=...); the rule stated where it holds
        raise CheckFailed(f"k8s-deploy: refusing {path}: its image {image} is a tag without a digest")
    validate([path])
    namespace = find(docs, "Deployment")["metadata"]["namespace"]
    commit = published.commit if published else publish.labels(reference.pinned(digest)).get(REVISION, "")
    try:
        kubectl("apply", "-f", str(path))  # nothing changed yet if this fails: no undo
    except subprocess.CalledProcessError as error:
        raise CheckFailed(
            f"k8s-deploy: kubectl apply failed (exit {error.returncode}; its message is above): is the cluster "
            "reachable with this KUBECONFIG? Nothing was applied."
        ) from None
    try:
        kubectl("-n", namespace, "rollout", "status", f"deployment/{DEPLOYMENT}", f"--timeout={rollout_timeout}s")
        port = free_port()
        forward = subprocess.Popen(
            [tool("kubectl"), "-n", namespace, "port-forward", f"service/{DEPLOYMENT}", f"{port}:80"],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(f"http://127.0.0.1:{port}", timeout=60)
            smoke = [sys.executable, "-m", "ops.smoke", "--url", f"http://127.0.0.1:{port}"]
            smoke += ["--commit", commit.removesuffix("-dirty")] if commit else []
            subprocess.run(smoke, check=True, cwd=ROOT)
        finally:
            forward.send_signal(signal.SIGTERM)
            forward.wait(timeout=10)
    except (subprocess.CalledProcessError, CheckFailed, subprocess.TimeoutExpired) as error:
        print(f"k8s: deploy to {env} failed ({error}); rolling back", flush=True)
        kubectl("-n", namespace, "rollout", "undo", f"deployment/{DEPLOYMENT}", check=False)
        kubectl("-n", namespace, "rollout", "status", f"deployment/{DEPLOYMENT}", "--timeout=300s", check=False)
        raise CheckFailed(f"k8s: deploy to {env} failed and was rolled back") from None
    print(f"k8s: {env} serves {image} ({reference}, signature checked)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("render", "deploy"):
        sub = commands.add_parser(name)
        sub.add_argument("--env", required=True, choices=ENVIRONMENTS)
        sub.add_argument("--tag", default=os.environ.get("IMAGE_TAG") or None, help="image tag (default: git commit)")
        sub.add_argument("--version", default=None, help="a published version x.y.z: the image tag vX.Y.Z")
        sub.add_argument("--registry", default=os.environ.get("REGISTRY") or None, help="e.g. registry.example.com/ml")
        sub.add_argument("--out-dir", type=Path, default=BUILD, help="where <env>.yaml goes (build/k8s)")
        sub.add_argument("--record", type=Path, default=Path(os.environ.get("IMAGE_RECORD") or RECORD))
        sub.add_argument("--shadow", default=None, help="a stage or version the pods shadow (IRIS_SHADOW)")
    commands.choices["deploy"].add_argument("--pubkey", default=os.environ.get("SIGN_PUBKEY") or None)
    for name in ("validate", "scan"):
        commands.add_parser(name).add_argument("files", nargs="+", type=Path)
    pod = commands.add_parser("pod-check")
    pod.add_argument("--env", default="production", choices=ENVIRONMENTS)
    pod.add_argument("--image", default=None, help="image to run (default: the render's)")
    args = parser.parse_args(argv)
    if getattr(args, "version", None):
        if args.tag and args.tag != version_tag(args.version):
            raise CheckFailed(f"k8s: IMAGE_TAG={args.tag} and VERSION={args.version} name two images; give one")
        args.tag = version_tag(args.version)

    if args.command == "render":
        path = render(
            args.env, tag=args.tag, registry=args.registry, out_dir=args.out_dir, record=args.record, shadow=args.shadow
        )
        image = find(documents(path), "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        print(f"k8s-render: wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({image})")
    elif args.command == "validate":
        validate(args.files)
        print(f"k8s-validate: {len(args.files)} file(s) valid against Kubernetes {KUBERNETES_VERSION} (strict)")
    elif args.command == "scan":
        found = scan(args.files)
        print(
            f"k8s-scan: checkov passed {found.passed}, failed {found.failed}, "
            f"skipped {len(found.skipped)} (each justified)"
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
        deploy(
            args.env, tag=args.tag, registry=args.registry, public_key=Path(args.pubkey) if args.pubkey else None,
            record=args.record, out_dir=args.out_dir, shadow=args.shadow,
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

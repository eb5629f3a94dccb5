"""The rendered manifests: this commit's image (by digest once published), the probes, the hardened pod, scale, and
sizes from measurements."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from iris_classifier.model.store import git_commit
from iris_classifier.project.paths import ROOT
from ops import k8s
from tests.conftest import once_per_run

# What the pod is sized from, as data (the figures come from make bench / make loadtest; see the file's header).
MEASURED = yaml.safe_load((ROOT / "deploy" / "k8s" / "measured.yaml").read_text())
DIGEST = "sha256:" + "5e" * 32


def deployment(docs):
    return k8s.find(docs, "Deployment")


def container(docs):
    (only,) = deployment(docs)["spec"]["template"]["spec"]["containers"]
    return only


def measured_cold_start_seconds() -> float:
    return float(MEASURED["cold_start_seconds"])


def measured_steady_rss_mib() -> int:
    """The load test's resident memory at the end of the run (after the ResponseStartTimeout fix)."""
    return int(MEASURED["steady_rss_mib"])


def published_record(path, *, repository: str, tag: str, digest: str = DIGEST):
    """A digest record as make publish-image writes it (build/image.json), for render tests that push nothing."""
    path.write_text(json.dumps({
        "repository": repository, "tag": tag, "digest": digest, "commit": "0123abc", "registry_version": tag,
        "source_image": "iris-classifier:0123abc", "image_id": "sha256:" + "cd" * 32,
        "pushed_at": "2026-12-01T00:00:00Z", "push_seconds": 10.0,
    }))  # fmt: skip
    return path


@pytest.mark.parametrize("env", k8s.ENVIRONMENTS)
def test_image_is_this_commit(docs, env):
    assert container(docs[env])["image"] == f"iris-classifier:{git_commit()}"


def make_render(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "k8s-render", f"K8S_OUT={tmp_path}", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_make_k8s_render_sets_registry_and_tag(tmp_path):
    args = ("ENV=production", "IMAGE_TAG=0123abc", "REGISTRY=registry.example.com/ml/", f"IMAGE_RECORD={tmp_path}/none")
    result = make_render(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    docs = k8s.documents(tmp_path / "production.yaml")
    assert container(docs)["image"] == "registry.example.com/ml/iris-classifier:0123abc"
    assert f"wrote {tmp_path / 'production.yaml'}" in result.stdout


def test_a_published_version_renders_by_digest_without_the_checkov_skip(tmp_path):
    record = published_record(tmp_path / "image.json", repository="127.0.0.1:5000/iris-classifier", tag="v1.2.0")
    result = make_render(
        tmp_path, "ENV=production", "VERSION=1.2.0", "REGISTRY=127.0.0.1:5000", f"IMAGE_RECORD={record}"
    )
    assert result.returncode == 0, result.stderr
    path = tmp_path / "production.yaml"
    docs = k8s.documents(path)
    assert container(docs)["image"] == f"127.0.0.1:5000/iris-classifier@{DIGEST}"
    annotations = deployment(docs)["metadata"].get("annotations", {})
    assert not [key for key in annotations if key.startswith("checkov.io/skip")], annotations
    k8s.validate([path])  # still valid, strictly


@pytest.mark.parametrize(
    ("recorded_tag", "recorded_repository"),
    [("v1.1.0", "127.0.0.1:5000/iris-classifier"), ("v1.2.0", "127.0.0.1:5001/iris-classifier")],
)
def test_a_record_of_another_image_does_not_pin(tmp_path, recorded_tag, recorded_repository):
    record = published_record(tmp_path / "image.json", repository=recorded_repository, tag=recorded_tag)
    path = k8s.render("staging", tag="v1.2.0", registry="127.0.0.1:5000", out_dir=tmp_path, record=record)
    docs = k8s.documents(path)
    assert container(docs)["image"] == "127.0.0.1:5000/iris-classifier:v1.2.0"
    assert deployment(docs)["metadata"]["annotations"]["checkov.io/skip1"].startswith("CKV_K8S_43=")


def test_a_broken_record_stops_the_render_and_names_the_file(tmp_path):
    record = published_record(tmp_path / "image.json", repository="127.0.0.1:5000/iris-classifier", tag="v1.2.0",
                              digest="sha256:not-a-digest")  # fmt: skip
    with pytest.raises(k8s.CheckFailed, match=re.escape(f"k8s: {record}: digest 'sha256:not-a-digest'")):
        k8s.render("staging", tag="v1.2.0", registry="127.0.0.1:5000", out_dir=tmp_path, record=record)


@pytest.mark.parametrize("env", k8s.ENVIRONMENTS)
def test_probes_and_startup_budget_from_the_measured_cold_start(docs, env):
    app = container(docs[env])
    grpc_port = next(port["containerPort"] for port in app["ports"] if port["name"] == "grpc")
    assert app["readinessProbe"]["grpc"] == {"port": grpc_port, "service": "inference.GRPCInferenceService"}
    assert app["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    startup = app["startupProbe"]
    budget = startup["periodSeconds"] * startup["failureThreshold"]
    cold = measured_cold_start_seconds()
    # Room for a node three times slower than the benchmark machine; not so long that a pod stuck
    # loading hides for more than five minutes. (An upper bound tied to the measured start would fail
    # each time `make bench` runs on a faster machine.)
    assert 3 * cold <= budget <= 300, f"startup budget {budget} s for a measured cold start of {cold} s"
    assert app["ports"] == [
        {"name": "http", "containerPort": 3000, "protocol": "TCP"},
        {"name": "grpc", "containerPort": 3001, "protocol": "TCP"},
    ]
    assert {"name": "IRIS_GRPC_PORT", "value": "3001"} in app["env"]


@pytest.mark.parametrize("env", k8s.ENVIRONMENTS)
def test_pod_is_hardened(docs, env):
    pod = deployment(docs[env])["spec"]["template"]["spec"]
    app = container(docs[env])
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000 and pod["securityContext"]["runAsGroup"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = app["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    # Writable places are emptyDirs and the monitor claim (prediction log and labels outlive the pod; every
    # replica mounts it), and every path the env sends writes to lies in one of them.
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    claim = k8s.find(docs[env], "PersistentVolumeClaim")
    assert volumes.pop("monitor")["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert all(set(volume) == {"name", "emptyDir"} for volume in volumes.values())
    mounts = [mount["mountPath"] for mount in app["volumeMounts"]]
    assert sorted(mounts) == ["/tmp", "/var/lib/bentoml", "/var/lib/iris-monitor"]
    env_vars = {item["name"]: item["value"] for item in app["env"]}
    for name in ("BENTOML_HOME", "TMPDIR", "GRADIO_TEMP_DIR", "HOME", "IRIS_MONITOR_DIR"):
        assert any(env_vars[name] == m or env_vars[name].startswith(m + "/") for m in mounts), name
    namespace = k8s.find(docs[env], "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@pytest.mark.parametrize("env", k8s.ENVIRONMENTS)
def test_resources_sized_from_the_load_test(docs, env):
    resources = container(docs[env])["resources"]
    rss = measured_steady_rss_mib()
    request = k8s._bytes(resources["requests"]["memory"]) / 2**20
    limit = k8s._bytes(resources["limits"]["memory"]) / 2**20
    assert rss < request < limit <= 2 * rss, (rss, request, limit)
    assert k8s._cpus(resources["requests"]["cpu"]) == "0.5" and resources["limits"]["cpu"] == "1"
    source = (ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text()
    assert f"-> {rss} MiB" in source  # the measurement is quoted next to the figures


@pytest.mark.parametrize("env", k8s.ENVIRONMENTS)
def test_rollout_and_shutdown(docs, env):
    spec = deployment(docs[env])["spec"]
    assert "replicas" not in spec  # the HPA owns the count
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    assert container(docs[env])["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    assert pod["terminationGracePeriodSeconds"] >= 10 + 20  # the preStop sleep, then time for in-flight requests
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "3000",
        "prometheus.io/path": "/metrics",
    }


@pytest.mark.parametrize(("env", "minimum", "maximum"), [("staging", 1, 2), ("production", 2, 6)])
def test_scale_and_disruption(docs, env, minimum, maximum):
    hpa = k8s.find(docs[env], "HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (minimum, maximum)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "iris-classifier"}
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert k8s.find(docs[env], "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    policy = k8s.find(docs[env], "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]}]
    service = k8s.find(docs[env], "Service")["spec"]
    assert service["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {"name": "grpc", "port": 3001, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
    ]
    selector = {"app.kubernetes.io/name": "iris-classifier"}
    assert service["selector"] == selector == policy["podSelector"]["matchLabels"]
    assert deployment(docs[env])["metadata"]["namespace"] == f"iris-{env}"


def test_strict_schema_validation_against_kubernetes_1_31(renders):
    passed = k8s.validate(list(renders.values()))
    kinds = ["Deployment", "HorizontalPodAutoscaler", "Namespace", "NetworkPolicy", "PersistentVolumeClaim",
             "PodDisruptionBudget", "Service"]  # fmt: skip
    for path in renders.values():
        validated = [result for result in passed if result.path == path]
        assert sorted(result.kind for result in validated) == kinds, path
        assert {result.version for result in validated} == {"1.31"}
        assert all(result.name.startswith("iris-") for result in validated)


def test_strict_validation_rejects_an_unknown_field(renders, tmp_path):
    docs = k8s.documents(renders["production"])
    container(docs)["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": "http"}}  # a typo a cluster would drop
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump_all(docs))
    with pytest.raises(k8s.CheckFailed, match="readinesProbe"):
        k8s.validate([broken])


@pytest.fixture(scope="session")
def checkov(run_dir) -> None:
    """checkov's own venv (.venv-scan, installed by the first scan of a clone): once per run, so two workers never
    install it at once."""
    once_per_run(run_dir, "checkov", lambda: str(k8s.scan_venv()))


@pytest.mark.slow
def test_checkov_policy_scan_has_no_failures(renders, checkov):
    found = k8s.scan(list(renders.values()))
    assert found.failed == 0 and found.passed >= 150
    # The one skip (image digest) while the render names a tag, once per Deployment; its reason sits next to it.
    assert sorted((check["check_id"], check["resource"]) for check in found.skipped) == [
        (k8s.DIGEST_CHECK, "Deployment.iris-production.iris-classifier"),
        (k8s.DIGEST_CHECK, "Deployment.iris-staging.iris-classifier"),
    ]
    for path in renders.values():
        annotations = deployment(k8s.documents(path))["metadata"]["annotations"]
        skips = {key: value for key, value in annotations.items() if key.startswith("checkov.io/skip")}
        assert list(skips) == ["checkov.io/skip1"] and skips["checkov.io/skip1"].startswith("CKV_K8S_43=")
    base = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "deployment.yaml").read_text())
    reason = base["metadata"]["annotations"]["checkov.io/skip1"].removeprefix(f"{k8s.DIGEST_CHECK}=")
    assert len(reason.strip()) > 20  # a reason a reviewer can read, not just the check's id


@pytest.mark.slow
def test_checkov_passes_a_render_by_digest_with_no_skip(tmp_path, checkov):
    record = published_record(tmp_path / "image.json", repository="127.0.0.1:5000/iris-classifier", tag="v1.2.0")
    renders = [k8s.render(env, tag="v1.2.0", registry="127.0.0.1:5000", out_dir=tmp_path, record=record)
               for env in k8s.ENVIRONMENTS]  # fmt: skip
    with ThreadPoolExecutor(max_workers=2) as pool:  # two checkov processes at once: independent scans
        every_check = pool.submit(k8s.scan, renders)
        digest_only = pool.submit(k8s.scan, renders, checks=[k8s.DIGEST_CHECK])  # "Image should use digest"
        found, digest_check = every_check.result(), digest_only.result()
    assert found.failed == 0 and found.skipped == [] and found.passed >= 150
    assert (digest_check.passed, digest_check.failed, digest_check.skipped) == (2, 0, [])  # one per Deployment


def test_cli_render_writes_where_asked_by_default_build_k8s(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "ops.k8s", "render", "--env", "staging", "--out-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"image: iris-classifier:{git_commit()}" in (tmp_path / "staging.yaml").read_text()
    assert k8s.BUILD == ROOT / "build" / "k8s"  # where it goes without --out-dir (make k8s-render)

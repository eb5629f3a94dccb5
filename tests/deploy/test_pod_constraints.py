"""The production pod's constraints, read from the render, applied to this commit's image with `docker run`."""

from __future__ import annotations

import pytest

from ops import k8s

pytestmark = [pytest.mark.image, pytest.mark.slow]


def options(args: list[str]) -> tuple[set[str], list[tuple[str, str]]]:
    """`docker run` arguments as (flags without a value, [(option, value)] in order)."""
    flags, pairs, rest = set(), [], list(args)
    while rest:
        name = rest.pop(0)
        if name in ("--read-only",):
            flags.add(name)
        else:
            pairs.append((name, rest.pop(0)))
    return flags, pairs


def test_docker_flags_are_the_production_containers_constraints(renders):
    constraints = k8s.pod_constraints(k8s.documents(renders["production"]))
    flags, pairs = options(constraints.docker_args(port=4321, grpc_port=4322))
    single = dict(pairs)
    assert flags == {"--read-only"}
    assert single["--user"] == "10001:10001" and ("--group-add", "10001") in pairs
    assert single["--memory"] == single["--memory-swap"] == "805306368"  # 768Mi, no swap
    assert float(single["--cpus"]) == 1.0
    assert ("--cap-drop", "ALL") in pairs and ("--security-opt", "no-new-privileges") in pairs
    tmpfs = sorted(value for option, value in pairs if option == "--tmpfs")
    assert tmpfs == [
        "/tmp:rw,size=67108864,mode=1777",
        "/var/lib/bentoml:rw,size=33554432,mode=1777",
        "/var/lib/iris-monitor:rw,size=8589934592,mode=1777",  # the claim's 8Gi
    ]
    env = dict(value.split("=", 1) for option, value in pairs if option == "--env")
    assert env["BENTOML_HOME"] == "/var/lib/bentoml" and env["BENTOML_PORT"] == "4321"
    assert env["IRIS_GRPC_PORT"] == "4322"  # host networking: the pod's 3001 would collide between containers


def test_image_serves_under_the_production_pods_constraints(renders, commit_image):
    result = k8s.pod_check(renders["production"], name="iris-k8s-pod-test")
    assert result.image == commit_image
    assert result.species == {species: species for species in ("setosa", "versicolor", "virginica")}
    for species in ("setosa", "versicolor", "virginica"):
        assert f'iris_predictions_total{{species="{species}"}} 1.0' in result.metrics
    assert "iris_model_call_seconds_bucket" in result.metrics
    # The root is read-only: nothing changed in the container's own layer except the mount points.
    allowed = {"/var", "/var/lib", "/var/lib/bentoml", "/var/lib/iris-monitor", "/tmp"}
    assert all(line.split()[1] in allowed for line in result.writes), result
    # The prediction log is written (to the claim's stand-in): one JSON line per classified flower.
    assert result.prediction_log_lines == 3, result
    print(f"\npod-check: ready in {result.ready_seconds:.1f} s under {' '.join(result.docker_args)}")

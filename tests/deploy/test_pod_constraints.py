"""The production pod's constraints, read from the render, applied to this commit's image with `docker run`."""

from __future__ import annotations

import pytest

from ops import k8s

pytestmark = [pytest.mark.image, pytest.mark.slow]


def test_docker_flags_are_the_production_containers_constraints(renders):
    constraints = k8s.pod_constraints(k8s.documents(renders["production"]))
    args = constraints.docker_args(port=4321)
    joined = " ".join(args)
    assert "--read-only" in args and "--user 10001:10001" in joined and "--group-add 10001" in joined
    assert "--memory 805306368" in joined and "--memory-swap 805306368" in joined and "--cpus 1" in joined
    assert "--cap-drop ALL" in joined and "--security-opt no-new-privileges" in joined
    assert "--tmpfs /tmp:rw,size=67108864,mode=1777" in joined
    assert "--tmpfs /var/lib/bentoml:rw,size=33554432,mode=1777" in joined
    assert "--tmpfs /var/lib/iris-monitor:rw,size=8589934592,mode=1777" in joined  # the claim's 8Gi
    assert "--env BENTOML_HOME=/var/lib/bentoml" in joined and "--env BENTOML_PORT=4321" in joined


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

"""The flood (bench/flood.py) on this commit's image under the production pod's constraints.

`make flood-test` (and .ci/run) runs the short version: FLOOD_CLIENTS clients (default 48) posting
10,000-flower batches for FLOOD_SECONDS (default 20) beside the light /classify client. The full version,
for people (`make flood-test FLOOD_CLIENTS=320 FLOOD_SECONDS=60 FLOOD_OFF=1`), also runs the same flood with
shedding off (IRIS_ADMISSION=off) and expects the OOM kill that shedding prevents: the test tells the two apart.
"""

from __future__ import annotations

import json
import os

import pytest

from bench.flood import FloodResult, flood, production_constraints

# Alone, never beside other tests on the machine's cores (its light client's p99 is part of the verdict): `make
# flood-test` sets FLOOD_CLIENTS; `make test` lists it as skipped.
pytestmark = [
    pytest.mark.image,
    pytest.mark.slow,
    pytest.mark.skipif("FLOOD_CLIENTS" not in os.environ, reason="the flood runs alone: make image flood-test"),
]

CLIENTS = int(os.environ.get("FLOOD_CLIENTS", "48"))
SECONDS = float(os.environ.get("FLOOD_SECONDS", "20"))
LIGHT_P99_MS = float(os.environ.get("FLOOD_LIGHT_P99_MS", "300"))  # "the low hundreds of ms at worst"


def summary(result: FloodResult) -> str:
    keys = ("routes", "light", "peak_usage", "oom_kills", "metrics", "budget_line", "load_average")
    return json.dumps({key: getattr(result, key) for key in keys}, indent=1, default=str)


def test_the_production_pod_holds_under_a_flood_of_maximum_batches(commit_image):
    result = flood(production_constraints(None), clients=CLIENTS, seconds=SECONDS)
    assert result.failures(LIGHT_P99_MS) == [], summary(result)
    assert not result.oom_killed and result.state["Running"], summary(result)
    # it was a flood: batches were answered, and the ones it could not hold were refused, with Retry-After
    assert all(tally["ok"] > 0 for tally in result.routes.values()), summary(result)
    shed = sum(tally["shed"] for tally in result.routes.values())
    assert shed == sum(value for key, value in result.metrics.items() if key.startswith("iris_requests_shed_total"))
    # the pod stayed clear of its limit, the light client was served all along, and the budget was logged
    assert result.peak_usage < 0.9 * result.memory_limit, summary(result)
    assert result.light["requests"] >= SECONDS, summary(result)
    assert "flowers in flight per worker" in result.budget_line
    print(f"\nflood: {CLIENTS} clients, {SECONDS:g} s:\n{summary(result)}")


@pytest.mark.skipif(os.environ.get("FLOOD_OFF") != "1", reason="the full version only: FLOOD_OFF=1 (make flood-test)")
def test_the_same_flood_without_shedding_gets_the_pod_oom_killed(commit_image):
    result = flood(production_constraints(None), clients=CLIENTS, seconds=SECONDS, env={"IRIS_ADMISSION": "off"})
    assert result.oom_killed, summary(result)
    assert result.failures(LIGHT_P99_MS), summary(result)


def test_with_a_shadow_the_pod_still_holds_and_sheds_the_shadows_work_first(commit_image):
    """The same flood with a shadow model loaded beside the served one (the image's own model a second time, as
    IRIS_SHADOW names it by tag: two forests in the pod's memory): the pod holds as without one, and the shadow
    gives up flowers (shed, counted) instead of the clients' requests waiting for it."""
    from iris_classifier.model.store import ModelCard

    shadow = {"IRIS_SHADOW": ModelCard.read().tag}
    result = flood(production_constraints(None), clients=CLIENTS, seconds=SECONDS, env=shadow)
    assert result.failures(LIGHT_P99_MS) == [], summary(result)
    assert not result.oom_killed and result.state["Running"], summary(result)
    assert all(tally["ok"] > 0 for tally in result.routes.values()), summary(result)
    assert result.peak_usage < 0.9 * result.memory_limit, summary(result)
    assert result.light["requests"] >= SECONDS, summary(result)
    metrics = result.metrics
    assert metrics["iris_shadow_active"] == 1.0, summary(result)
    shadowed = sum(value for key, value in metrics.items() if key.startswith("iris_shadow_flowers_total"))
    shed = sum(value for key, value in metrics.items() if key.startswith("iris_shadow_shed_flowers_total"))
    assert shadowed > 0 and shed > 0, summary(result)
    assert metrics['iris_shadow_errors_total{stage="predict"}'] == 0, summary(result)
    print(f"\nflood with a shadow: {CLIENTS} clients, {SECONDS:g} s: shadowed {shadowed:,.0f}, shed {shed:,.0f}")

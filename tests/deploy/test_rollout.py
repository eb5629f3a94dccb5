"""A rolling replacement of two containers behind a real HAProxy under load: zero failed requests."""

from __future__ import annotations

import pytest

from ops import rollout

pytestmark = [pytest.mark.image, pytest.mark.slow]


def test_rolling_replacement_under_load_fails_no_request(commit_image):
    if rollout.HAPROXY is None:
        pytest.skip(rollout.HAPROXY_MISSING)
    result = rollout.rollout(image=commit_image, clients=4, seconds_between=4)
    print("\n" + result.summary())
    assert result.tally.requests > 1000
    assert result.tally.failures == 0, result.summary()
    assert len(result.replacements) == 2
    for replacement in result.replacements:
        # Requests were in flight on the old container when it got SIGTERM, and every one completed.
        assert replacement.direct_in_flight_at_sigterm >= 1, result.summary()
        assert replacement.direct_failed == [], result.summary()
        assert replacement.stop_seconds < 30, "SIGTERM did not stop the server: docker had to SIGKILL it"
    assert result.summary().endswith("PASS")

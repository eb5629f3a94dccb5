"""The shadow's alert and dashboard panel use the threshold params.yaml sets (shadow.alert_agreement), once."""

from __future__ import annotations

import json
import re

import yaml

from iris_classifier.monitoring.dashboard import DASHBOARD
from iris_classifier.project.params import load_params
from iris_classifier.project.paths import ROOT


def test_the_agreement_alert_and_panel_use_the_params_threshold():
    threshold = load_params("shadow")["alert_agreement"]
    rules = yaml.safe_load((ROOT / "monitoring" / "rules" / "iris-classifier.yml").read_text())
    (rule,) = [
        rule for group in rules["groups"] for rule in group["rules"] if rule.get("alert") == "IrisShadowDisagrees"
    ]
    found = re.search(r"\)\s*<\s*([0-9.]+)\s*and", rule["expr"])
    assert found and float(found.group(1)) == threshold, rule["expr"]
    assert f"fewer than {threshold:.0%}" in rule["annotations"]["description"]
    board = json.loads(DASHBOARD.read_text())
    (panel,) = [panel for panel in board["panels"] if panel["title"].startswith("Shadow: agreement")]
    assert panel["fieldConfig"]["defaults"]["thresholds"]["steps"][-1] == {"color": "green", "value": threshold}
    assert 'agreement="agree"' in panel["targets"][0]["expr"] and "[30m]" in panel["targets"][0]["expr"]

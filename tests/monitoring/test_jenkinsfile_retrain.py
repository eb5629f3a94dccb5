"""Jenkinsfile.retrain: scheduled and alert-triggered, one existing make target per stage, and the data, the
commit and the tags pushed, and the staged version deployed as production's shadow (DEPLOY_SHADOW), only when
`make retrain` promoted.

The last tests run the Jenkinsfile itself with Groovy (the interpreter npm-groovy-lint ships for
`make lint-jenkinsfile`), Jenkins' steps stubbed: `make retrain` exits as each scenario says, and the
test reads which `sh` steps the pipeline ran.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from iris_classifier.project.paths import RETRAIN_HTML, RETRAIN_JSON, ROOT
from ops.jenkins_steps import stage_bodies, stages
from tests.jenkinsfile_harness import assert_each_stage_runs_one_make_target, pipeline_runner

JENKINSFILE = (ROOT / "Jenkinsfile.retrain").read_text()


def alert_names() -> set[str]:
    return {
        rule["alert"]
        for path in (ROOT / "monitoring" / "rules").glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_runs_nightly_and_on_a_firing_accuracy_or_drift_alert():
    assert re.search(r"triggers\s*\{[^}]*cron\('H \d+ \* \* \*'\)", JENKINSFILE)
    trigger = re.search(r"GenericTrigger\((.*?)\n        \)", JENKINSFILE, re.DOTALL).group(1)
    # Alertmanager's webhook body: status, and commonLabels.alertname when the group is one alert
    assert "[key: 'ALERT_STATUS', value: '$.status'" in trigger
    assert "[key: 'ALERT_NAME', value: '$.commonLabels.alertname'" in trigger
    assert "regexpFilterText: '$ALERT_STATUS $ALERT_NAME'" in trigger
    expression = re.search(r"regexpFilterExpression: '([^']+)'", trigger).group(1)
    started = {name for name in alert_names() if re.fullmatch(expression, f"firing {name}")}
    assert started == {"IrisLiveAccuracyLow", "IrisInputDrift"}
    assert not re.fullmatch(expression, "resolved IrisLiveAccuracyLow")
    # the webhook's token is a Jenkins credential, never a literal in the file
    assert "tokenCredentialId: '" in trigger and not re.search(r"\btoken:", trigger)


def test_parameters_name_the_remote_and_the_monitor_folder():
    assert "choice(name: 'DVC_REMOTE'" in JENKINSFILE
    # the parameter is the variable the job reads (Jenkins exports parameters to the environment)
    assert "string(name: 'IRIS_MONITOR_DIR'" in JENKINSFILE
    assert 'make retrain IRIS_MONITOR_DIR="$IRIS_MONITOR_DIR"' in stage_bodies(JENKINSFILE)["Retrain"]


def test_each_stage_calls_one_make_target_that_exists():
    parsed = stages(JENKINSFILE)
    assert [stage.name for stage in parsed] == [
        "Checkout",
        "Install requirements",
        "Pull data and model",
        "Retrain",
        "Push data",
        "Push commit and tags",
        "Shadow in production",
    ]
    assert_each_stage_runs_one_make_target(JENKINSFILE)
    assert all("timeout(time:" in body for name, body in stage_bodies(JENKINSFILE).items() if name != "Checkout")
    assert "disableConcurrentBuilds()" in JENKINSFILE  # two retrains would race for the next version's tags


def test_only_a_promotion_pushes_and_the_data_goes_before_the_commit():
    conditional = {stage.name for stage in stages(JENKINSFILE) if stage.conditional}
    assert conditional == {"Push data", "Push commit and tags", "Shadow in production"}
    bodies = stage_bodies(JENKINSFILE)
    for name in ("Push data", "Push commit and tags"):
        assert "when { expression { env.RETRAIN_DECISION == 'promoted' } }" in bodies[name], name
    # the shadow: after the tags are pushed (the pods' image names the release), and only when asked for
    shadow = "when { expression { env.RETRAIN_DECISION == 'promoted' && params.DEPLOY_SHADOW } }"
    assert shadow in bodies["Shadow in production"]
    assert "booleanParam(name: 'DEPLOY_SHADOW', defaultValue: false" in JENKINSFILE
    names = list(bodies)
    assert names.index("Push data") < names.index("Push commit and tags") < names.index("Shadow in production")
    # the decision is set in one place, from the report the job wrote
    assert JENKINSFILE.count("env.RETRAIN_DECISION = ") == 2
    assert re.search(
        r"code == 0 && decision in \['promoted', 'rejected'\]\) \{\s*env\.RETRAIN_DECISION = decision", JENKINSFILE
    )


def test_the_reports_are_archived_from_where_the_job_writes_them():
    retrain = stage_bodies(JENKINSFILE)["Retrain"]
    archived = re.search(r"archiveArtifacts artifacts: '([^']+)'", retrain).group(1).split(", ")
    for path in (RETRAIN_JSON, RETRAIN_HTML):
        assert path.relative_to(ROOT).as_posix() in archived
    assert re.search(r"post \{\s*always \{\s*archiveArtifacts", retrain)  # also when it could not decide
    assert f"REPORT = '{RETRAIN_JSON.relative_to(ROOT).as_posix()}'" in JENKINSFILE


def test_secrets_come_from_credentials_and_are_never_interpolated_by_groovy():
    assert 'sh "' not in JENKINSFILE and 'sh(script: "' not in JENKINSFILE  # Groovy would expand ${...}
    assert "${GDRIVE" not in JENKINSFILE and "echo $GDRIVE" not in JENKINSFILE
    bodies = stage_bodies(JENKINSFILE)
    for name in ("Pull data and model", "Push data"):
        assert "variable: 'GDRIVE_CREDENTIALS_DATA')]) {" in bodies[name], name
    assert "withCredentials([gitUsernamePassword(credentialsId: '" in bodies["Push commit and tags"]
    shadow = bodies["Shadow in production"]
    for binding in ("variable: 'GDRIVE_CREDENTIALS_DATA'", "variable: 'SIGN_KEY'", "variable: 'KUBECONFIG'",
                    "variable: 'SIGN_PUBKEY'", "usernamePassword(credentialsId: 'registry-credentials',"):  # fmt: skip
        assert binding in shadow, binding
    assert "$SIGN_KEY" not in shadow and "$KUBECONFIG" not in shadow  # make reads them from the environment


# -- the pipeline run by Groovy, Jenkins' steps stubbed (tests/jenkinsfile_harness.py) ----------------------


SHADOW_PARAMS = {"DEPLOY_SHADOW": True, "REGISTRY": "registry.example.com/ml"}


@pytest.fixture(scope="module")
def run_pipeline(tmp_path_factory):
    """Run Jenkinsfile.retrain with `make retrain` exiting `code` and leaving `report` (None: no file), the shadow
    deploy asked for (DEPLOY_SHADOW, REGISTRY)."""
    work = tmp_path_factory.mktemp("jenkinsfile-retrain")
    return pipeline_runner(
        work, ROOT / "Jenkinsfile.retrain", "retrain", "reports/retrain.json", SCENARIOS, params=SHADOW_PARAMS
    )


def report(decision: str) -> str:
    """As `make retrain` writes reports/retrain.json (json.dumps, indent 2): a promotion names the champion's
    version, the staged one and its tags (iris_classifier/retraining/job.py)."""
    written = {"decision": decision, "reasons": ["..."], "champion": {"tag": "iris_classifier:a", "version": "v1.0.0"},
               "challenger": {"tag": "iris_classifier:b", "version": None}, "labels_used": 300}  # fmt: skip
    if decision == "promoted":
        written["challenger"]["version"] = written["version"] = "v1.1.0"
        written["tags"] = ["iris-classifier@v1.1.0", "iris-classifier#staging#2"]
    return json.dumps(written, indent=2) + "\n"


FIRST_STEPS = [
    "make install",
    'make pull DVC_REMOTE="$DVC_REMOTE"',
    'make retrain IRIS_MONITOR_DIR="$IRIS_MONITOR_DIR"',
]
PUSHES = ['make push DVC_REMOTE="$DVC_REMOTE"', 'make retrain-push BRANCH="$BRANCH"']
SHADOW_DEPLOY = 'make deploy-shadow VERSION="$STAGED_VERSION" REGISTRY="$REGISTRY" DVC_REMOTE="$DVC_REMOTE"'
# what sh ran it as: the staged version from the report, the parameters; the credentials stay in the environment
SHADOW_DEPLOYED = 'make deploy-shadow VERSION="v1.1.0" REGISTRY="registry.example.com/ml" DVC_REMOTE="local"'
ARCHIVED = ["reports/retrain.json, reports/retrain.html, reports/feedback.json"]
PUBLISHED = ["build/image.json, build/sbom.cdx.json"]
SPACED_PROMOTION = '{"decision" :"promoted",\n"reasons": [], "tags" : [ "iris-classifier@v1.1.0",\n"x"]}'
FAILURES = [
    (2, None),  # the job failed before writing a report
    (2, report("promoted")),  # a previous build's report: this one failed
    (0, None),  # exit 0 without a report is not a decision
    (0, '{"decision": "maybe"}'),
]
# Every (make retrain's exit code, the report it leaves) the tests below run the pipeline with.
SCENARIOS = [(0, report("promoted")), (0, SPACED_PROMOTION), (0, report("rejected")), (2, report("none")), *FAILURES]
NOT_PROMOTED = ["Push data", "Push commit and tags", "Shadow in production"]


@pytest.mark.slow
def test_a_promotion_pushes_the_data_then_the_commit_and_tags_then_shadows_the_staged_version(run_pipeline):
    outcome = run_pipeline(0, report("promoted"))
    assert outcome["ran"] == FIRST_STEPS + PUSHES + [SHADOW_DEPLOY]
    assert outcome["expanded"][-1] == SHADOW_DEPLOYED  # v1.1.0, the release; never the champion's v1.0.0
    assert (outcome["result"], outcome["description"], outcome["skipped"]) == ("SUCCESS", "promoted", [])
    assert outcome["archived"] == ARCHIVED + PUBLISHED
    # the report's spacing does not matter
    spaced = run_pipeline(0, SPACED_PROMOTION)
    assert (spaced["ran"], spaced["expanded"][-1]) == (FIRST_STEPS + PUSHES + [SHADOW_DEPLOY], SHADOW_DEPLOYED)


@pytest.mark.slow
def test_a_promotion_without_deploy_shadow_leaves_production_alone(tmp_path):
    run = pipeline_runner(
        tmp_path, ROOT / "Jenkinsfile.retrain", "retrain", "reports/retrain.json", [(0, report("promoted"))],
        params={**SHADOW_PARAMS, "DEPLOY_SHADOW": False},
    )  # fmt: skip
    outcome = run(0, report("promoted"))
    assert outcome["ran"] == FIRST_STEPS + PUSHES
    assert (outcome["result"], outcome["skipped"]) == ("SUCCESS", ["Shadow in production"])


@pytest.mark.slow
def test_a_rejection_pushes_and_deploys_nothing_and_the_build_passes(run_pipeline):
    outcome = run_pipeline(0, report("rejected"))
    assert outcome["ran"] == FIRST_STEPS
    assert (outcome["result"], outcome["description"]) == ("SUCCESS", "rejected")
    assert outcome["skipped"] == NOT_PROMOTED
    assert outcome["archived"] == ARCHIVED


@pytest.mark.slow
def test_no_decision_is_unstable_and_pushes_nothing(run_pipeline):
    outcome = run_pipeline(2, report("none"))  # make exits 2 when the job exits 1 (too few labels)
    assert outcome["ran"] == FIRST_STEPS
    assert (outcome["result"], outcome["description"]) == ("UNSTABLE", "no decision")
    assert outcome["skipped"] == NOT_PROMOTED
    assert outcome["archived"] == ARCHIVED


@pytest.mark.slow
@pytest.mark.parametrize(("code", "left"), FAILURES)
def test_a_failed_retrain_fails_the_build_and_pushes_nothing(run_pipeline, code, left):
    outcome = run_pipeline(code, left)
    assert outcome["ran"] == FIRST_STEPS
    assert outcome["result"] == "FAILURE"
    assert outcome["skipped"] == NOT_PROMOTED
    assert outcome["archived"] == ARCHIVED


# -- Alertmanager starts it: monitoring/alertmanager.yml routes the two alerts to the webhook ------------

ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
needs_alertmanager = pytest.mark.skipif(
    ALERTMANAGER is None or shutil.which("amtool") is None,
    reason="alertmanager is not installed: apt-get install -y prometheus-alertmanager",
)


@needs_alertmanager
def test_the_alertmanager_config_is_valid():
    result = subprocess.run(
        ["amtool", "check-config", "alertmanager.yml"], cwd=ROOT / "monitoring", capture_output=True, text=True
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr


def generic_variable(body: dict, path: str) -> str:
    """The Generic Webhook Trigger's JSONPath `$.a.b` on the posted body."""
    value = body
    for key in path.removeprefix("$.").split("."):
        value = value.get(key, "") if isinstance(value, dict) else ""
    return str(value)


@pytest.mark.slow
@needs_alertmanager
def test_a_firing_accuracy_alert_reaches_the_retrain_webhook_and_starts_the_build(tmp_path):
    """A real Alertmanager with the project's routes (receivers on loopback, 1 s group wait): the accuracy alert
    is posted to the Jenkins webhook with the bearer token and passes Jenkinsfile.retrain's filter; an
    availability alert goes to the team only."""
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from iris_classifier.project.processes import free_port, stop_process_group

    received: list[tuple[str, str | None, dict]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, self.headers.get("Authorization"), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{receiver.server_address[1]}"
    token = tmp_path / "token"
    token.write_text("s3cret-for-this-test")

    config = yaml.safe_load((ROOT / "monitoring" / "alertmanager.yml").read_text())
    config["route"]["group_wait"] = "1s"
    for receiver_config in config["receivers"]:
        for webhook in receiver_config["webhook_configs"]:
            webhook["url"] = f"{hook}/{receiver_config['name']}"
            if "http_config" in webhook:
                webhook["http_config"]["authorization"]["credentials_file"] = str(token)
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            ALERTMANAGER,
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=(tmp_path / "alertmanager.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        api = f"http://127.0.0.1:{port}/api/v2"
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{api}/status", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (tmp_path / "alertmanager.log").read_text()
            time.sleep(0.2)
        alerts = [
            {"labels": {"alertname": name, "job": "iris-classifier", "severity": "warning"}}
            for name in ("IrisLiveAccuracyLow", "IrisHigh5xxRatio")
        ]
        assert requests.post(f"{api}/alerts", json=alerts, timeout=10).status_code == 200
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # nothing else follows
    finally:
        stop_process_group(process)
        receiver.shutdown()
        receiver.server_close()

    to_jenkins = [(auth, body) for path, auth, body in received if path == "/jenkins-retrain"]
    to_team = sorted(body["commonLabels"]["alertname"] for path, _, body in received if path == "/team")
    assert to_team == ["IrisHigh5xxRatio", "IrisLiveAccuracyLow"]
    ((authorization, body),) = to_jenkins
    assert authorization == "Bearer s3cret-for-this-test"
    # what Jenkinsfile.retrain's GenericTrigger reads from the body, and its filter
    variables = dict(re.findall(r"\[key: '(\w+)', value: '([^']+)'", JENKINSFILE))
    values = {name: generic_variable(body, path) for name, path in variables.items()}
    assert values == {"ALERT_STATUS": "firing", "ALERT_NAME": "IrisLiveAccuracyLow"}
    text = re.search(r"regexpFilterText: '([^']+)'", JENKINSFILE).group(1)
    for name, value in values.items():
        text = text.replace(f"${name}", value)
    assert re.search(re.search(r"regexpFilterExpression: '([^']+)'", JENKINSFILE).group(1), text)

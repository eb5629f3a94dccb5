"""A declarative Jenkinsfile run by Groovy (the interpreter npm-groovy-lint ships for `make lint-jenkinsfile`), Jenkins'
steps stubbed: one `make` target exits as each scenario says and leaves the report the pipeline reads, and the
outcome says which `sh` steps ran (as written, and with the build's variables put in as sh would), which stages
were skipped, what was archived and the build's result. Also the rule every Jenkinsfile keeps: each stage runs one
existing make target (`assert_each_stage_runs_one_make_target`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from iris_classifier.project.paths import ROOT
from ops.jenkins_steps import stage_bodies, stages
from tests.conftest import makefile_targets

GROOVY_LINT = ROOT / "ops" / "groovy-lint"

# Declarative syntax as calls: `stage(name) { when {...}; steps {...}; post {...} }` is collected, then run
# like Jenkins does: skipped when its `when` says so, nothing after a failed stage, `post.always` always.
HARNESS = r"""
import groovy.json.JsonOutput

def runCase = { String jenkinsfile, String makeTarget, String reportFile, Map params, String exitCode,
                String reportPath ->
String report = reportPath == '-' ? null : new File(reportPath).text
def env = [IRIS_MONITOR_DIR: '/srv/iris-classifier/monitor', MONITOR_DIR: '/srv/iris-classifier/monitor',
           DRIFT_WINDOW: '500', DVC_REMOTE: 'local', BRANCH: 'main'] + params
def build = [result: 'SUCCESS', description: null]
def ran = []
def expanded = []
def skipped = []
def archived = []
def failed = false
def stage = null

def binding = new Binding([any: 'any', scm: 'scm', env: env, params: env, currentBuild: build])
def ignore = { Object... ignored -> null }
['agent', 'parameters', 'triggers', 'options', 'environment', 'echo', 'checkout'].each {
    binding.setVariable(it, ignore)
}
['string', 'file', 'gitUsernamePassword', 'usernamePassword'].each {
    binding.setVariable(it, { Map binding_ -> binding_ })
}
binding.setVariable('pipeline', { Closure body -> body() })
binding.setVariable('stages', { Closure body -> body() })
binding.setVariable('post', { Closure body -> if (stage != null) { stage.post = body } })
binding.setVariable('when', { Closure body -> stage.when = body })
binding.setVariable('expression', { Closure body -> stage.go = body() as boolean })
binding.setVariable('steps', { Closure body -> stage.steps = body })
binding.setVariable('script', { Closure body -> body() })
binding.setVariable('withCredentials', { List bindings, Closure body -> body() })
binding.setVariable('always', { Closure body -> body() })
binding.setVariable('success', { Closure body -> if (!failed) { body() } })
binding.setVariable('sh', { arg ->
    String command = arg instanceof Map ? arg.script : arg
    ran << command
    // a credential's variable is not the build's: it stays $NAME
    expanded << command.replaceAll(/\$([A-Z_]+)/) { all, name -> env.containsKey(name) ? env[name] : all }
    return command.startsWith('make ' + makeTarget + ' ') ? (exitCode as int) : 0
})
binding.setVariable('fileExists', { String path -> assert path == reportFile; report != null })
binding.setVariable('readFile', { String path -> assert path == reportFile; report })
binding.setVariable('archiveArtifacts', { Map options -> archived << options.artifacts })
binding.setVariable('unstable', { String message -> build.result = 'UNSTABLE' })
binding.setVariable('error', { String message -> throw new IllegalStateException(message) })
binding.setVariable('stage', { String name, Closure body ->
    stage = [name: name, go: true]
    body()
    if (failed) { skipped << name; return }
    if (stage.when) { stage.when() }
    if (!stage.go) { skipped << name; return }
    try {
        stage.steps()
    } catch (IllegalStateException error) {
        failed = true
        build.result = 'FAILURE'
    } finally {
        if (stage.post) { stage.post() }
        stage = null
    }
})

new GroovyShell(binding).evaluate(new File(jenkinsfile))
return [ran: ran, expanded: expanded, skipped: skipped, archived: archived, result: build.result,
        description: build.description]
}

// args: the Jenkinsfile, the make target whose exit code each scenario sets, the report it reads, the build's
// parameters (JSON) beside the defaults, then (exit code, report path) per scenario; one JVM runs them all, a fresh
// binding each
Map params = new groovy.json.JsonSlurper().parseText(args[3])
for (int i = 4; i < args.length; i += 2) {
    println 'OUTCOME ' + JsonOutput.toJson(runCase(args[0], args[1], args[2], params, args[i], args[i + 1]))
}
"""


# One short script: the client compiler alone and the serial collector run it on about half the CPU time of the
# defaults (measured 12.5 s -> 5.3 s of CPU for eight scenarios), which the JIT spent on a peak never reached.
JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]

Scenario = tuple[int, "str | None"]  # (the make target's exit code, the report it leaves; None: no file)


def groovy_classpath() -> str | None:
    jars = sorted((GROOVY_LINT / "node_modules" / "npm-groovy-lint" / "lib" / "java" / "groovy" / "lib").glob("*.jar"))
    return ":".join(map(str, jars)) if jars else None


def pipeline_runner(
    work: Path,
    jenkinsfile: Path,
    make_target: str,
    report_file: str,
    scenarios: list[Scenario],
    params: dict[str, str | bool] | None = None,
) -> Callable[[int, str | None], dict]:
    """run(code, report) -> the outcome of the Jenkinsfile with `make <make_target>` exiting `code` and leaving
    `report` at `report_file`, the build's parameters the harness's defaults and `params`. The listed scenarios run
    in one JVM the first time one is asked for."""
    if shutil.which("java") is None:
        pytest.skip("java is not installed (npm-groovy-lint needs it too): apt-get install -y default-jre-headless")
    if groovy_classpath() is None:
        if shutil.which("npm") is None:
            pytest.skip("npm is not installed: make lint-jenkinsfile needs it too")
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=GROOVY_LINT, check=True, timeout=600)
    harness = work / "harness.groovy"
    harness.write_text(HARNESS)

    def run_all(cases: list[Scenario]) -> list[dict]:
        arguments = []
        for number, (code, report) in enumerate(cases):
            report_path = "-"
            if report is not None:
                report_path = str(work / f"report-{code}-{number}-{abs(hash(report))}.json")
                Path(report_path).write_text(report)
            arguments += [str(code), report_path]
        command = ["java", *JVM_OPTIONS, "-cp", groovy_classpath(), "groovy.ui.GroovyMain", str(harness)]
        result = subprocess.run(
            [*command, str(jenkinsfile), make_target, report_file, json.dumps(params or {}), *arguments],
            capture_output=True,
            text=True,
            timeout=120 + 10 * len(cases),
        )
        assert result.returncode == 0, result.stdout + result.stderr
        outcomes = [json.loads(line.removeprefix("OUTCOME ")) for line in result.stdout.splitlines()
                    if line.startswith("OUTCOME ")]  # fmt: skip
        assert len(outcomes) == len(cases), result.stdout + result.stderr
        return outcomes

    outcomes: dict[Scenario, dict] = {}

    def run(code: int, report: str | None) -> dict:
        if not outcomes:
            outcomes.update(zip(scenarios, run_all(scenarios), strict=True))
        if (code, report) not in outcomes:  # a scenario not listed: a run of its own
            (outcomes[(code, report)],) = run_all([(code, report)])
        return outcomes[(code, report)]

    return run


MAKE_STEP = re.compile(r"^make (?:-s )?([a-z0-9-]+)")


def assert_each_stage_runs_one_make_target(jenkinsfile: str) -> None:
    """Checkout checks out and runs nothing; every other stage runs exactly one `sh` step (none in `post`),
    `make <target> ...`, of a target the Makefile defines and make itself accepts (a dry run: nothing runs)."""
    targets = makefile_targets((ROOT / "Makefile").read_text())
    for stage in stages(jenkinsfile):
        if stage.name == "Checkout":
            assert stage.steps == [] and "checkout scm" in stage_bodies(jenkinsfile)["Checkout"], stage
            continue
        assert len(stage.steps) == 1 and not stage.post_steps, stage
        called = MAKE_STEP.match(stage.steps[0])
        assert called, f"stage {stage.name!r} runs {stage.steps[0]!r}, not one make target"
        target = called.group(1)
        assert target in targets, f"stage {stage.name!r} calls missing target {target}"
        dry_run = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert dry_run.returncode == 0, f"{stage.name}: make {target}: {dry_run.stderr}"

"""Run the Jenkinsfile's own `sh` steps, in stage order, the way an agent would (used by .ci/run).

python -m ops.jenkins_steps list                 the stages and their sh steps, as parsed
python -m ops.jenkins_steps run [--env K=V ...]  run them in order with bash; stop at the first failure

A stage with a `when` block is conditional (off unless its parameter says so) and is listed as skipped,
except a `when { expression { env.REGISTRY_EVENT ... } }`: that is decided as for a branch build (`none`).
Jenkins-only steps (`checkout scm`, `junit`, `archiveArtifacts`, `withCredentials`) are Jenkins' own;
the `sh` steps inside them are what this project owns, and those are run as written.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field

from iris_classifier.project.paths import ROOT

JENKINSFILE = ROOT / "Jenkinsfile"
SH_STEP = re.compile(r"""\bsh[\s(]+(?:script:\s*)?(['"])(?P<command>.*?)(?<!\\)\1""")  # sh '...' or sh(script: '...')
# The Registry stage's answer for a branch build (ops/registry.py check-ref); its conditions are evaluated.
REGISTRY_WHEN = re.compile(r"when \{ expression \{ env\.REGISTRY_EVENT (?:in \[(?P<any>[^\]]*)\]|== '(?P<one>\w+)')")
STAGE = re.compile(r"""\bstage\(\s*['"](?P<name>[^'"]+)['"]\s*\)""")


@dataclass
class Stage:
    name: str
    steps: list[str] = field(default_factory=list)
    conditional: bool = False
    post_steps: list[str] = field(default_factory=list)


def stage_bodies(text: str) -> dict[str, str]:
    """Each `stage('name')`'s text up to the next stage's, by name (a stage's options, steps and post blocks)."""
    parts = re.split(r"stage\('([^']+)'\)", text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def stages(text: str) -> list[Stage]:
    """The `stages { ... }` blocks' stages in order, by brace depth (enough for a declarative Jenkinsfile)."""
    found: list[Stage] = []
    current: Stage | None = None
    stage_depth = depth = 0
    post_depth: int | None = None
    for line in text.splitlines():
        code = "" if line.lstrip().startswith("//") else line  # whole-line comments ("//" also ends URLs)
        started = STAGE.search(code)
        if started:
            current = Stage(started.group("name"))
            found.append(current)
            stage_depth = depth
        if current is not None:
            if re.search(r"\bwhen\s*\{", code):
                registry = REGISTRY_WHEN.search(code)
                current.conditional = not registry or "'none'" not in (registry["any"] or registry["one"])
            if re.search(r"\bpost\s*\{", code):
                post_depth = depth
            for step in SH_STEP.finditer(code):
                (current.post_steps if post_depth is not None else current.steps).append(step.group("command"))
        depth += code.count("{") - code.count("}")
        if post_depth is not None and depth <= post_depth:
            post_depth = None
        if current is not None and depth <= stage_depth and not started:
            current = None
    return found


def run(environment: dict[str, str]) -> int:
    started = time.monotonic()
    env = {**os.environ, **environment}
    for stage in stages(JENKINSFILE.read_text()):
        if stage.conditional:
            print(f"-- stage {stage.name!r}: skipped (conditional, off by default)")
            continue
        for step in stage.steps:
            print(f"-- stage {stage.name!r} ({time.monotonic() - started:.0f} s): sh {step}", flush=True)
            result = subprocess.run(["sh", "-e", "-c", step], cwd=ROOT, env=env)  # as Jenkins runs sh steps
            if result.returncode != 0:
                print(f"-- stage {stage.name!r} failed (exit {result.returncode})", file=sys.stderr)
                return result.returncode
    print(f"-- all Jenkinsfile stages passed in {time.monotonic() - started:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "run"])
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a build parameter")
    args = parser.parse_args(argv)
    if args.command == "list":
        for stage in stages(JENKINSFILE.read_text()):
            flag = " (conditional)" if stage.conditional else ""
            print(f"{stage.name}{flag}: {' | '.join(stage.steps) or '-'}")
        return 0
    return run(dict(item.split("=", 1) for item in args.env))


if __name__ == "__main__":
    raise SystemExit(main())

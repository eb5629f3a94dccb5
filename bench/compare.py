"""This commit against earlier ones, served side by side in one run: `make bench-compare BASELINE=<ref>`.

Each contender is a git ref (`HEAD`, a commit, a tag) exported with `git archive` into a folder of its
own and served from that source with `bentoml serve` (the ref's own bentofile service, its own
`iris_classifier` package first on PYTHONPATH), on its own loopback port, against the same stored
model. A contender may carry environment switches after commas, e.g. `HEAD,IRIS_PREDICTION_LOG=0`.
Rounds alternate the order so the shared machine's noise falls on every contender. Measures
`/classify` (wrk, 1 and 32 connections) and `/classify_batch` (10,000 flowers per request), as
ratios to the first contender; replaces the "Commit comparison" section of docs/benchmarks.md.

Needs the dependencies of the baseline to be this venv's (the lock at the ref); a baseline whose
code cannot start on them fails with its server log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.measure import (
    ONE_FLOWER,
    batch_throughput,
    bench_parser,
    lua_script,
    machine,
    paired_ratios,
    run_wrk,
    wrk_missing,
)
from bench.report import write_section
from iris_classifier.harness.servers import Server
from iris_classifier.model.store import ensure_model
from iris_classifier.project.paths import ROOT

MEASURES = {
    "c1": "`/classify` req/s, 1 connection",
    "c32": "`/classify` req/s, 32 connections",
    "batch": "`/classify_batch` flowers/s (10,000 per request)",
}


@dataclass
class Contender:
    ref: str
    commit: str
    env: dict[str, str]
    results: dict[str, list[float]] = field(default_factory=lambda: {key: [] for key in MEASURES})
    errors: int = 0
    server: Server | None = None

    @classmethod
    def parse(cls, spec: str) -> Contender:
        ref, *switches = spec.split(",")
        env = {}
        for switch in switches:
            name, equals, value = switch.partition("=")
            if not equals or not name:
                raise SystemExit(f"bench-compare: {switch!r} in {spec!r} is not NAME=VALUE")
            env[name] = value
        found = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if found.returncode != 0:
            raise SystemExit(f"bench-compare: {ref!r} is not a commit here (git fetch it, or check the name)")
        return cls(ref=ref, commit=found.stdout.strip(), env=env)

    @property
    def label(self) -> str:
        switches = ", ".join(f"{name}={value}" for name, value in self.env.items())
        return f"`{self.ref}` ({self.commit[:7]}{', ' + switches if switches else ''})"


def export_source(commit: str, folder: Path) -> str:
    """The commit's tracked files in `folder`; returns the service its bentofile.yaml names."""
    folder.mkdir(parents=True, exist_ok=True)
    # git's own tar, unpacked by tar(1): Python's tarfile lacks extraction filters before 3.11.4 (Debian's 3.11.2).
    archive = subprocess.run(["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    bentofile = folder / "bentofile.yaml"
    if not bentofile.exists():
        raise SystemExit(
            f"bench-compare: commit {commit[:7]} has no bentofile.yaml (it predates the service); "
            "choose a later baseline"
        )
    return yaml.safe_load(bentofile.read_text())["service"]


def measure(contenders: list[Contender], rounds: int, seconds: int, work: Path) -> str:
    """Fills each contender's results; returns the model tag they all served."""
    model = ensure_model().tag  # the model this checkout serves; an export has no models/model.json
    for number, contender in enumerate(contenders):
        source = work / f"src-{number}"
        service = export_source(contender.commit, source)
        # Its own package before the venv's project hook; the same stored model for every contender.
        env = {"PYTHONPATH": str(source), "IRIS_MODEL_TAG": str(model), **contender.env}
        contender.server = Server(service, env=env, cwd=source, log_path=work / f"server-{number}.log")
    try:
        for contender in contenders:
            print(f"bench-compare: starting {contender.label}", flush=True)
            contender.server.start(wait_ready=300)
        script = lua_script(ONE_FLOWER, work, "one")
        for contender in contenders:
            run_wrk(f"{contender.server.url}/classify", script, 8, 2)  # warm-up, not recorded
        for number in range(rounds):
            print(f"bench-compare: round {number + 1} of {rounds}", flush=True)
            order = contenders if number % 2 == 0 else contenders[::-1]
            for contender in order:
                url = contender.server.url
                for connections in (1, 32):
                    answer = run_wrk(f"{url}/classify", script, connections, seconds)
                    contender.errors += int(answer["non_2xx"] + answer["socket_errors"])
                    contender.results[f"c{connections}"].append(answer["rps"])
                batch = batch_throughput(f"{url}/classify_batch", seconds)
                contender.errors += int(batch["non_2xx"])
                contender.results["batch"].append(batch["flowers_per_s"])
    finally:
        for contender in contenders:
            if contender.server is not None:
                contender.server.stop()
    return str(model)


def render(contenders: list[Contender], model: str, args: argparse.Namespace) -> str:
    med = statistics.median
    base = contenders[0]
    head = "| measure | " + " | ".join(c.label for c in contenders) + " |"
    rule = "|---|" + "---|" * len(contenders)
    rows = []
    for key, label in MEASURES.items():
        cells = [f"{med(base.results[key]):,.0f}"]
        for contender in contenders[1:]:
            ratios = paired_ratios(contender.results[key], base.results[key])
            figure = f"{med(contender.results[key]):,.0f}"
            cells.append(f"{figure}: **{med(ratios):.2f}x** ({min(ratios):.2f}-{max(ratios):.2f})")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    spread = "\n".join(
        f"- {c.label}: " + "; ".join(f"{key} " + ", ".join(f"{v:,.0f}" for v in c.results[key]) for key in MEASURES)
        for c in contenders
    )
    errors = ", ".join(f"{c.label} {c.errors}" for c in contenders)
    info = machine()
    return f"""## Commit comparison

`make bench-compare BASELINE=...` ({" ".join(args.contenders)}), {dt.date.today().isoformat()}: each ref's
source served from its own `git archive` export against the same stored model ({model}), {args.rounds}
alternated rounds of {args.seconds} s per measure, on {info["cores"]} cores ({info["cpu"]}), {info["wrk"]}.
Cells: the median of the rounds, then the median of the per-round ratios to the first contender (measured
in the same round, so the machine's drift cancels) with their range. Non-2xx answers or socket errors:
{errors}.

{head}
{rule}
{chr(10).join(rows)}

Rounds:
{spread}
"""


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, rounds=10, seconds=3)
    parser.add_argument("contenders", nargs="+", help="REF[,NAME=VALUE...]; the first is the baseline")
    parser.add_argument(
        "--min-ratio",
        type=float,
        default=0.9,
        help="exit 1 when the last contender's /classify req/s (32 connections) is below this share of the "
        "baseline's (median of the round ratios)",
    )
    args = parser.parse_args(argv)
    if len(args.contenders) < 2:
        parser.error("give a baseline and at least one contender, e.g. 6b4db25 HEAD")
    if wrk_missing("bench-compare"):
        return 2
    contenders = [Contender.parse(spec) for spec in args.contenders]
    work = Path(tempfile.mkdtemp(prefix="iris-bench-compare-"))
    try:
        model = measure(contenders, args.rounds, args.seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = render(contenders, model, args)
    write_section("commit-compare", section, args.output)
    print(section)
    print(f"bench-compare: wrote the section to {args.output}")
    ratio = statistics.median(paired_ratios(contenders[-1].results["c32"], contenders[0].results["c32"]))
    return 0 if ratio >= args.min_ratio else 1


if __name__ == "__main__":
    sys.exit(main())

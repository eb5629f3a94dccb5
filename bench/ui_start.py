"""Does building the web UI lazily still pay? Fresh processes, alternated: import the service as `bentoml serve`
does (the UI left for later), and import it then build the UI (what an eager mount would add to every start).

BentoML imports the service in each of its processes before it serves, so the difference is paid per process
at every start. Run with `python -m bench.ui_start [--rounds N]`; writes the "Web UI start" section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys

from bench.report import write_section
from iris_classifier.model.store import ensure_model
from iris_classifier.project.paths import ROOT

TIMED = "import time; started = time.perf_counter(); import service{build}; print(time.perf_counter() - started)"
CONTENDERS = {
    "lazy (import the service)": TIMED.format(build=""),
    "eager (import it and build the UI)": TIMED.format(build="; service.build_ui()"),
}


def seconds_of(code: str) -> float:
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args(argv)
    ensure_model()
    times: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for number in range(args.rounds):
        order = list(CONTENDERS) if number % 2 == 0 else list(CONTENDERS)[::-1]
        for name in order:
            times[name].append(seconds_of(CONTENDERS[name]))
        print(f"ui-start: round {number + 1} of {args.rounds}", flush=True)
    lazy, eager = (times[name] for name in CONTENDERS)
    added = [b - a for a, b in zip(lazy, eager, strict=True)]
    rows = "\n".join(
        f"| {name} | {statistics.median(values):.2f} | {', '.join(f'{value:.2f}' for value in values)} |"
        for name, values in times.items()
    )
    body = f"""## Web UI start: lazy or eager (`python -m bench.ui_start`)

{dt.date.today()}, {args.rounds} alternated rounds of fresh processes on {os.cpu_count()} cores, load average
{" ".join(f"{load:.1f}" for load in os.getloadavg())} at the end. Seconds to import the service, without and with
building the web UI (Gradio's import, the Blocks, `gr.mount_gradio_app`):

| contender | median s | rounds |
|---|---|---|
{rows}

Building the UI at start would add **{statistics.median(added):.1f} s** (median of the per-round differences,
range {min(added):.1f} to {max(added):.1f}) to each BentoML process that imports the service, at every start:
the UI stays lazy (`iris_classifier/serving/lazy_ui.py`), built in the background once the service is ready.
"""
    write_section("ui-start", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

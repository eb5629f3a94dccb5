"""The pictures of the monitoring loop in docs/monitoring.md, from real parts: `make dashboard-shot`.

Serves the service with its prediction log in a temporary folder, scrapes it with a real Prometheus
every second, sends traffic in phases (in-distribution flowers, a burst of invalid requests, flowers
with petal length +2.5 cm), runs the drift check on what was logged, then draws every dashboard panel
from Prometheus' answers (Grafana cannot be installed here) and screenshots it and the Evidently
report with headless Chromium: docs/img/dashboard.png, docs/img/drift-report.png.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from iris_classifier.harness.servers import Server
from iris_classifier.monitoring.dashboard import PrometheusProcess, render_html, screenshot
from iris_classifier.monitoring.drift import check
from iris_classifier.monitoring.synthetic_traffic import send_traffic, training_flowers
from iris_classifier.project.paths import ROOT

IMAGES = ROOT / "docs" / "img"


def phase(url: str, seconds: float, flowers: list[dict[str, float]], bad_every: int = 0) -> None:
    """Send flowers (in a loop) for `seconds`, paced so the curves have a shape."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        send_traffic(url, flowers[:40], bad_every=bad_every, batch_size=20)
        flowers = flowers[40:] + flowers[:40]
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=40, help="length of each traffic phase")
    parser.add_argument("--out", type=Path, default=IMAGES)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="iris-shots-"))
    server = Server("service:IrisClassifier", env={"IRIS_MONITOR_DIR": str(work / "log")}, log_path=work / "serve.log")
    server.start(wait_ready=240)
    prometheus = PrometheusProcess(f"127.0.0.1:{server.port}", scrape_seconds=1).start()
    try:
        started = time.time()
        prometheus.wait_for_scrapes(3)
        print("shots: in-distribution traffic", flush=True)
        phase(server.url, args.seconds, training_flowers(400, seed=1))
        print("shots: a client sending bad input", flush=True)
        phase(server.url, args.seconds / 2, training_flowers(200, seed=2), bad_every=2)
        print("shots: flowers with petal length +2.5 cm", flush=True)
        stop = threading.Event()
        shifted_flowers = training_flowers(600, seed=3, shift={"petal_length": 2.5})

        def shifted_traffic() -> None:  # keeps going while the drift check runs
            while not stop.is_set():
                phase(server.url, 2, shifted_flowers)

        shifted = threading.Thread(target=shifted_traffic)
        shifted.start()
        time.sleep(args.seconds / 2)
        code, verdict = check(
            log_dir=work / "log", window=500, html_path=work / "drift.html", json_path=work / "drift.json"
        )
        print(f"shots: drift check exit {code}, drifted {verdict['drifted_features']}", flush=True)
        time.sleep(args.seconds / 2)
        stop.set()
        shifted.join()
        prometheus.wait_for_scrapes(5)
        end = time.time()
        args.out.mkdir(parents=True, exist_ok=True)
        render_html(prometheus, started, end, work / "dashboard.html", rate_interval="10s")
        screenshot(work / "dashboard.html", args.out / "dashboard.png")
        screenshot(work / "drift.html", args.out / "drift-report.png")
        print(f"shots: wrote {args.out / 'dashboard.png'} and {args.out / 'drift-report.png'}")
    finally:
        prometheus.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

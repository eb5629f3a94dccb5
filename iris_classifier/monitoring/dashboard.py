"""The Grafana dashboard's panel queries, run against a real Prometheus (Grafana itself is not needed).

Used by tests/monitoring (every query accepted; the traffic panels return data) and by
`python -m iris_classifier.monitoring.dashboard render` (`make dashboard-shot`), which draws each panel from
Prometheus' answers with plotly into one HTML page and screenshots it with headless Chromium.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from iris_classifier.project.paths import ROOT
from iris_classifier.project.processes import free_port, stop_process_group

DASHBOARD = ROOT / "monitoring" / "grafana" / "iris-classifier.json"
RULES_DIR = ROOT / "monitoring" / "rules"
PROMETHEUS_APT = "apt-get install -y prometheus"


def grafana_to_promql(expr: str, rate_interval: str = "30s", instance: str = ".*") -> str:
    """A panel expression with Grafana's variables replaced by concrete values."""
    for name, value in {
        "$__rate_interval": rate_interval,
        "$__interval": rate_interval,
        "$__range": "1h",
        "${instance}": instance,
        "$instance": instance,
    }.items():
        expr = expr.replace(name, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted variable in {expr!r}")
    return expr


@dataclass
class PanelQuery:
    panel: str
    legend: str
    expr: str  # as written in the dashboard, Grafana variables included


def panel_queries(dashboard: Path = DASHBOARD) -> list[PanelQuery]:
    board = json.loads(dashboard.read_text())
    return [
        PanelQuery(panel["title"], target.get("legendFormat", ""), target["expr"])
        for panel in board["panels"]
        for target in panel.get("targets", [])
    ]


@dataclass
class PrometheusProcess:
    """A throwaway Prometheus scraping `target` (host:port) every `scrape_seconds`, with the project's rules."""

    target: str
    scrape_seconds: float = 1.0
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="iris-prometheus-")))
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        rules = sorted(str(path) for path in RULES_DIR.glob("*.yml"))
        return json.dumps(  # JSON is YAML: no quoting surprises
            {
                "global": {
                    "scrape_interval": f"{self.scrape_seconds}s",
                    "evaluation_interval": f"{self.scrape_seconds}s",
                },
                "rule_files": rules,
                "scrape_configs": [
                    {"job_name": "iris-classifier", "static_configs": [{"targets": [self.target]}]},
                ],
            }
        )

    def start(self, timeout: float = 60) -> PrometheusProcess:
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError(f"prometheus is not installed: {PROMETHEUS_APT}")
        (self.workdir / "prometheus.yml").write_text(self.config())
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=(self.workdir / "prometheus.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited:\n{(self.workdir / 'prometheus.log').read_text()}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout} s")

    def query(self, promql: str, at: float | None = None) -> dict[str, Any]:
        """Prometheus' answer to an instant query (status, errorType/error or data)."""
        params = {"query": promql, **({"time": at} if at else {})}
        return requests.get(f"{self.url}/api/v1/query", params=params, timeout=10).json()

    def query_range(self, promql: str, start: float, end: float, step: float) -> dict[str, Any]:
        params = {"query": promql, "start": start, "end": end, "step": step}
        return requests.get(f"{self.url}/api/v1/query_range", params=params, timeout=30).json()

    def wait_for_scrapes(self, count: int, timeout: float = 60) -> None:
        """Until the target has been scraped `count` more times (and was up)."""
        start = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.query(f'count_over_time(up{{job="iris-classifier"}}[{int(time.time() - start) + 1}s])')
            result = answer.get("data", {}).get("result", [])
            if result and float(result[0]["value"][1]) >= count:
                return
            time.sleep(self.scrape_seconds / 2)
        raise TimeoutError(f"fewer than {count} scrapes of {self.target} in {timeout} s")

    def stop(self) -> None:
        stop_process_group(self.process)
        shutil.rmtree(self.workdir, ignore_errors=True)


def legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda match: labels.get(match.group(1), ""), template) or "value"


def render_html(prometheus: PrometheusProcess, start: float, end: float, output: Path, rate_interval: str) -> None:
    """One plotly chart per panel, laid out two per row like the dashboard, into a self-contained page."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    board = json.loads(DASHBOARD.read_text())
    panels = board["panels"]
    rows = (len(panels) + 1) // 2
    figure = make_subplots(
        rows=rows,
        cols=2,
        subplot_titles=[panel["title"] for panel in panels],
        vertical_spacing=0.35 / rows,
        horizontal_spacing=0.08,
    )
    step = max(1.0, (end - start) / 240)
    for index, panel in enumerate(panels):
        row, col = index // 2 + 1, index % 2 + 1
        for target in panel["targets"]:
            answer = prometheus.query_range(grafana_to_promql(target["expr"], rate_interval), start, end, step)
            for series in answer["data"]["result"]:
                points = [(float(t), float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                figure.add_trace(
                    go.Scatter(
                        x=[dt.datetime.fromtimestamp(t, dt.UTC) for t, _ in points],  # one time axis for all
                        y=[v for _, v in points],
                        mode="lines",
                        name=legend(target.get("legendFormat", ""), series["metric"]),
                        legendgroup=str(index),
                        showlegend=True,
                    ),
                    row=row,
                    col=col,
                )
        unit = panel["fieldConfig"]["defaults"].get("unit", "")
        figure.update_yaxes(title_text=unit, row=row, col=col, tickformat=".0%" if unit == "percentunit" else None)
        figure.update_xaxes(
            range=[dt.datetime.fromtimestamp(start, dt.UTC), dt.datetime.fromtimestamp(end, dt.UTC)],
            tickformat="%H:%M:%S",
            row=row,
            col=col,
        )
    figure.update_layout(
        height=330 * rows,
        width=1400,
        template="plotly_dark",
        title=f"{board['title']} - the dashboard's queries, evaluated by Prometheus (Grafana not installed)",
        legend={"font": {"size": 9}},
        margin={"l": 60, "r": 20, "t": 80, "b": 40},
    )
    output.write_text(figure.to_html(include_plotlyjs=True, full_html=True))


def screenshot(html: Path, png: Path, width: int = 1400) -> None:
    """Headless Chromium (Debian's, as the browser tests use) via Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=shutil.which("chromium") or "/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(html.resolve().as_uri())
        page.wait_for_timeout(1500)
        page.screenshot(path=str(png), full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["queries"], help="queries: print every panel query, variables substituted")
    args = parser.parse_args(argv)
    if args.command == "queries":
        for query in panel_queries():
            print(f"{query.panel} [{query.legend}]: {grafana_to_promql(query.expr)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

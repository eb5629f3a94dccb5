"""Load test that checks answers, not only statuses: `make loadtest` (60 s), LOADTEST_SECONDS=10 in CI.

A real served Bento on a free loopback port; 64 concurrent keep-alive connections; about 90% valid
flowers (the dataset's, whose expected species comes from the scikit-learn reference model) and 10%
invalid requests (each must get a 4xx); after about 10% of the right answers, the client confirms the species
through POST /feedback (each must answer 200, recorded, correct). Passes with 0 connection errors, 0 5xx,
0 wrong answers, 0 failed labels and resident memory growing < 10% from after warm-up to the end. Prints a
one-line verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pandas as pd

from iris_classifier.domain.schema import FEATURES, SPECIES
from iris_classifier.harness.servers import Server
from iris_classifier.model.pipeline import Predictor
from iris_classifier.model.store import ensure_model
from iris_classifier.project.paths import RAW_CSV
from iris_classifier.registry.bento import build as build_bento

INVALID = [
    (b'{"sepal_length": -1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', "application/json"),
    (b'{"sepal_length": "5.1", "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', "application/json"),
    (b'{"sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', "application/json"),
    (b'{"sepal_length": NaN, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}', "application/json"),
    (b'{"sepal_length": 5.1,', "application/json"),
    (b"sepal_length=5.1", "text/plain"),
]


@dataclass
class Tally:
    valid: int = 0
    invalid: int = 0
    wrong_species: int = 0
    invalid_not_4xx: int = 0
    labels: int = 0
    labels_failed: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    examples: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.examples) < 5:
            self.examples.append(text)


def rss_bytes(root_pid: int) -> int:
    """Resident memory of the server: the `bentoml serve` process and all its descendants."""
    children: dict[int, list[int]] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        children.setdefault(int(fields["PPid"]), []).append(int(fields["Pid"]))
    total, todo = 0, [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def flower_pool() -> list[tuple[bytes, str]]:
    frame = pd.read_csv(RAW_CSV)
    rows = frame[list(FEATURES)].to_numpy()
    reference = Predictor.from_dir(Path(ensure_model().path), prefer="sklearn")
    expected = [SPECIES[i] for i in reference.predict_proba(rows).argmax(axis=1)]
    return [
        (json.dumps(dict(zip(FEATURES, row.tolist(), strict=True))).encode(), species)
        for row, species in zip(rows, expected, strict=True)
    ]


async def label(session, url, request_id, species, tally) -> None:
    """The true species of an answer, through /feedback: 200, recorded once, and judged right."""
    body = json.dumps({"request_id": request_id, "species": species}).encode()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as response:
            text = await response.text()
            status = response.status
    except (TimeoutError, aiohttp.ClientError) as error:
        tally.connection_errors += 1
        tally.note(f"connection error on /feedback: {type(error).__name__}")
        return
    tally.labels += 1
    if status >= 500:
        tally.server_errors += 1
    answer = json.loads(text) if status == 200 else {}
    if not (answer.get("recorded") is True and answer.get("correct") is True):
        tally.labels_failed += 1
        tally.note(f"/feedback answered {status} {text[:120]}")


async def worker(session, url, pool, tally, deadline, rng, invalid_share, feedback_share=0.1):
    while time.monotonic() < deadline:
        if rng.random() < invalid_share:
            body, content_type = rng.choice(INVALID)
            expected = None
        else:
            body, expected = rng.choice(pool)
            content_type = "application/json"
        try:
            async with session.post(url, data=body, headers={"Content-Type": content_type}) as response:
                text = await response.text()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as error:
            tally.connection_errors += 1
            tally.note(f"connection error: {type(error).__name__}")
            continue
        if status >= 500:
            tally.server_errors += 1
            tally.note(f"{status}: {text[:120]}")
        if expected is None:
            tally.invalid += 1
            if not 400 <= status < 500:
                tally.invalid_not_4xx += 1
                tally.note(f"invalid body answered {status}")
        else:
            tally.valid += 1
            answer = json.loads(text) if status == 200 else {}
            if answer.get("species") != expected:
                tally.wrong_species += 1
                tally.note(f"expected {expected}, got {status} {text[:120]}")
            elif rng.random() < feedback_share:
                await label(session, url.rsplit("/", 1)[0] + "/feedback", answer["request_id"], expected, tally)


async def load(url: str, seconds: float, connections: int, pool, tally, seed: int, invalid_share: float) -> float:
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        await asyncio.gather(
            *(
                worker(session, url, pool, tally, deadline, random.Random(seed + i), invalid_share)
                for i in range(connections)
            )
        )
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--invalid-share", type=float, default=0.1)
    parser.add_argument("--max-memory-growth", type=float, default=0.10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    pool = flower_pool()
    labels_dir = tempfile.mkdtemp(prefix="iris-loadtest-monitor-")  # the prediction log and labels of this run
    server = Server(build_bento(), env={"IRIS_MONITOR_DIR": labels_dir})
    server.start(wait_ready=120)
    try:
        url = f"{server.url}/classify"
        asyncio.run(load(url, args.warmup, args.connections, pool, Tally(), args.seed, args.invalid_share))
        rss_start = rss_bytes(server.process.pid)
        tally = Tally()
        elapsed = asyncio.run(
            load(url, args.seconds, args.connections, pool, tally, args.seed + 1000, args.invalid_share)
        )
        rss_end = rss_bytes(server.process.pid)
        alive = server.process.poll() is None
    finally:
        server.stop()
        shutil.rmtree(labels_dir, ignore_errors=True)

    growth = (rss_end - rss_start) / rss_start
    requests_done = tally.valid + tally.invalid
    ok = (
        alive
        and requests_done > 0
        and tally.connection_errors == 0
        and tally.server_errors == 0
        and tally.wrong_species == 0
        and tally.invalid_not_4xx == 0
        and tally.labels_failed == 0
        and growth < args.max_memory_growth
    )
    print(
        f"loadtest: {'PASS' if ok else 'FAIL'}: {requests_done} requests in {elapsed:.0f} s "
        f"({requests_done / elapsed:.0f}/s) at {args.connections} connections; "
        f"{tally.valid} valid ({tally.wrong_species} wrong), "
        f"{tally.invalid} invalid ({tally.invalid_not_4xx} not 4xx), "
        f"{tally.labels} labels via /feedback ({tally.labels_failed} failed); "
        f"{tally.server_errors} 5xx, {tally.connection_errors} connection errors; "
        f"RSS {rss_start / 2**20:.0f} -> {rss_end / 2**20:.0f} MiB ({growth:+.1%}, limit {args.max_memory_growth:.0%})"
    )
    for example in tally.examples:
        print(f"loadtest:   {example}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

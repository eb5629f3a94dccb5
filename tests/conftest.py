"""Shared fixtures: an isolated BentoML home, telemetry off, and the pipeline's outputs built for real."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from iris_classifier.project import environment

pytest_plugins = ["tests.xdist_compat"]  # --dist loadgroup's groups on pytest 9.2 (see there)

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

# The venv's .pth hook (iris_classifier/project/environment.py) already set the BentoML home and telemetry off;
# this covers a pytest started by another interpreter with the project on its path.
environment.apply()
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"

# A test that needs any of these runs the pipeline, a server or a browser: it is in the slow tier, and
# `make test-fast` (-m "not slow") leaves it out. Derived from the fixtures, so the tiers cannot drift.
SLOW_FIXTURES = {"pipeline_ready", "project_copy", "rebuilt_project", "gdrive_project", "browser"}


# `make test` runs the suite on pytest-xdist workers (-n auto --dist loadgroup). A test that needs one of these
# joins its group, so the thing is made once per run and never raced: tests that count on a server's metrics see
# no other worker's requests, and users of the project's BentoML store or of the Docker engine take turns.
WORKER_GROUPS = {
    "server": "source-server",  # the source service (session), its UI and the demo in front of it
    "bento_tag": "bentoml-store",  # builds this commit's Bento into the project's store
    "bento_server": "bentoml-store",
    "unconvertible_model": "bentoml-store",  # trains into the project's store, then deletes it
    "commit_image": "publish",  # containers on the one Docker engine: with tests/publish (its xdist group)
    "rebuilt_project": "rebuilt-project",  # a copy the pipeline rebuilt from scratch, for the tests that copy it
}
# Module fixtures parametrized over the two real servers, which they look up by name when the test runs.
SERVED_BY_PARAM = {"source": "server", "bento": "bento_server"}


def worker_group(item: pytest.Item) -> str | None:
    """The xdist group of a test: by the shared fixture it uses, else the module of its module-scoped fixture."""
    names = set(getattr(item, "fixturenames", ()))
    params = item.callspec.params.values() if hasattr(item, "callspec") else ()
    names |= {SERVED_BY_PARAM[value] for value in params if isinstance(value, str) and value in SERVED_BY_PARAM}
    for name, group in WORKER_GROUPS.items():
        if name in names:
            return group
    # pytest has no public way to ask a fixture's scope at collection time.
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions and any(defs[-1].scope == "module" for defs in definitions.name2fixturedefs.values()):
        return item.module.__name__  # its module's tests share the module fixture on one worker
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        group = worker_group(item)
        if group and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
    if hasattr(config, "workerinput"):
        # On xdist workers: the slow tier first (stable), so the longest tests start early and short ones fill the end.
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)


T = TypeVar("T")
ARTIFACTS = ROOT / "test-artifacts"


def run(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600, check: bool = True):
    """Run a real command; on failure show its output in the assertion."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def makefile_targets(makefile: str) -> set[str]:
    """The rule names a Makefile's text defines (not its `NAME := value` assignments)."""
    rules = re.findall(r"^([A-Za-z0-9][\w.-]*)\s*:(?!=)", makefile, re.MULTILINE)
    return set(rules)


def run_in_own_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run in a thread of its own, returning the coroutine's result: under xdist an earlier test in this
    worker (Playwright's sync API) may leave an event loop set on the main thread, where asyncio.run refuses."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers of this run (each worker's basetemp lies in it), else this session's."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def once_per_run(run_dir: Path, name: str, work: Callable[[], object]) -> object:
    """`work()` by the first worker that asks, under a file lock; the others wait for it and get its JSON result.

    When it fails, nothing is recorded and the next worker that asks tries again (and shows its own error).
    """
    with open(run_dir / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        done = run_dir / f"{name}.json"
        if done.exists():
            return json.loads(done.read_text())
        result = work()
        done.write_text(json.dumps(result))
        return result


@pytest.fixture(scope="session", autouse=True)
def isolated_monitor_dir(tmp_path_factory) -> Path:
    """Servers started by the tests (they inherit this environment) log predictions and labels here, never into
    the project's .monitor/; one folder per worker, so no worker reads another's."""
    folder = tmp_path_factory.mktemp("monitor")
    before = os.environ.get("IRIS_MONITOR_DIR")
    os.environ["IRIS_MONITOR_DIR"] = str(folder)
    yield folder
    if before is None:
        os.environ.pop("IRIS_MONITOR_DIR", None)
    else:
        os.environ["IRIS_MONITOR_DIR"] = before


def reproduce_pipeline(env: dict[str, str] | None = None) -> bool:
    run(["dvc", "repro"], env=env)
    run([sys.executable, "-m", "iris_classifier.model.store"], env=env)
    return True


@pytest.fixture(scope="session")
def pipeline_ready(run_dir) -> None:
    """`dvc repro` in the project (a no-op when up to date), then the model imported into the store: once per
    run, whatever the number of xdist workers (two `dvc repro` at once in one project fail on DVC's lock)."""
    once_per_run(run_dir, "pipeline_ready", reproduce_pipeline)


REPRODUCING = pytest.StashKey[threading.Thread]()


# --reproduce-first (make test): the xdist controller, idle otherwise, starts `pipeline_ready`'s work before the workers
# start and collect (~20-30 s on a fresh clone, ~10 s after), so they find the pipeline reproduced (or wait for it on
# its lock) instead of one of them reproducing it while the other waits. A failure records nothing: the first
# worker that needs the pipeline tries again and shows its own error.
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reproduce-first",
        action="store_true",
        help="with xdist: reproduce the pipeline while the workers start (make test)",
    )


@pytest.hookimpl(tryfirst=True)  # before xdist starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if config.getoption("reproduce_first") and config.pluginmanager.hasplugin("dsession"):
        run_dir = config._tmp_path_factory.getbasetemp()  # the workers' basetemps lie in it (their `run_dir`)
        lock = open(run_dir / "pipeline_ready.lock", "w")  # noqa: SIM115  (closed by the thread)
        fcntl.flock(lock, fcntl.LOCK_EX)  # taken here, so no worker can start the same work meanwhile

        # as a worker would run it: the feedback stage reads an empty monitor folder, never the project's .monitor/
        monitor = run_dir / "reproduce-first-monitor"
        monitor.mkdir()
        env = {**os.environ, "IRIS_MONITOR_DIR": str(monitor)}

        def reproduce() -> None:
            with lock, contextlib.suppress(Exception):
                (run_dir / "pipeline_ready.json").write_text(json.dumps(reproduce_pipeline(env)))

        config.stash[REPRODUCING] = threading.Thread(target=reproduce, name="reproduce-first")
        config.stash[REPRODUCING].start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if thread := session.config.stash.get(REPRODUCING, None):
        thread.join()  # never leave a `dvc repro` running behind the session


@pytest.fixture(scope="session")
def stored_model(pipeline_ready):
    from iris_classifier.model.store import ensure_model

    return ensure_model()


@pytest.fixture(scope="session")
def model_card(pipeline_ready):
    from iris_classifier.model.store import ModelCard

    return ModelCard.read()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def server(pipeline_ready, artifacts_dir):
    """`bentoml serve service:IrisClassifier` from the work tree, on a free loopback port."""
    from iris_classifier.harness.servers import Server

    process = Server("service:IrisClassifier", log_path=artifacts_dir / "serve-source.log").start()
    yield process
    process.stop()

"""The project's lock files, each compiled by uv from its .in file: `make lock-upgrade` re-locks them all on the
newest versions the .in files allow (bounds only where a release is known to break the project)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from iris_classifier.project.paths import ROOT

UV = str(Path(sys.executable).parent / "uv")


@dataclass(frozen=True)
class Lock:
    source: str
    output: str
    options: tuple[str, ...] = ("--generate-hashes",)

    def command(self, *, upgrade: bool) -> list[str]:
        words = [UV, "pip", "compile", self.source, "--python-version", "3.11", *self.options, "-o", self.output]
        return [*words, "--upgrade"] if upgrade else words


# In order: the serving lock is compiled with the main lock as constraints, so the image runs the versions tested.
LOCKS = (
    Lock("requirements.in", "requirements.lock"),
    Lock(
        "requirements-serve.in",
        "requirements-serve.lock",
        ("--constraint", "requirements.lock", "--no-header", "--no-annotate"),
    ),
    Lock("requirements-scan.in", "requirements-scan.lock"),
    Lock("requirements-spark.in", "requirements-spark.lock"),
    Lock("bench/mlserver/requirements.in", "bench/mlserver/requirements.lock"),
)


def present(root: Path = ROOT) -> list[Lock]:
    return [lock for lock in LOCKS if (root / lock.source).exists()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["upgrade", "list"])
    args = parser.parse_args(argv)
    for lock in present():
        if args.command == "list":
            print(f"{lock.source} -> {lock.output}")
            continue
        print(f"lock-upgrade: {lock.output}", flush=True)
        subprocess.run(lock.command(upgrade=True), cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

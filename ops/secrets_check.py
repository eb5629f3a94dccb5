"""Scan every tracked file for secrets and fail on any finding `.secrets.baseline` does not list.

The baseline lists audited false positives by file, type and hash. detect-secrets-hook also rewrites the baseline
when a listed finding only moved to another line, and exits non-zero: an edit above a test's fake password would then
fail CI with nothing new to audit. This check reads the baseline and never writes it; line numbers are not compared.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from detect_secrets.core import baseline
from detect_secrets.core.secrets_collection import SecretsCollection


def tracked_files(root: Path) -> list[str]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=root, check=True, capture_output=True).stdout
    return [name for name in listing.decode().split("\0") if name and (root / name).is_file()]


def new_findings(root: Path, baseline_file: Path, files: list[str]) -> SecretsCollection:
    """The findings in `files` (relative to `root`) that the baseline does not list (same file, type and hash)."""
    # loading the baseline also configures the plugins and filters it was made with
    accepted = baseline.load(baseline.load_from_file(str(baseline_file)), filename=str(baseline_file))
    # scanned from the root, so each finding's filename is relative, as in the baseline (they are compared)
    here = Path.cwd()
    os.chdir(root)
    try:
        found = SecretsCollection()
        for name in files:
            found.scan_file(name)
    finally:
        os.chdir(here)
    return found - accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the git work tree to scan (default: here)")
    parser.add_argument("--baseline", type=Path, default=Path(".secrets.baseline"))
    args = parser.parse_args(argv)
    root = args.root.resolve()
    baseline_file = args.baseline if args.baseline.is_absolute() else root / args.baseline
    if not baseline_file.is_file():
        print(f"secrets: no baseline at {baseline_file}: create it with `detect-secrets scan > .secrets.baseline`")
        return 2
    files = tracked_files(root)
    new = new_findings(root, baseline_file, files)
    if not new:
        print(f"secrets: no new secrets in {len(files)} tracked files")
        return 0
    print("secrets: potential secrets the baseline does not list (the value is never printed):")
    for filename, secret in sorted(new, key=lambda item: (item[0], item[1].line_number or 0)):
        print(f"  {filename}:{secret.line_number}: {secret.type}")
    print(
        "If one is a secret, remove it from the file and from git history, and rotate it. If it is a false positive,\n"
        "run `detect-secrets scan --baseline .secrets.baseline`, then `detect-secrets audit .secrets.baseline`, and\n"
        "commit the baseline."
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())

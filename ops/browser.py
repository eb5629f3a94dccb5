"""Find or get a headless Chromium for the browser tests, without root where the machine allows it.

python -m ops.browser install   Debian's chromium if present; else Playwright's own download (no root);
                                else, as root only, Debian's package; else say what an admin must run
python -m ops.browser path      print the browser the tests will use (exit 1 with the fix when none)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

ADMIN_COMMAND = "apt-get install -y chromium"
FIX = f"run `make browser` (or, as an admin, once: `{ADMIN_COMMAND}`)"


def playwright_chromium() -> str | None:
    """Playwright's own downloaded Chromium, if one is installed for this user."""
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            path = playwright.chromium.executable_path
    except Exception:  # no driver, or no browser for this Playwright version
        return None
    return path if path and os.access(path, os.X_OK) else None


def find() -> str | None:
    """Debian's chromium first (the one CI-MACHINE.md checked), then Playwright's own."""
    return shutil.which("chromium") or playwright_chromium()


def install() -> int:
    found = find()
    if found:
        print(f"browser: {found}")
        return 0
    print("browser: no Chromium yet; trying Playwright's own download (no root needed)")
    try:
        download = subprocess.run(
            [sys.executable, "-m", "playwright", "install", "chromium"], capture_output=True, text=True, timeout=600
        )
        downloaded = download.returncode == 0
    except subprocess.TimeoutExpired:
        downloaded = False
    if downloaded and find():
        print(f"browser: {find()} (Playwright's download)")
        return 0
    print("browser: Playwright's download is not reachable from this machine")
    if os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        print(f"browser: {shutil.which('chromium')} (Debian's package)")
        return 0
    print(
        f"browser: no Chromium can be had without root here; an admin must run, once: `{ADMIN_COMMAND}`",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["install"]:
        return install()
    if args == ["path"]:
        found = find()
        if found:
            print(found)
            return 0
        print(f"browser: no headless Chromium: {FIX}", file=sys.stderr)
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

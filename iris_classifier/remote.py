"""Checks before DVC talks to a remote: say what to set instead of failing deep inside a transfer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iris_classifier.paths import ROOT

CREDENTIALS_ENV = "GDRIVE_CREDENTIALS_DATA"
KEY_PATH_OPTION = "gdrive_service_account_json_file_path"
REQUIRED_KEY_FIELDS = ("type", "client_email", "private_key")

HOW_TO_SET = (
    f"set {CREDENTIALS_ENV} to the service-account key JSON "
    f'(export {CREDENTIALS_ENV}="$(cat /path/to/key.json)") '
    f"or run `dvc remote modify --local gdrive {KEY_PATH_OPTION} /path/to/key.json`; "
    "never commit the key"
)


class RemoteNotReady(RuntimeError):
    """The remote cannot be used yet; the message says what to set or run."""


def _dvc_config(option: str, root: Path) -> str:
    result = subprocess.run(
        ["dvc", "config", option], cwd=root, capture_output=True, text=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"}
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def check_service_account_key(text: str, source: str) -> None:
    """A key must be JSON with the service-account fields; the message never repeats the key."""
    try:
        key = json.loads(text)
    except ValueError:
        raise RemoteNotReady(f"{source} is not valid JSON (a service-account key file is JSON); {HOW_TO_SET}") from None
    if not isinstance(key, dict):
        raise RemoteNotReady(f"{source} is not a JSON object; {HOW_TO_SET}")
    missing = [field for field in REQUIRED_KEY_FIELDS if not key.get(field)]
    if missing:
        raise RemoteNotReady(f"{source} lacks {', '.join(missing)}: it is not a service-account key; {HOW_TO_SET}")
    if key["type"] != "service_account":
        raise RemoteNotReady(f"{source} has type {key['type']!r}, expected 'service_account'; {HOW_TO_SET}")


def check_remote(name: str, root: Path = ROOT) -> None:
    """Raise RemoteNotReady unless `dvc pull/push -r name` can start."""
    url = _dvc_config(f"remote.{name}.url", root)
    if not url:
        raise RemoteNotReady(f"DVC remote {name!r} is not configured; `dvc remote list` shows the remotes")
    if not url.startswith("gdrive://"):
        return
    if "SET-ME" in url:
        raise RemoteNotReady("the gdrive remote has no folder id: run `make gdrive-folder FOLDER_ID=<Drive folder id>`")
    if os.environ.get(CREDENTIALS_ENV):
        check_service_account_key(os.environ[CREDENTIALS_ENV], f"${CREDENTIALS_ENV}")
        return
    key_path = _dvc_config(f"remote.{name}.{KEY_PATH_OPTION}", root)
    if not key_path:
        raise RemoteNotReady(f"no Google Drive credentials: {HOW_TO_SET}")
    path = Path(key_path) if Path(key_path).is_absolute() else root / ".dvc" / key_path
    if not path.is_file():
        raise RemoteNotReady(f"the key file named in .dvc/config.local does not exist: {path}; {HOW_TO_SET}")
    check_service_account_key(path.read_text(), f"key file {path}")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "check":
        print("usage: python -m iris_classifier.remote check REMOTE", file=sys.stderr)
        return 2
    try:
        check_remote(args[1])
    except RemoteNotReady as error:
        print(f"remote {args[1]}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

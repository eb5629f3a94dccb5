"""DVC remotes: check one before DVC talks to it, and pull/push under the pipeline's rules.

The default remote `local` is a cache: when it cannot serve, the pipeline rebuilds. Any other remote
was chosen on purpose (`DVC_REMOTE=gdrive`): when it cannot serve, the build stops before training,
so a team build never ships a model that is not the team's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from iris_classifier.project.paths import ROOT

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
    # Both problems at once when both are there: a new team member usually has neither.
    problems = []
    if "SET-ME" in url:
        problems.append("the gdrive remote has no folder id: run `make gdrive-folder FOLDER_ID=<Drive folder id>`")
    try:
        check_drive_credentials(name, root)
    except RemoteNotReady as error:
        problems.append(str(error))
    if problems:
        raise RemoteNotReady("; and ".join(problems))


def check_drive_credentials(name: str, root: Path) -> None:
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


DEFAULT_REMOTE = "local"


def redacted(text: str) -> str:
    """DVC's own error text, minus the key should any part of it ever appear there."""
    key = os.environ.get(CREDENTIALS_ENV, "")
    return text.replace(key, f"<${CREDENTIALS_ENV}>") if len(key) > 8 else text


def transfer(verb: str, name: str, root: Path = ROOT) -> int:
    """`dvc pull|push -r name` for the pipeline: 0 when done; for the default remote, a failure is a warning."""
    contract = name != DEFAULT_REMOTE
    try:
        check_remote(name, root)
    except RemoteNotReady as error:
        print(f"{verb}: remote {name!r}: {error}", file=sys.stderr)
        return 2 if contract else 0
    command = ["dvc", verb, "-r", name] + (["--allow-missing"] if verb == "pull" else [])
    result = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if result.returncode == 0:
        print(f"{verb}: done with remote {name!r}")
        return 0
    dvc_said = redacted((result.stderr or result.stdout).strip())
    if not contract:
        print(f"{verb}: default remote {name!r} unavailable, so the pipeline rebuilds what it lacks. DVC said:")
        print(f"  {dvc_said}")
        return 0
    credentials = (
        f" (credentials: ${CREDENTIALS_ENV})" if _dvc_config(f"remote.{name}.url", root).startswith("gdrive://") else ""
    )
    print(
        f"{verb}: remote {name!r}{credentials} failed, and it was chosen explicitly, so the build stops here "
        f"instead of training without it. DVC said:\n  {dvc_said}",
        file=sys.stderr,
    )
    return 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in ("check", "pull", "push"):
        print("usage: python -m iris_classifier.data.remote check|pull|push REMOTE", file=sys.stderr)
        return 2
    if args[0] != "check":
        return transfer(args[0], args[1])
    try:
        check_remote(args[1])
    except RemoteNotReady as error:
        print(f"remote {args[1]}: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

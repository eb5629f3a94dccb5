"""Smoke test of a running service: one flower per species, the UI loads, /model names the commit.

    python -m ops.smoke --url http://127.0.0.1:3000 [--commit <git commit>]
Exits non-zero with a message on the first failure.
"""

from __future__ import annotations

import argparse
import sys

import requests

from iris_classifier.domain.schema import EXAMPLE_FLOWERS


class SmokeFailure(Exception):
    pass


def check(url: str, commit: str | None) -> list[str]:
    passed = []
    try:
        ready = requests.get(f"{url}/readyz", timeout=5)
    except requests.RequestException as error:
        name = type(error).__name__
        raise SmokeFailure(f"{url} is not answering ({name}); is it running? (`make run-image`)") from None
    if ready.status_code != 200:
        raise SmokeFailure(f"{url}/readyz answered {ready.status_code}: the model is not loaded yet")
    for species, flower in EXAMPLE_FLOWERS.items():
        response = requests.post(f"{url}/classify", json=flower, timeout=10)
        if response.status_code != 200:
            raise SmokeFailure(f"/classify answered {response.status_code} for a {species}: {response.text[:200]}")
        got = response.json().get("species")
        if got != species:
            raise SmokeFailure(f"/classify called Fisher's first {species} a {got}")
        passed.append(f"/classify {species}")
    ui = requests.get(f"{url}/ui/", timeout=60)  # the UI is built after ready, on its first request at the latest
    if ui.status_code != 200 or "gradio" not in ui.text.lower():
        raise SmokeFailure(f"/ui/ answered {ui.status_code} without the Gradio page")
    passed.append("/ui/ loads")
    model = requests.get(f"{url}/model", timeout=10)
    if model.status_code != 200:
        raise SmokeFailure(f"/model answered {model.status_code}")
    card = model.json()
    if commit:
        labels = {card.get("git_commit", ""), card.get("bento_commit", "")}
        if not any(label.removesuffix("-dirty") == commit.removesuffix("-dirty") for label in labels if label):
            raise SmokeFailure(f"/model names commit {labels}, expected {commit}")
        passed.append(f"/model names commit {commit[:12]}")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--commit", default=None, help="the git commit the service must report")
    args = parser.parse_args(argv)
    try:
        passed = check(args.url.rstrip("/"), args.commit)
    except SmokeFailure as failure:
        print(f"smoke: FAILED: {failure}", file=sys.stderr)
        return 1
    except requests.RequestException as error:
        print(f"smoke: FAILED: {args.url} stopped answering ({type(error).__name__})", file=sys.stderr)
        return 1
    print(f"smoke: OK against {args.url}: " + "; ".join(passed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

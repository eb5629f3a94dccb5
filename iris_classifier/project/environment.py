"""The defaults every Python process of the project's venv starts with: the project's BentoML store, telemetry off.

`make install` writes a `.pth` file into the venv that applies these defaults at every start, so `bentoml serve`,
`bentoml models list`, `dvc repro`, `pytest` and the Makefile's commands all find the model store
in `.bentoml/` of the project, with or without the venv activated, and without `export` lines.
A variable already set in the environment wins: `BENTOML_HOME=~/bentoml bentoml models list` still
reads that store, and the "no model" message then says so. This is the ONE place these defaults
are set for the venv; the image sets its own in bentofile.yaml (`envs:`).
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_STORE = ROOT / ".bentoml"

# Who chose BENTOML_HOME, for the "no model" message.
PROJECT_DEFAULT = (
    "the project's default (.bentoml/ in the project, set by the venv: iris_classifier/project/environment.py)"
)
USER_SETTING = "the BENTOML_HOME environment variable"

# BentoML, DVC and Gradio report usage to their vendors by default; Hugging Face helpers look things up online.
TELEMETRY_OFF = {
    "BENTOML_DO_NOT_TRACK": "True",
    "DVC_NO_ANALYTICS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
}
# Gradio renders the page in the browser: its server-side rendering starts a Node.js server beside it (the image
# has no Node.js and sets the same in bentofile.yaml). Its file cache (the page's image, uploaded CSV files) is
# the project's own: Gradio's default, /tmp/gradio, is shared by every user of the machine, and once another user
# made it, building the UI fails with "Permission denied".
GRADIO_SERVING = {"GRADIO_SSR_MODE": "False", "GRADIO_TEMP_DIR": str(ROOT / ".gradio")}


def defaults() -> dict[str, str]:
    return {"BENTOML_HOME": str(PROJECT_STORE), **TELEMETRY_OFF, **GRADIO_SERVING}


def apply(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Fill in what the environment does not already say."""
    for name, value in defaults().items():
        environ.setdefault(name, value)


def bentoml_home() -> str:
    """The store BentoML uses in this process (its own default when nothing set one)."""
    return os.environ.get("BENTOML_HOME", str(Path.home() / "bentoml"))


def bentoml_home_source() -> str:
    if "BENTOML_HOME" not in os.environ:
        return "BentoML's default (no BENTOML_HOME set, and not started from the project's venv)"
    return PROJECT_DEFAULT if Path(os.environ["BENTOML_HOME"]) == PROJECT_STORE else USER_SETTING


def pth_file() -> str:
    """What `make install` writes into the venv's .pth file: the project root on sys.path, then `apply` inlined.

    The hook line must not import this package: imported at interpreter start, it would pin
    `iris_classifier` to this checkout for the whole process, and a copy of the project run with
    this venv (the pipeline tests do that) would then read and write this checkout's files.
    """
    settings = "; ".join(f"os.environ.setdefault({name!r}, {value!r})" for name, value in defaults().items())
    return f"{ROOT}\nimport os; {settings}\n"


if __name__ == "__main__":
    print(pth_file(), end="")

"""Read params.yaml, one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from iris_classifier.project.paths import PARAMS_FILE


def load_params(section: str | None = None, path: Path = PARAMS_FILE) -> dict[str, Any]:
    with open(path) as stream:
        params = yaml.safe_load(stream)
    return params if section is None else params[section]

"""The model a registry version names: its card and store entry, restored from DVC at the version's commit."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from iris_classifier.model.store import ModelCard, stored_model
from iris_classifier.project.paths import MODEL_EXPORT, MODEL_INFO, ROOT


def model_at(commit: str, root: Path = ROOT) -> tuple[ModelCard, Any]:
    """The card and BentoML store entry of the model `commit` records; imported from its export when the store
    lacks it. models/ is DVC's (gitignored): both files come from the DVC cache, else from the remote DVC_REMOTE
    names (the Makefile's variable), else the default one."""
    import bentoml
    import dvc.api
    from bentoml.exceptions import NotFound

    remote = os.environ.get("DVC_REMOTE") or None
    card_path, export_path = (str(path.relative_to(ROOT)) for path in (MODEL_INFO, MODEL_EXPORT))
    card = ModelCard.from_dict(json.loads(dvc.api.read(card_path, repo=str(root), rev=commit, remote=remote)))
    try:
        return card, bentoml.models.get(card.tag)
    except NotFound:
        pass
    with tempfile.TemporaryDirectory() as folder:
        exported = Path(folder) / "model.bentomodel"
        exported.write_bytes(dvc.api.read(export_path, repo=str(root), rev=commit, remote=remote, mode="rb"))
        bentoml.models.import_model(str(exported))
    return card, stored_model(card.tag)

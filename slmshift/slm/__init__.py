"""Local SLM inference: load a saved model directory and generate chat answers."""

from __future__ import annotations

import importlib
from pathlib import Path

from slmshift.slm.base import Generation, ManifestError, SLMGenerator, SLMManifest

__all__ = ["Generation", "ManifestError", "SLMGenerator", "SLMManifest", "load_slm"]

# Manifest kind -> module with a `load(directory, manifest, **options)` function.
_LOADERS = {
    "lora": "slmshift.slm.hf",
    "hf": "slmshift.slm.hf",
    "compact": "slmshift.slm.compact",
    "classical": "slmshift.slm.classical",
    "ensemble": "slmshift.slm.ensemble",
}


def load_slm(directory: str | Path, **options: object) -> SLMGenerator:
    """Load the SLM saved in `directory`, whatever its kind.

    Raises:
        ManifestError: the directory has no valid manifest.
    """
    manifest = SLMManifest.load(directory)
    module = importlib.import_module(_LOADERS[manifest.kind])
    return module.load(Path(directory), manifest, **options)

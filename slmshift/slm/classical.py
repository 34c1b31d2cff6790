"""Serve a scikit-learn text classifier (the classical floor) as an SLM.

NOTE: the classifier is stored with joblib, which unpickles: load only directories you wrote.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmshift.slm._label_scoring import LabelScoringGenerator
from slmshift.slm.base import ManifestError, SLMManifest

logger = logging.getLogger(__name__)


class ClassicalGenerator(LabelScoringGenerator):
    """A fitted scikit-learn pipeline; answers with its most probable class and that probability."""

    def __init__(self, manifest: SLMManifest, pipeline: Any, *, name: str) -> None:
        self.name = name
        self.manifest = manifest
        self.pipeline = pipeline
        self.labels = [str(label) for label in pipeline.classes_]
        if manifest.labels and list(manifest.labels) != self.labels:
            raise ManifestError(
                f"Classifier {name!r} has classes that differ from its manifest's labels: "
                "retrain it with `slmshift train`."
            )
        self._lock = threading.Lock()

    def label_probabilities(self, texts: Sequence[str]) -> Any:
        """An array (texts x labels) of class probabilities in `labels` order."""
        with self._lock:
            return self.pipeline.predict_proba(list(texts))


def load(directory: Path, manifest: SLMManifest, **options: object) -> ClassicalGenerator:
    """Load a classifier directory written by `slmshift.training.classical.train_classical`."""
    import joblib

    model_file = directory / str(manifest.extra.get("model_file", "classifier.joblib"))
    if not model_file.is_file():
        raise ManifestError(f"No classifier file {model_file}: retrain with `slmshift train`.")
    name = str(options.get("name") or f"classical:{directory.name}")
    return ClassicalGenerator(manifest, joblib.load(model_file), name=name)

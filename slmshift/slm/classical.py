"""Serve a scikit-learn text classifier (the classical floor) as an SLM.

NOTE: the classifier is stored with joblib, which unpickles: load only directories you wrote.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmshift.records import Message, ToolDefinition
from slmshift.slm.base import Generation, ManifestError, SLMManifest
from slmshift.slm.compact import last_user_text

logger = logging.getLogger(__name__)


class ClassicalGenerator:
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

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        text = last_user_text(messages)
        probabilities = self.label_probabilities([text])[0]
        best = int(probabilities.argmax())
        return Generation(
            message=Message(role="assistant", content=self.labels[best]),
            confidence=float(probabilities[best]),
            input_tokens=len(text.split()),
            output_tokens=1,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

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

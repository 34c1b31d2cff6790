"""An ensemble of label models (compact and classical) served as one SLM.

Each member gives probabilities over the label set; the ensemble averages them with the
manifest's weights and answers with the most probable label. The members live in
subdirectories, each with its own manifest, and are listed in `manifest.extra["members"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.slm._label_scoring import LabelScoringGenerator
from slmshift.slm.base import ManifestError, SLMManifest

logger = logging.getLogger(__name__)


class EnsembleGenerator(LabelScoringGenerator):
    """Averages the label probabilities of its members; confidence is the averaged probability."""

    def __init__(
        self, manifest: SLMManifest, members: Sequence[Any], weights: Sequence[float], *, name: str
    ) -> None:
        if not members:
            raise ManifestError(f"Ensemble {name!r} has no members.")
        self.name = name
        self.manifest = manifest
        self.members = list(members)
        self.labels = list(manifest.labels or members[0].labels)
        total = float(sum(weights))
        self.weights = [float(weight) / total for weight in weights]
        self._columns = [_columns(self.labels, member) for member in self.members]

    def label_probabilities(self, texts: Sequence[str]) -> Any:
        """The weighted mean of the members' probabilities, columns in `labels` order."""
        total = None
        for member, weight, columns in zip(self.members, self.weights, self._columns):
            part = member.label_probabilities(texts)[:, columns] * weight
            total = part if total is None else total + part
        return total


def _columns(labels: list[str], member: Any) -> list[int]:
    missing = sorted(set(labels) - set(member.labels))
    if missing:
        raise ManifestError(
            f"Ensemble member {member.name!r} lacks labels {missing[:5]}: train every member on "
            "the same label set."
        )
    return [member.labels.index(label) for label in labels]


def save_ensemble(
    directory: str | Path,
    member_dirs: Sequence[str],
    *,
    labels: Sequence[str],
    weights: Sequence[float] | None = None,
    task: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write the manifest of an ensemble whose members are subdirectories of `directory`."""
    directory = Path(directory)
    for member in member_dirs:
        SLMManifest.load(directory / member)
    weights = list(weights) if weights is not None else [1.0] * len(member_dirs)
    SLMManifest(
        kind="ensemble",
        base_model=f"ensemble of {len(member_dirs)} label models: " + ", ".join(member_dirs),
        task=task,
        output_kind="label",
        labels=list(labels),
        hyperparameters={"weights": weights},
        metrics=metrics or {},
        created_at=datetime.now(timezone.utc).isoformat(),
        extra={"members": list(member_dirs), "input": "last user message"},
    ).save(directory)
    return directory


def load(directory: Path, manifest: SLMManifest, **options: object) -> EnsembleGenerator:
    """Load every member listed in the manifest, then the ensemble."""
    from slmshift.slm import load_slm

    members_dirs = manifest.extra.get("members") or []
    members = [load_slm(directory / member) for member in members_dirs]
    weights = manifest.hyperparameters.get("weights") or [1.0] * len(members)
    name = str(options.get("name") or f"ensemble:{directory.name}")
    return EnsembleGenerator(manifest, members, weights, name=name)

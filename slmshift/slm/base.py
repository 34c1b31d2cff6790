"""The local small-model interface that evaluation and the chat-model integrations share.

Every kind of SLM slmshift produces (a base model with a LoRA adapter, a compact model trained
from scratch, a classical classifier) is served through `SLMGenerator.generate`, and every kind
is saved as a directory with a `manifest.json` that `slmshift.slm.load_slm` reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from slmshift.records import Message, ToolDefinition

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
SLM_KINDS = ("lora", "hf", "compact", "classical", "ensemble")


class ManifestError(ValueError):
    """A model directory's manifest is missing or invalid."""


@dataclass(frozen=True)
class Generation:
    """One SLM answer.

    `confidence` is the probability the model gave its whole answer (the product of its token
    probabilities, or the classifier's class probability); `None` when the model cannot say.
    """

    message: Message
    confidence: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str = "stop"
    latency_ms: float | None = None


@runtime_checkable
class SLMGenerator(Protocol):
    """A small model that generates replies to chat messages.

    Contract: `generate` is synchronous, may be called from several threads one at a time per
    instance, and raises only for invalid input (never for an answer it dislikes).
    """

    name: str
    manifest: SLMManifest

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation: ...


@dataclass
class SLMManifest:
    """The `manifest.json` of a saved SLM directory.

    Attributes:
        kind: `lora` (base plus peft adapter), `hf` (full model), `compact` (trained from scratch
            by slmshift), `classical` (a scikit-learn classifier served as a chat model) or
            `ensemble` (label models whose answer probabilities are averaged).
        base_model: Hub id or local path of the base model; for `compact` and `classical`, a
            description of the architecture.
        base_revision: Revision (commit hash) of the base model when known.
        task: Task id the model was trained for, such as `router/0`.
        output_kind: `label`, `json`, `tool_call` or `text`.
        labels: The label set of a label task, in the order the model uses.
        data_hash: SHA-256 of the training examples.
        hyperparameters: Training settings.
        chat_template: The Jinja chat template used to format examples.
        metrics: Evaluation results, by split.
        created_at: ISO 8601 time the directory was written.
    """

    kind: str
    base_model: str
    task: str | None = None
    output_kind: str | None = None
    base_revision: str | None = None
    labels: list[str] | None = None
    data_hash: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    manifest_version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.kind not in SLM_KINDS:
            raise ManifestError(f"Invalid SLM kind {self.kind!r}: use one of {', '.join(SLM_KINDS)}.")

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / MANIFEST_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> SLMManifest:
        """Read `directory/manifest.json`.

        Raises:
            ManifestError: the file is missing, not JSON, or has unknown or missing fields.
        """
        path = Path(directory) / MANIFEST_NAME
        if not path.is_file():
            raise ManifestError(
                f"No {MANIFEST_NAME} in {str(directory)!r}: pass a directory written by "
                "`slmshift train`."
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ManifestError(f"Invalid JSON in {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ManifestError(f"{path} must hold a JSON object, got {type(data).__name__}.")
        version = data.get("manifest_version", MANIFEST_VERSION)
        if version != MANIFEST_VERSION:
            raise ManifestError(
                f"{path} has manifest_version {version!r}; this slmshift reads {MANIFEST_VERSION}."
            )
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ManifestError(f"{path} has unknown fields {unknown}: remove them or upgrade slmshift.")
        for required in ("kind", "base_model"):
            if not isinstance(data.get(required), str):
                raise ManifestError(f"{path} is missing the string field {required!r}.")
        return cls(**data)

"""Train the demo's SLM candidates for one node from the teacher's records.

A node qualifies offline when its answers come from a closed set (the router's 77 intents, the
responder's replies per intent): then a classical classifier (the floor) and a compact model
trained from scratch are fitted, each gets the confidence floor that keeps its answers at 97%
agreement on the validation split, and the better of the two on validation is chosen. Tool
calls need a pretrained base model to LoRA-tune (`--hub-model`); without one the node stays on
the teacher, and the reason says so.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmshift.demo.scoring import Answer, answer_records, choose_min_confidence, score
from slmshift.records import CallRecord, Message

logger = logging.getLogger(__name__)

# An answer set this small, where answers repeat, is a label task a compact model can learn.
MAX_CLOSED_ANSWERS = 300
MIN_EXAMPLES_PER_ANSWER = 2.0
VALIDATION_SHARE = 0.1


@dataclass
class Candidate:
    """A trained SLM for one node, with its validation figures."""

    node: str
    kind: str
    name: str
    model_dir: str
    labels: list[str]
    min_confidence: float | None
    validation: dict[str, Any]
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answer_pairs(records: Sequence[CallRecord]) -> list[tuple[str, str]]:
    """Return `(last user message, answer text)` per record, one per input (the latest wins)."""
    pairs: dict[str, str] = {}
    for record in records:
        if not record.ok or record.response is None or record.response.tool_calls:
            continue
        text = last_user_text(record.messages)
        if text:
            pairs[text] = record.response.text.strip()
    return list(pairs.items())


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text.strip()
    return ""


def offline_blocker(records: Sequence[CallRecord], pairs: Sequence[tuple[str, str]]) -> str | None:
    """Return why this node cannot get an offline SLM, or None when it can."""
    if any(record.response is not None and record.response.tool_calls for record in records):
        return (
            "tool calls need a pretrained base model to LoRA-tune (pass --hub-model); "
            "offline it stays on the teacher"
        )
    answers = {answer for _, answer in pairs}
    if len(answers) < 2:
        return f"only {len(answers)} distinct answer: nothing to learn"
    if len(answers) > MAX_CLOSED_ANSWERS or len(pairs) / len(answers) < MIN_EXAMPLES_PER_ANSWER:
        return (
            f"free-form answers ({len(answers)} distinct in {len(pairs)} calls) need a pretrained "
            "base model (pass --hub-model)"
        )
    return None


def split_pairs(pairs: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split deterministically by a hash of the input: about `VALIDATION_SHARE` to validation."""
    train, validation = [], []
    for text, answer in pairs:
        (validation if in_validation(text) else train).append((text, answer))
    return train, validation


def in_validation(text: str) -> bool:
    """Whether the input `text` belongs to the validation split (a hash bucket, case-insensitive)."""
    bucket = int(hashlib.sha256(text.lower().encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < VALIDATION_SHARE


def calibrate(generator: Any, validation_records: Sequence[CallRecord]) -> tuple[float | None, dict[str, Any], list[Answer]]:
    """Choose the confidence floor on validation records; return it, its score and the answers."""
    answers = answer_records(generator, validation_records)
    floor = choose_min_confidence(answers)
    return floor, score(answers, floor).to_dict(), answers


def pick_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """Pick the candidate with the highest validation coverage at the target, then agreement."""
    return max(
        candidates,
        key=lambda candidate: (
            round(candidate.validation["coverage"], 4),
            candidate.validation["agreement"],
        ),
    )


ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


def train_candidates(
    node: str,
    pairs: Sequence[tuple[str, str]],
    validation_records: Sequence[CallRecord],
    models_dir: Path,
    *,
    fast: bool,
    seed: int,
    progress: ProgressFactory,
) -> list[Candidate]:
    """Train the classical floor and a compact model on `pairs`; calibrate both on validation.

    `validation_records` are the teacher's records whose inputs fell in the validation split;
    each candidate's confidence floor is chosen on them, never on the held-out set.
    """
    from slmshift.slm import load_slm
    from slmshift.training.classical import ClassicalConfig, train_classical
    from slmshift.training.compact import train_compact

    train, validation = split_pairs(pairs)
    task = f"{node}/0"
    candidates = []

    classical_dir = models_dir / node / "classical"
    directory, seconds = train_classical(train, classical_dir, task=task, config=ClassicalConfig(seed=seed))
    candidates.append(_calibrated(node, "classical", directory, seconds, validation_records, load_slm))

    config = _compact_config(fast=fast, seed=seed)
    advance = progress(f"train: compact model for {node}", config.epochs)
    result = train_compact(
        train, validation, models_dir / node / "compact", task=task, config=config,
        progress=lambda entry: advance(1),
    )
    candidate = _calibrated(node, "compact", result.directory, result.train_seconds, validation_records, load_slm)
    candidate.extra = {"parameters": result.parameters, "best_epoch": result.best_epoch}
    candidates.append(candidate)
    return candidates


def _compact_config(*, fast: bool, seed: int) -> Any:
    from slmshift.training.compact import CompactConfig

    if fast:
        return CompactConfig(epochs=8, hidden_size=96, intermediate_size=192, seed=seed)
    return CompactConfig(seed=seed)


def _calibrated(
    node: str, kind: str, directory: Path, seconds: float, validation_records: Sequence[CallRecord], load: Any
) -> Candidate:
    generator = load(directory)
    floor, figures, _ = calibrate(generator, validation_records)
    manifest = generator.manifest
    return Candidate(
        node=node,
        kind=kind,
        name=f"{node}-{kind}",
        model_dir=str(directory),
        labels=list(manifest.labels or []),
        min_confidence=floor,
        validation=figures,
        train_seconds=round(seconds, 2),
    )

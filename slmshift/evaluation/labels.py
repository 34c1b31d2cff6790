"""Label tasks: agreement with the teacher, and the confidence threshold that reaches a target.

The threshold is chosen on the validation split, as the lowest confidence at which the answers
kept still agree with the teacher at least `target` of the time; on the test split it is then
reported as coverage (the share of requests answered) and agreement on the answered ones.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_TARGET_AGREEMENT = 0.97


@dataclass(frozen=True)
class Coverage:
    """The result of applying a confidence threshold."""

    threshold: float
    coverage: float
    agreement: float | None
    answered: int
    total: int


def agreement(predicted: Sequence[str], expected: Sequence[str]) -> float:
    """Share of positions where the two label lists agree.

    Raises:
        ValueError: the lists differ in length or are empty.
    """
    if len(predicted) != len(expected) or not expected:
        raise ValueError(
            f"Cannot compare {len(predicted)} predictions with {len(expected)} teacher labels: "
            "pass two non-empty lists of the same length."
        )
    return sum(p == e for p, e in zip(predicted, expected)) / len(expected)


def choose_threshold(
    confidences: Sequence[float], correct: Sequence[bool], *, target: float = DEFAULT_TARGET_AGREEMENT
) -> float:
    """The lowest threshold whose kept answers agree at least `target` (validation data only).

    Returns a threshold above 1 (answer nothing) when no threshold reaches the target.
    """
    ranked = sorted(zip(confidences, correct), key=lambda pair: -pair[0])
    best = float("inf")
    hits = 0
    for count, (confidence, is_correct) in enumerate(ranked, start=1):
        hits += bool(is_correct)
        next_confidence = ranked[count][0] if count < len(ranked) else None
        if next_confidence is not None and next_confidence == confidence:
            continue
        if hits / count >= target:
            best = confidence
    return best if best != float("inf") else 1.0 + 1e-9


def coverage_at(confidences: Sequence[float], correct: Sequence[bool], threshold: float) -> Coverage:
    """Coverage and agreement of the answers whose confidence reaches `threshold`."""
    kept = [is_correct for confidence, is_correct in zip(confidences, correct) if confidence >= threshold]
    return Coverage(
        threshold=threshold,
        coverage=len(kept) / len(confidences) if confidences else 0.0,
        agreement=sum(kept) / len(kept) if kept else None,
        answered=len(kept),
        total=len(confidences),
    )

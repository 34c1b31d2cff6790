"""Score an SLM against the teacher's answers: agreement, and coverage under a confidence floor.

Used twice: on the validation split, to choose the confidence threshold below which the
fallback hands a request to the teacher; and on the fixed held-out set, to compare models
(the demo's evaluation and `slmshift refresh`'s promotion decision).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from slmshift.records import CallRecord, Message

logger = logging.getLogger(__name__)

# Agreement the SLM must reach on the answers it keeps when the threshold is chosen.
TARGET_KEPT_AGREEMENT = 0.97


@dataclass(frozen=True)
class Score:
    """An SLM's figures on a set of teacher records.

    Attributes:
        examples: Records scored.
        agreement: Share of all SLM answers equal to the teacher's.
        min_confidence: The confidence floor applied (None: every answer kept).
        coverage: Share of answers at or above the floor, which the SLM would serve.
        kept_agreement: Agreement on the kept answers.
        served_agreement: Agreement of what the node serves with fallback: kept SLM answers,
            and the teacher's own answer for the rest.
        latency_p50_ms: Median SLM latency per call.
    """

    examples: int
    agreement: float
    min_confidence: float | None
    coverage: float
    kept_agreement: float | None
    served_agreement: float
    latency_p50_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Answer:
    """One SLM answer next to the teacher's."""

    agreed: bool
    confidence: float | None
    latency_ms: float | None


def answer_records(generator: Any, records: Sequence[CallRecord], *, advance: Callable[[int], None] | None = None) -> list[Answer]:
    """Run `generator` on each record's messages and tools; compare with the teacher's response."""
    answers = []
    for record in records:
        generation = generator.generate(list(record.messages), tools=list(record.tools) or None)
        answers.append(
            Answer(
                agreed=same_answer(generation.message, record.response),
                confidence=generation.confidence,
                latency_ms=generation.latency_ms,
            )
        )
        if advance is not None:
            advance(1)
    return answers


def same_answer(answer: Message, teacher: Message | None) -> bool:
    """Whether two answers agree: the same tool calls, equal JSON, or the same text (case and spacing aside)."""
    if teacher is None:
        return False
    if answer.tool_calls or teacher.tool_calls:
        return _calls(answer) == _calls(teacher)
    left, right = answer.text.strip(), teacher.text.strip()
    try:
        return json.loads(left) == json.loads(right)
    except (json.JSONDecodeError, ValueError):
        return " ".join(left.lower().split()) == " ".join(right.lower().split())


def score(answers: Sequence[Answer], min_confidence: float | None) -> Score:
    """Summarise `answers` under the confidence floor `min_confidence`."""
    if not answers:
        raise ValueError("Cannot score an SLM on zero examples: the held-out or validation set is empty.")
    kept = [answer for answer in answers if _kept(answer, min_confidence)]
    agreed_kept = sum(answer.agreed for answer in kept)
    served_correct = agreed_kept + (len(answers) - len(kept))
    latencies = sorted(answer.latency_ms for answer in answers if answer.latency_ms is not None)
    return Score(
        examples=len(answers),
        agreement=sum(answer.agreed for answer in answers) / len(answers),
        min_confidence=min_confidence,
        coverage=len(kept) / len(answers),
        kept_agreement=agreed_kept / len(kept) if kept else None,
        served_agreement=served_correct / len(answers),
        latency_p50_ms=latencies[len(latencies) // 2] if latencies else None,
    )


def choose_min_confidence(answers: Sequence[Answer], *, target: float = TARGET_KEPT_AGREEMENT) -> float | None:
    """Return the lowest confidence floor whose kept answers agree at `target` or better.

    Returns None when every answer may be kept (agreement already meets `target`) or when the
    model reports no confidence. When no floor reaches `target`, the floor that keeps only the
    single most confident answer is returned, so the node falls back almost always.
    """
    scored = sorted(
        (answer for answer in answers if answer.confidence is not None),
        key=lambda answer: answer.confidence,
        reverse=True,
    )
    if not scored:
        return None
    if sum(answer.agreed for answer in scored) / len(scored) >= target:
        return None

    best: float = scored[0].confidence  # type: ignore[assignment]
    agreed = 0
    for index, answer in enumerate(scored, start=1):
        agreed += answer.agreed
        is_last_of_tie = index == len(scored) or scored[index].confidence != answer.confidence
        if is_last_of_tie and agreed / index >= target:
            best = answer.confidence  # type: ignore[assignment]
    return best


def _kept(answer: Answer, min_confidence: float | None) -> bool:
    if min_confidence is None or answer.confidence is None:
        return True
    return answer.confidence >= min_confidence


def _calls(message: Message) -> list[tuple[str, str]]:
    return sorted((call.name, json.dumps(call.arguments, sort_keys=True)) for call in message.tool_calls)

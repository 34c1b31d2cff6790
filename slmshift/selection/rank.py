"""Rank SLM candidates for a task under constraints, and say why.

Hard constraints reject a candidate (with the reason): memory budget at the task's context
length, allowed licenses, the latency budget, and tool calling for tool-call tasks. Kept
candidates are ordered by a score that prefers small models for narrow outputs and native tool
calling for tool calls. For label tasks the `compact` and `classical` candidates (trained here
from the task's own traces) are always listed.

NOTE: latency is an estimate from model size, not a measurement: decoding is taken as memory
bound (weights read once per token) at an assumed bandwidth, prefill as compute bound.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slmshift.selection.catalog import Candidate, GIB, WEIGHT_BYTES, load_catalog, memory_estimate

logger = logging.getLogger(__name__)

# Assumed hardware for latency estimates (state them in every report).
HARDWARE = {
    "cpu": {"bandwidth_gb_s": 20.0, "flops": 2e11},
    "gpu": {"bandwidth_gb_s": 2000.0, "flops": 2e14},
}
NARROW_KINDS = ("label", "json")


@dataclass(frozen=True)
class Constraints:
    """What a pick must satisfy; `None` means no limit."""

    memory_budget_gib: float | None = None
    allowed_licenses: tuple[str, ...] | None = None
    latency_budget_ms: float | None = None
    dtype: str = "bf16"
    device: str = "cpu"


@dataclass(frozen=True)
class TaskProfile:
    """The task as selection sees it: output kind and typical token counts."""

    task: str
    output_kind: str
    context_tokens: int = 512
    output_tokens: int = 8
    records: int = 0


@dataclass
class Ranked:
    """One candidate's verdict: kept with a score, or rejected; reasons either way."""

    id: str
    kind: str
    kept: bool
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    memory_gib: float | None = None
    latency_ms_estimate: float | None = None
    unverified: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def estimate_latency_ms(candidate: Candidate, profile: TaskProfile, constraints: Constraints) -> float | None:
    """Estimated time of one call: prefill (compute bound) plus decoding (memory bound)."""
    if candidate.parameters_b is None:
        return None
    hardware = HARDWARE[constraints.device]
    weight_bytes = candidate.parameters_b * 1e9 * WEIGHT_BYTES[constraints.dtype]
    prefill = 2 * candidate.parameters_b * 1e9 * profile.context_tokens / hardware["flops"]
    decode = profile.output_tokens * weight_bytes / (hardware["bandwidth_gb_s"] * 1e9)
    return (prefill + decode) * 1000


def rank_candidates(
    profile: TaskProfile,
    constraints: Constraints | None = None,
    *,
    catalog: Sequence[Candidate] | None = None,
) -> list[Ranked]:
    """Kept candidates best first, then rejected ones, each with reasons."""
    constraints = constraints or Constraints()
    verdicts = [_judge(candidate, profile, constraints) for candidate in (catalog or load_catalog())]
    if profile.output_kind == "label":
        verdicts.extend(_local_label_models(profile))
    kept = sorted((v for v in verdicts if v.kept), key=lambda v: -v.score)
    rejected = [v for v in verdicts if not v.kept]
    return kept + rejected


def _judge(candidate: Candidate, profile: TaskProfile, constraints: Constraints) -> Ranked:
    verdict = Ranked(id=candidate.id, kind="lora", kept=True, unverified=candidate.unverified)
    if not candidate.available:
        return _reject(verdict, f"no loadable checkpoint: {candidate.notes}")
    if candidate.parameters_b is None:
        return _reject(verdict, "parameter count unknown")
    if constraints.allowed_licenses is not None and candidate.license not in constraints.allowed_licenses:
        return _reject(verdict, f"license {candidate.license!r} is not in the allowed {list(constraints.allowed_licenses)}")
    if candidate.context_length is not None and candidate.context_length < profile.context_tokens:
        return _reject(verdict, f"context {candidate.context_length} < the task's {profile.context_tokens} tokens")

    estimate = memory_estimate(candidate, dtype=constraints.dtype, context_tokens=profile.context_tokens)
    memory = estimate.total_gib if estimate and estimate.total_gib is not None else (estimate.weights_gib if estimate else None)
    verdict.memory_gib = memory
    if constraints.memory_budget_gib is not None and memory is not None and memory > constraints.memory_budget_gib:
        return _reject(verdict, f"needs ~{memory:.2f} GiB in {constraints.dtype} > budget {constraints.memory_budget_gib} GiB")
    latency = estimate_latency_ms(candidate, profile, constraints)
    verdict.latency_ms_estimate = round(latency, 1) if latency is not None else None
    if constraints.latency_budget_ms is not None and latency is not None and latency > constraints.latency_budget_ms:
        return _reject(verdict, f"estimated {latency:.0f} ms per call on {constraints.device} > budget {constraints.latency_budget_ms} ms")
    if profile.output_kind == "tool_call" and candidate.tool_calling == "none":
        return _reject(verdict, "no tool calling, and the task's answers are tool calls")

    verdict.score, verdict.reasons = _score(candidate, profile, memory, latency)
    if estimate and estimate.kv_cache_gib is None:
        verdict.reasons.append("KV cache unknown: memory counts weights only")
    return verdict


def _score(candidate: Candidate, profile: TaskProfile, memory: float | None, latency: float | None) -> tuple[float, list[str]]:
    size = candidate.parameters_b or 1.0
    reasons = [f"{size:g}B parameters, ~{memory:.2f} GiB, ~{latency:.0f} ms per call (estimate)"]
    if profile.output_kind in NARROW_KINDS:
        score = 10 - 2 * math.log2(1 + size)
        reasons.append("narrow output: smaller is better once fine-tuned")
    elif profile.output_kind == "tool_call":
        score = 8 + (3 if candidate.tool_calling == "native" else 0) - math.log2(1 + size)
        reasons.append(f"tool calling: {candidate.tool_calling}")
    else:
        score = 6 + math.log2(1 + size)
        reasons.append("free text: larger models write better")
    if candidate.license in ("cc-by-nc-4.0", "qwen-research"):
        score -= 1
        reasons.append(f"license {candidate.license} restricts commercial use")
    if candidate.unverified:
        reasons.append(f"unverified catalog fields: {', '.join(candidate.unverified)}")
    return round(score, 2), reasons


def _local_label_models(profile: TaskProfile) -> list[Ranked]:
    return [
        Ranked(
            id="ensemble", kind="ensemble", kept=True, score=12.5,
            reasons=["averages the compact models and the classical floor; kept only if it beats the floor on validation"],
            memory_gib=0.05, latency_ms_estimate=10.0,
        ),
        Ranked(
            id="compact", kind="compact", kept=True, score=12.0,
            reasons=["trained from scratch on this task's traces, no hub needed; constrained to the label set"],
            memory_gib=0.01, latency_ms_estimate=5.0,
        ),
        Ranked(
            id="classical", kind="classical", kept=True, score=11.0,
            reasons=["TF-IDF with logistic regression: the floor every candidate must beat"],
            memory_gib=0.1, latency_ms_estimate=2.0,
        ),
    ]


def _reject(verdict: Ranked, reason: str) -> Ranked:
    verdict.kept = False
    verdict.reasons.append(reason)
    return verdict

"""Serving figures: latency percentiles, tokens per second, memory, and cost per 1,000 calls."""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Assumed price of the CPU machine that serves an SLM: a 2 vCPU, 8 GiB cloud instance.
DEFAULT_SLM_HOURLY_USD = 0.10


@dataclass(frozen=True)
class Prices:
    """Teacher prices per million tokens and the hourly price of the SLM's machine (all USD)."""

    teacher_input_per_million: float = 0.15
    teacher_output_per_million: float = 0.60
    slm_hourly: float = DEFAULT_SLM_HOURLY_USD


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The `fraction` percentile by nearest rank, or None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


def latency_summary(latencies_ms: Sequence[float]) -> dict[str, float | None]:
    """p50, p95 and mean of latencies in milliseconds."""
    return {
        "p50_ms": percentile(latencies_ms, 0.50),
        "p95_ms": percentile(latencies_ms, 0.95),
        "mean_ms": sum(latencies_ms) / len(latencies_ms) if latencies_ms else None,
        "calls": len(latencies_ms),
    }


def tokens_per_second(output_tokens: Sequence[int], latencies_ms: Sequence[float]) -> float | None:
    """Output tokens over total generation time."""
    seconds = sum(latencies_ms) / 1000
    return sum(output_tokens) / seconds if seconds > 0 else None


def peak_memory_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if os.uname().sysname == "Darwin" else peak / 1024


def teacher_cost_per_1000(input_tokens: float | None, output_tokens: float | None, prices: Prices) -> float | None:
    """Teacher cost of 1,000 calls from mean tokens per call, or None when usage is unknown."""
    if input_tokens is None or output_tokens is None:
        return None
    per_call = (
        input_tokens * prices.teacher_input_per_million + output_tokens * prices.teacher_output_per_million
    ) / 1e6
    return per_call * 1000


def slm_cost_per_1000(mean_latency_ms: float | None, prices: Prices) -> float | None:
    """SLM cost of 1,000 sequential calls on the assumed machine."""
    if mean_latency_ms is None:
        return None
    return mean_latency_ms / 1000 * 1000 / 3600 * prices.slm_hourly

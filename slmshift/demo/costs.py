"""Cost and latency figures of the demo's table: percentiles and estimated cost per request.

Costs are estimates from token counts and list prices, never bills. The teacher's price is per
million input and output tokens (defaults: a mid-range hosted model). An SLM served on the CPU
is priced by the compute time it used, at an assumed price per core-hour of cloud CPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Assumed hosted-LLM list price, USD per million tokens (input, output).
DEFAULT_TEACHER_INPUT_USD_PER_MTOK = 2.50
DEFAULT_TEACHER_OUTPUT_USD_PER_MTOK = 10.00
# Assumed on-demand cloud CPU price, USD per core-hour, and the cores one SLM call occupies.
DEFAULT_CPU_USD_PER_CORE_HOUR = 0.05
SLM_CORES_PER_CALL = 1


@dataclass(frozen=True)
class Prices:
    """Prices behind the cost estimates."""

    teacher_input_usd_per_mtok: float = DEFAULT_TEACHER_INPUT_USD_PER_MTOK
    teacher_output_usd_per_mtok: float = DEFAULT_TEACHER_OUTPUT_USD_PER_MTOK
    cpu_usd_per_core_hour: float = DEFAULT_CPU_USD_PER_CORE_HOUR

    def teacher_call_usd(self, input_tokens: int | None, output_tokens: int | None) -> float:
        """Return the estimated price of one teacher call; unknown token counts count as 0."""
        return (
            (input_tokens or 0) * self.teacher_input_usd_per_mtok
            + (output_tokens or 0) * self.teacher_output_usd_per_mtok
        ) / 1_000_000

    def slm_call_usd(self, latency_ms: float | None) -> float:
        """Return the estimated compute price of one SLM call that took `latency_ms`."""
        hours = (latency_ms or 0.0) / 3_600_000
        return hours * SLM_CORES_PER_CALL * self.cpu_usd_per_core_hour


def percentile(values: Sequence[float], share: float) -> float | None:
    """Return the `share` percentile (0..1) of `values` by linear interpolation; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    position = share * (len(ordered) - 1)
    lower = math.floor(position)
    upper = math.ceil(position)
    if lower == upper:
        return float(ordered[lower])
    weight = position - lower
    return float(ordered[lower] * (1 - weight) + ordered[upper] * weight)

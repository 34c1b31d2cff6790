"""Replay held-out requests through the support agent and measure what it served.

A serving run sends each held-out request through a compiled graph, times it, and compares each
node's answer with the teacher's recorded answer for that request (the dataset's label or
calls). Which model answered each call comes from the graph's own model calls: for swapped
nodes, the decision records of `FallbackChatModel`; for the others, the teacher.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from slmshift.demo.costs import Prices, percentile
from slmshift.demo.prompts import RESPONDER_NODE, ROUTER_NODE, TOOL_NODE
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# Metadata keys written by FallbackChatModel on each decision record.
DECISION_KEY = "slmshift.decision"
SERVED_BY_KEY = "slmshift.served_by"
REASON_KEY = "slmshift.fallback_reason"


@dataclass(frozen=True)
class HeldOutRequest:
    """One held-out graph input and the teacher's answer expected at each node it visits."""

    state: dict[str, Any]
    expected: dict[str, Any]


@dataclass
class NodeFigures:
    """What one node served during a run."""

    calls: int = 0
    slm_calls: int = 0
    fallbacks: int = 0
    agreed: int = 0
    compared: int = 0
    cost_usd: float = 0.0
    fallback_reasons: Counter[str] = field(default_factory=Counter)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


@dataclass
class ServingRun:
    """Figures of one pass over the held-out requests."""

    name: str
    requests: int
    latencies_ms: list[float]
    nodes: dict[str, NodeFigures]

    @property
    def calls(self) -> int:
        return sum(figures.calls for figures in self.nodes.values())

    @property
    def slm_calls(self) -> int:
        return sum(figures.slm_calls for figures in self.nodes.values())

    @property
    def fallbacks(self) -> int:
        return sum(figures.fallbacks for figures in self.nodes.values())

    @property
    def slm_share(self) -> float:
        return self.slm_calls / self.calls if self.calls else 0.0

    @property
    def fallback_rate(self) -> float | None:
        attempted = self.slm_calls + self.fallbacks
        return self.fallbacks / attempted if attempted else None

    @property
    def cost_per_1000_requests_usd(self) -> float:
        total = sum(figures.cost_usd for figures in self.nodes.values())
        return total / self.requests * 1000 if self.requests else 0.0

    def latency_ms(self, share: float) -> float | None:
        return percentile(self.latencies_ms, share)

    def to_dict(self) -> dict[str, Any]:
        """Return the run's figures as JSON-ready values."""
        return {
            "name": self.name,
            "requests": self.requests,
            "calls": self.calls,
            "slm_calls": self.slm_calls,
            "fallbacks": self.fallbacks,
            "slm_share": self.slm_share,
            "fallback_rate": self.fallback_rate,
            "latency_p50_ms": self.latency_ms(0.5),
            "latency_p95_ms": self.latency_ms(0.95),
            "cost_per_1000_requests_usd": self.cost_per_1000_requests_usd,
            "nodes": {
                node: {
                    "calls": figures.calls,
                    "slm_calls": figures.slm_calls,
                    "fallbacks": figures.fallbacks,
                    "agreement": figures.agreement,
                    "compared": figures.compared,
                    "fallback_reasons": dict(figures.fallback_reasons),
                }
                for node, figures in sorted(self.nodes.items())
            },
        }


def serve_requests(
    graph: Any,
    requests: Sequence[HeldOutRequest],
    *,
    name: str,
    config: dict[str, Any] | None = None,
    advance: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], list[float]]:
    """Invoke `graph` on each request in turn; return the final states and latencies (ms)."""
    states = []
    latencies = []
    for request in requests:
        started = time.perf_counter()
        states.append(graph.invoke(request.state, config=config))
        latencies.append((time.perf_counter() - started) * 1000)
        if advance is not None:
            advance()
    logger.info("Served %d held-out requests (%s).", len(requests), name)
    return states, latencies


def measure_run(
    name: str,
    requests: Sequence[HeldOutRequest],
    states: Sequence[dict[str, Any]],
    latencies_ms: list[float],
    records: Sequence[CallRecord],
    *,
    prices: Prices,
    slm_models: frozenset[str] = frozenset(),
    answers_agree: Callable[[str, Any, Any], bool],
) -> ServingRun:
    """Count each node's calls by who served them, its agreement with the teacher, and cost.

    `records` are the model calls of the run: decision records of `FallbackChatModel` for
    swapped nodes and the capture handler's records for the rest. A record counts as an SLM call
    when its decision says the SLM served it, or its model is one of `slm_models`.
    """
    nodes: dict[str, NodeFigures] = defaultdict(NodeFigures)
    for record in records:
        _count_call(nodes[record.node or "?"], record, prices, slm_models)

    for request, state in zip(requests, states):
        for node, expected in request.expected.items():
            figures = nodes[node]
            figures.compared += 1
            if answers_agree(node, expected, served_answer(node, state)):
                figures.agreed += 1
    return ServingRun(name=name, requests=len(requests), latencies_ms=latencies_ms, nodes=dict(nodes))


def served_answer(node: str, state: dict[str, Any]) -> Any:
    """Return what `node` contributed to the final state of the support graph."""
    if node == ROUTER_NODE:
        return state.get("intent")
    if node == TOOL_NODE:
        return state.get("tool_calls")
    if node == RESPONDER_NODE:
        return state.get("reply")
    raise ValueError(f"Unknown support-agent node {node!r}.")


def _count_call(figures: NodeFigures, record: CallRecord, prices: Prices, slm_models: frozenset[str]) -> None:
    decision = record.metadata.get(DECISION_KEY)
    served_by_slm = record.metadata.get(SERVED_BY_KEY) == "slm" or (
        decision is None and record.model in slm_models
    )
    figures.calls += 1
    if served_by_slm:
        figures.slm_calls += 1
        figures.cost_usd += prices.slm_call_usd(record.latency_ms)
        return

    if decision == "fallback":
        # The SLM ran before the teacher: its compute is paid too (the latency covers both).
        figures.fallbacks += 1
        figures.fallback_reasons[str(record.metadata.get(REASON_KEY))] += 1
        figures.cost_usd += prices.slm_call_usd(record.latency_ms)
    figures.cost_usd += prices.teacher_call_usd(record.usage.input_tokens, record.usage.output_tokens)

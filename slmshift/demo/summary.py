"""The demo's closing tables: what moved to SLMs, how well it agrees, and what it costs."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from slmshift.demo.prompts import RESPONDER_NODE, ROUTER_NODE, TOOL_NODE

NODE_ORDER = (ROUTER_NODE, RESPONDER_NODE, TOOL_NODE)


def render_summary(console: Console, serve: dict[str, Any], plan: dict[str, Any], paths: dict[str, str]) -> None:
    """Print the before/after table, the per-node table and where the artifacts are."""
    console.print(_overall_table(serve["before"], serve["after"], serve["requests"]))
    console.print(_node_table(serve["after"], plan))
    for line in _reasons(serve["after"], plan):
        console.print(line, markup=False, highlight=False)
    for line in serve.get("notes", []):
        console.print(line, style="dim", markup=False, highlight=False)
    console.print()
    for name, path in paths.items():
        console.print(f"{name}: [bold]{path}[/bold]")


def _overall_table(before: dict[str, Any], after: dict[str, Any], requests: int) -> Table:
    table = Table(title=f"Support agent on {requests} held-out requests: before and after the swap")
    table.add_column("")
    table.add_column("before (teacher only)", justify="right")
    table.add_column("after (SLMs with fallback)", justify="right")
    table.add_row("model calls", str(before["calls"]), str(after["calls"]))
    table.add_row("share of model calls served by SLMs", _percent(before["slm_share"]), _percent(after["slm_share"]))
    table.add_row(
        "fallback rate (of SLM attempts)", "-", _percent(after["fallback_rate"]),
    )
    table.add_row(
        "latency per request p50 / p95",
        _latency(before["latency_p50_ms"], before["latency_p95_ms"]),
        _latency(after["latency_p50_ms"], after["latency_p95_ms"]),
    )
    table.add_row(
        "estimated cost per 1,000 requests",
        _usd(before["cost_per_1000_requests_usd"]),
        _usd(after["cost_per_1000_requests_usd"]),
    )
    return table


def _node_table(after: dict[str, Any], plan: dict[str, Any]) -> Table:
    table = Table(title="Per node, on the held-out requests")
    table.add_column("node")
    table.add_column("served by")
    table.add_column("calls", justify="right")
    table.add_column("on SLM", justify="right")
    table.add_column("agreement with teacher", justify="right")
    table.add_column("fallbacks", justify="right")
    nodes = after["nodes"]
    decisions = plan.get("decisions", {})
    for node in _ordered(nodes):
        figures = nodes[node]
        calls = figures["calls"]
        table.add_row(
            node,
            decisions.get(node, {}).get("served_by", "teacher LLM"),
            str(calls),
            _percent(figures["slm_calls"] / calls if calls else None),
            _percent(figures["agreement"]),
            _fallbacks(figures),
        )
    return table


def _reasons(after: dict[str, Any], plan: dict[str, Any]) -> list[str]:
    """Return one line per node: why it moved to an SLM or stayed on the teacher."""
    decisions = plan.get("decisions", {})
    lines = []
    for node in _ordered(after["nodes"]):
        decision = decisions.get(node)
        if decision is not None:
            verdict = "moved to an SLM" if decision.get("promoted") else "stays on the teacher"
            lines.append(f"{node} {verdict}: {decision['reason']}.")
        reasons = after["nodes"][node]["fallback_reasons"]
        if reasons:
            counts = ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items()))
            lines.append(f"{node} fallbacks by reason: {counts}.")
    return lines


def _ordered(nodes: dict[str, Any]) -> list[str]:
    return [node for node in NODE_ORDER if node in nodes] + sorted(set(nodes) - set(NODE_ORDER))


def _fallbacks(figures: dict[str, Any]) -> str:
    if not figures["fallbacks"]:
        return "0" if figures["slm_calls"] else "-"
    return str(figures["fallbacks"])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _latency(p50: float | None, p95: float | None) -> str:
    if p50 is None or p95 is None:
        return "-"
    return f"{p50:.1f} / {p95:.1f} ms"


def _usd(value: float | None) -> str:
    if value is None:
        return "-"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"

"""The analysis report: one self-contained HTML file with plots and tables.

Plotly draws the plots; its JavaScript is inlined once, so the file opens offline with no CDN.
Every number is escaped; task names come from user traffic and may contain markup.
"""

from __future__ import annotations

import html
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.clustering.tasks import SUITABLE_THRESHOLD, Task, TaskAnalysis

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
DAYS_PER_MONTH = 30
# Tasks shown in the savings plot, largest first.
SAVINGS_PLOT_TASKS = 15


@dataclass(frozen=True)
class Projection:
    """Scaling of observed traffic to a month: the traces cover `traffic_days` days."""

    traffic_days: float
    measured: bool

    @property
    def monthly_factor(self) -> float:
        return DAYS_PER_MONTH / self.traffic_days

    def describe(self) -> str:
        if self.measured:
            return f"the traces span {self.traffic_days:.1f} days, scaled to {DAYS_PER_MONTH} days"
        return (f"the traces span less than a day, so they are taken as {self.traffic_days:g} day(s) "
                f"of traffic and scaled to {DAYS_PER_MONTH} days (set --traffic-days to change this)")


def projection_for(analysis: TaskAnalysis, traffic_days: float | None = None) -> Projection:
    """Return the projection: `traffic_days` when given, else the traces' span of at least a day."""
    if traffic_days is not None:
        if traffic_days <= 0:
            raise ValueError(f"Invalid traffic_days {traffic_days!r}: use a positive number of days.")
        return Projection(traffic_days, measured=False)
    window = analysis.window_days or 0.0
    if window >= 1:
        return Projection(window, measured=True)
    return Projection(1.0, measured=False)


def monthly_savings(task: Task, projection: Projection) -> float:
    """Return the projected monthly saving of moving `task` to an SLM; 0 for unsuitable tasks."""
    if task.is_noise or task.suitability < SUITABLE_THRESHOLD:
        return 0.0
    return task.savings_usd * projection.monthly_factor


def render_report(
    analysis: TaskAnalysis,
    path: str | Path,
    *,
    curation: dict[str, Any] | None = None,
    projection: Projection | None = None,
    title: str = "slmshift analysis",
) -> Path:
    """Write the report for `analysis` to `path` (a file, or a folder to hold report.html)."""
    import plotly.offline

    from slmshift.report import figures

    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / REPORT_FILE
    projection = projection or projection_for(analysis)
    savings = {task.id: monthly_savings(task, projection) for task in analysis.tasks}

    plots = [
        ("Calls and spend per node", figures.node_bars(analysis)),
        ("Map of tasks", figures.task_map(analysis)),
        ("Suitability against volume", figures.suitability_volume(analysis)),
        ("Projected monthly savings", figures.savings_bars(analysis, savings, SAVINGS_PLOT_TASKS)),
    ]
    plot_html = "\n".join(
        f'<section><h2>{html.escape(name)}</h2>{figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})}</section>'
        for name, figure in plots
    )
    body = "\n".join([
        f"<h1>{html.escape(title)}</h1>",
        _summary_html(analysis, savings, projection),
        plot_html,
        _tasks_table(analysis, savings),
        _curation_html(curation) if curation else "",
    ])
    document = _PAGE.format(
        title=html.escape(title),
        style=_STYLE,
        plotly=plotly.offline.get_plotlyjs(),
        body=body,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


def _summary_html(analysis: TaskAnalysis, savings: dict[str, float], projection: Projection) -> str:
    tasks = [task for task in analysis.tasks if not task.is_noise]
    suitable = [task for task in tasks if task.suitability >= SUITABLE_THRESHOLD]
    total_cost = sum(task.cost_usd for task in analysis.tasks)
    suitable_calls = sum(task.call_count for task in suitable)
    cards = [
        ("calls analysed", f"{analysis.records_analyzed:,}", "calls"),
        ("tasks found", f"{len(tasks)}", "tasks"),
        ("tasks an SLM could take over", f"{len(suitable)}", "suitable-tasks"),
        ("calls in those tasks", f"{suitable_calls:,}", "suitable-calls"),
        ("LLM spend in the traces", f"${total_cost:,.4f}", "spend"),
        ("projected monthly savings", f"${sum(savings.values()):,.2f}", "monthly-savings"),
    ]
    items = "".join(
        f'<div class="card"><div class="value" id="{key}">{html.escape(value)}</div><div class="label">{html.escape(label)}</div></div>'
        for label, value, key in cards
    )
    note = (f"<p class='note'>Embeddings: {html.escape(analysis.embedder)}. Savings: LLM cost minus "
            f"self-served SLM cost for tasks with suitability at least {SUITABLE_THRESHOLD}; "
            f"{html.escape(projection.describe())}. Costs are estimates from the price table.</p>")
    return f'<div class="cards">{items}</div>{note}'


def _tasks_table(analysis: TaskAnalysis, savings: dict[str, float]) -> str:
    rows = []
    ordered = sorted(analysis.tasks, key=lambda task: (-task.suitability, -task.call_count))
    for task in ordered:
        diversity = _diversity_text(task)
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                task.id, task.name, task.output_kind, f"{task.call_count:,}",
                f"{task.input_tokens + task.output_tokens:,}", f"${task.cost_usd:,.4f}", diversity,
                f"{task.template_share:.0%}", f"{task.suitability:.2f}", "; ".join(task.reasons),
                f"${savings[task.id]:,.2f}",
            )) + "</tr>"
        )
    header = "".join(f"<th>{name}</th>" for name in (
        "task", "name", "output", "calls", "tokens", "cost", "output diversity", "template",
        "suitability", "reasons", "monthly savings"))
    return f"<section><h2>Tasks</h2><table><thead><tr>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"


def _diversity_text(task: Task) -> str:
    diversity = task.output_diversity
    if "labels" in diversity:
        return f"{len(diversity['labels'])} labels"
    if "tool_names" in diversity:
        return f"{len(diversity['tool_names'])} tools"
    if "json_key_sets" in diversity:
        return f"{diversity['json_key_sets']} key sets"
    return f"{diversity.get('distinct_share', 0):.0%} distinct"


def _curation_html(curation: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(item['name'])}</td><td>{item['removed']}</td><td>{html.escape(item['reason'])}</td></tr>"
        for item in curation.get("filters", [])
    )
    return (
        "<section><h2>Curation</h2>"
        f"<p>{curation.get('kept_records', 0):,} of {curation.get('input_records', 0):,} records kept; "
        f"{curation.get('redacted_values', 0):,} values redacted in {curation.get('redacted_records', 0):,} records.</p>"
        f"<table><thead><tr><th>filter</th><th>removed</th><th>why</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


def node_totals(analysis: TaskAnalysis) -> dict[str, dict[str, float]]:
    """Return calls and cost per node."""
    totals: dict[str, dict[str, float]] = defaultdict(lambda: {"calls": 0, "cost": 0.0})
    for task in analysis.tasks:
        totals[task.node]["calls"] += task.call_count
        totals[task.node]["cost"] += task.cost_usd
    return dict(totals)


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{style}</style>
<script>{plotly}</script>
</head><body>
{body}
<footer>Generated by slmshift on """ + datetime.now(timezone.utc).strftime("%Y-%m-%d") + """.</footer>
</body></html>
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.8rem; } h2 { font-size: 1.3rem; margin-top: 2rem; }
.cards { display: flex; flex-wrap: wrap; gap: 1rem; }
.card { background: #f3f6fb; border-radius: 8px; padding: 1rem 1.4rem; min-width: 150px; }
.card .value { font-size: 1.6rem; font-weight: 600; color: #1f4e9c; }
.card .label { font-size: .85rem; color: #555; }
.note { color: #555; font-size: .9rem; }
table { border-collapse: collapse; font-size: .85rem; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f6fb; }
footer { margin-top: 2rem; color: #888; font-size: .8rem; }
"""

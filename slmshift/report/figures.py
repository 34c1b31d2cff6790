"""Plotly figures of the analysis report."""

from __future__ import annotations

from typing import Any

from slmshift.clustering.tasks import TaskAnalysis

_LAYOUT = {"height": 420, "margin": {"l": 60, "r": 20, "t": 30, "b": 60}, "template": "plotly_white"}


def node_bars(analysis: TaskAnalysis) -> Any:
    """Bars of calls and estimated spend per node, side by side on two axes."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from slmshift.report.html import node_totals

    totals = node_totals(analysis)
    nodes = sorted(totals)
    figure = make_subplots(rows=1, cols=2, subplot_titles=("calls", "estimated spend (USD)"))
    figure.add_trace(go.Bar(x=nodes, y=[totals[n]["calls"] for n in nodes], name="calls", marker_color="#1f4e9c"), 1, 1)
    figure.add_trace(go.Bar(x=nodes, y=[totals[n]["cost"] for n in nodes], name="spend", marker_color="#e07b39"), 1, 2)
    figure.update_layout(showlegend=False, **_LAYOUT)
    return figure


def task_map(analysis: TaskAnalysis) -> Any:
    """Tasks on a 2-D map (PCA of task centroids), sized by calls and coloured by suitability."""
    import plotly.graph_objects as go

    tasks = analysis.tasks
    figure = go.Figure(
        go.Scatter(
            x=[task.map_xy[0] for task in tasks],
            y=[task.map_xy[1] for task in tasks],
            mode="markers+text",
            text=[task.id for task in tasks],
            textposition="top center",
            hovertext=[f"{task.id}: {task.name}<br>{task.call_count} calls" for task in tasks],
            hoverinfo="text",
            marker={
                "size": [8 + 40 * (task.call_count / max(t.call_count for t in tasks)) ** 0.5 for task in tasks],
                "color": [task.suitability for task in tasks],
                "colorscale": "Viridis",
                "cmin": 0,
                "cmax": 1,
                "colorbar": {"title": "suitability"},
                "line": {"width": 1, "color": "#333"},
            },
        )
    )
    figure.update_layout(xaxis_title="component 1", yaxis_title="component 2", **_LAYOUT)
    return figure


def suitability_volume(analysis: TaskAnalysis) -> Any:
    """Suitability against call volume, one colour per node."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for node in sorted({task.node for task in analysis.tasks}):
        tasks = analysis.tasks_of(node)
        figure.add_trace(
            go.Scatter(
                x=[task.call_count for task in tasks],
                y=[task.suitability for task in tasks],
                mode="markers",
                name=node,
                marker={"size": 12},
                hovertext=[f"{task.id}: {task.name}" for task in tasks],
            )
        )
    figure.update_layout(xaxis={"title": "calls", "type": "log"}, yaxis={"title": "SLM suitability", "range": [0, 1.05]}, **_LAYOUT)
    return figure


def savings_bars(analysis: TaskAnalysis, savings: dict[str, float], limit: int) -> Any:
    """Horizontal bars of projected monthly savings, largest tasks first."""
    import plotly.graph_objects as go

    ranked = sorted(analysis.tasks, key=lambda task: -savings[task.id])[:limit]
    ranked = [task for task in ranked if savings[task.id] > 0] or ranked
    figure = go.Figure(
        go.Bar(
            x=[savings[task.id] for task in ranked][::-1],
            y=[f"{task.id} {task.name[:30]}" for task in ranked][::-1],
            orientation="h",
            marker_color="#2a9d55",
        )
    )
    figure.update_layout(xaxis_title="USD per month (estimate)", **_LAYOUT)
    return figure

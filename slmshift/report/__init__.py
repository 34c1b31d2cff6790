"""The HTML analysis report with plots, and its terminal summary."""

from slmshift.report.html import Projection, monthly_savings, projection_for, render_report

__all__ = ["Projection", "monthly_savings", "projection_for", "render_report"]

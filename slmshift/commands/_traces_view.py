"""Rich tables and panels for `slmshift traces`.

Record content is always wrapped in `rich.text.Text`, never passed as markup, so that brackets
in a prompt or a response print as they are.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from slmshift.records import CallRecord, Message
from slmshift.store.base import NodeSummary

logger = logging.getLogger(__name__)

UNKNOWN = "?"
# Minimum characters of a record id shown in `list`; `slmshift traces show` accepts such a prefix.
ID_WIDTH = 8
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_FORMAT_SAMPLE = "2026-01-31 12:00:00"
NAME_MIN_WIDTH = 8
MIN_CONSOLE_WIDTH = 120


def stdout_console() -> Console:
    """Return a console on the current `sys.stdout`, at least `MIN_CONSOLE_WIDTH` wide.

    Below that width rich squeezes the name columns of the tables to nothing; wider lines
    wrap in a narrow terminal but keep every value.
    """
    console = Console(highlight=False, soft_wrap=False)
    if console.width < MIN_CONSOLE_WIDTH:
        console = Console(highlight=False, soft_wrap=False, width=MIN_CONSOLE_WIDTH)
    return console


def records_table(records: Sequence[CallRecord]) -> Table:
    """Return one row per call: time, agent, node, model, kind, tokens, latency and status."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("id", no_wrap=True, style="dim", min_width=ID_WIDTH)
    table.add_column("time (UTC)", no_wrap=True, min_width=len(TIME_FORMAT_SAMPLE))
    for name in ("agent", "node", "model"):
        table.add_column(name, overflow="fold", min_width=NAME_MIN_WIDTH)
    table.add_column("kind", no_wrap=True, min_width=len("tool_call"))
    table.add_column("tokens in/out", justify="right", no_wrap=True)
    table.add_column("latency ms", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    width = distinct_prefix_width([record.id for record in records])
    for record in records:
        tokens = f"{_count(record.usage.input_tokens)}/{_count(record.usage.output_tokens)}"
        table.add_row(
            Text(record.id[:width]),
            Text(record.started_at.strftime(TIME_FORMAT)),
            Text(record.agent or "-"),
            Text(record.node or "-"),
            Text(record.model or "-"),
            Text(record.output_kind or "-"),
            Text(tokens),
            Text(_latency(record.latency_ms)),
            _status(record),
        )
    return table


def distinct_prefix_width(ids: Sequence[str], *, minimum: int = ID_WIDTH) -> int:
    """Return the shortest prefix length, at least `minimum`, that distinguishes the given ids.

    Time-ordered ids (LangChain run ids) often share their first 8 or more characters within
    one run, so the shown prefix grows until no two rows show the same text. Ids that are
    prefixes of one another are shown whole.
    NOTE: the prefixes are unique among the rows shown, not in the whole store, so a call left
    out by the filters may still share one; `show` then lists the matching ids.
    """
    ordered = sorted(set(ids))
    width = minimum
    for left, right in itertools.pairwise(ordered):
        width = max(width, _common_prefix_length(left, right) + 1)
    return width


def _common_prefix_length(left: str, right: str) -> int:
    length = 0
    for left_char, right_char in zip(left, right):
        if left_char != right_char:
            break
        length += 1
    return length


def nodes_table(summaries: Sequence[NodeSummary]) -> Table:
    """Return one row per (agent, node, model) group."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("agent", "node", "model"):
        table.add_column(name, overflow="fold", min_width=NAME_MIN_WIDTH)
    for name in ("calls", "errors", "tokens in", "tokens out", "mean latency ms"):
        table.add_column(name, justify="right", no_wrap=True)
    for summary in summaries:
        partial = summary.calls_without_usage > 0
        table.add_row(
            Text(summary.agent or "-"),
            Text(summary.node or "-"),
            Text(summary.model or "-"),
            Text(str(summary.calls)),
            Text(str(summary.errors), style="red" if summary.errors else ""),
            Text(_token_sum(summary.input_tokens, partial)),
            Text(_token_sum(summary.output_tokens, partial)),
            Text(_latency(summary.mean_latency_ms)),
        )
    return table


def print_record(console: Console, record: CallRecord) -> None:
    """Print a record in full: its fields, the messages sent, the tools offered and the response."""
    console.print(_header(record))
    for index, message in enumerate(record.messages, start=1):
        console.print(_message_panel(message, f"message {index}"))
    if record.tools:
        console.print(_tools_panel(record))
    if record.response is not None:
        console.print(_message_panel(record.response, "response", style="green"))
    if record.error is not None:
        console.print(Panel(Text(record.error), title="error", title_align="left", border_style="red"))
    if record.metadata:
        console.print(Panel(Text(_json(record.metadata)), title="metadata", title_align="left"))


def _header(record: CallRecord) -> Table:
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold", no_wrap=True)
    fields.add_column(overflow="fold")
    rows: list[tuple[str, Any]] = [
        ("id", record.id),
        ("trace", record.trace_id),
        ("parent", record.parent_id),
        ("agent", record.agent),
        ("node", record.node),
        ("model", record.model),
        ("provider", record.provider),
        ("kind", record.output_kind),
        ("started (UTC)", record.started_at.isoformat()),
        ("latency ms", _latency(record.latency_ms)),
        ("tokens in/out", f"{_count(record.usage.input_tokens)} / {_count(record.usage.output_tokens)}"),
        ("finish reason", record.finish_reason),
        ("step", record.step),
        ("tool choice", None if record.tool_choice is None else _json(record.tool_choice)),
        ("response format", None if record.response_format is None else _json(record.response_format)),
    ]
    for name, value in rows:
        if value is not None:
            fields.add_row(name, Text(str(value)))
    fields.add_row("status", _status(record))
    return fields


def _message_panel(message: Message, title: str, *, style: str = "") -> Panel:
    parts: list[Any] = []
    if message.content is not None:
        content = message.content if isinstance(message.content, str) else _json(message.content)
        parts.append(Text(content))
    for call in message.tool_calls:
        arguments = _json(call.arguments) if call.arguments or call.arguments_raw is None else call.arguments_raw
        label = f"tool call {call.name}" + (f" (id {call.id})" if call.id else "")
        parts.append(Text(label, style="bold cyan"))
        parts.append(Text(arguments))
    if not parts:
        parts.append(Text("(empty)", style="dim"))
    suffix = f" for call {message.tool_call_id}" if message.tool_call_id else ""
    name = f" {message.name}" if message.name else ""
    return Panel(Group(*parts), title=f"{title}: {message.role}{name}{suffix}", title_align="left", border_style=style)


def _tools_panel(record: CallRecord) -> Panel:
    lines = Text()
    for tool in record.tools:
        lines.append(tool.name, style="bold")
        parameters = ", ".join(tool.parameters.get("properties", {}) or {})
        lines.append(f"({parameters})")
        if tool.description:
            lines.append(f": {tool.description}")
        lines.append("\n")
    lines.rstrip()
    return Panel(lines, title=f"tools offered ({len(record.tools)})", title_align="left")


def _status(record: CallRecord) -> Text:
    if record.error is not None:
        return Text("error", style="red")
    if record.response is None:
        return Text("no response", style="yellow")
    return Text("ok", style="green")


def _count(value: int | None) -> str:
    return UNKNOWN if value is None else f"{value:,}"


def _token_sum(value: int | None, partial: bool) -> str:
    if value is None:
        return UNKNOWN
    return f"{value:,}+{UNKNOWN}" if partial else f"{value:,}"


def _latency(value: float | None) -> str:
    return UNKNOWN if value is None else f"{value:,.0f}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, default=str)

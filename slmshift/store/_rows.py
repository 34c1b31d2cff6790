"""Conversion between call records and the rows of the SQL trace stores.

A row keeps the fields that queries filter and group on in plain columns. Everything a user or
a model wrote (messages, response, tools, error text, metadata) goes into one JSON `payload`
column, so a store can encrypt the payload alone and still filter on the columns.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# Plain columns, in the order of `record_to_row`; the last one is the JSON payload.
COLUMNS: tuple[str, ...] = (
    "id",
    "trace_id",
    "parent_id",
    "agent",
    "node",
    "model",
    "provider",
    "output_kind",
    "started_at",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "is_error",
    "finish_reason",
    "step",
    "schema_version",
    "payload",
)

# Record fields that hold user or model content; they go into the payload column
# (`record_to_row` builds the payload from them field by field, for speed).
PAYLOAD_FIELDS: tuple[str, ...] = (
    "messages",
    "tools",
    "response",
    "error",
    "tool_choice",
    "response_format",
    "metadata",
)


SQLITE_MIN_INTEGER = -(2**63)
SQLITE_MAX_INTEGER = 2**63 - 1

# One encoder for every row: `json.dumps` with options builds a new encoder on each call.
# Without the circular check, a self-referencing metadata dict raises RecursionError instead.
_PAYLOAD_ENCODER = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


def format_time(value: datetime) -> str:
    """Format a time as fixed-width UTC ISO 8601 text, so that text order is time order."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def record_to_row(record: CallRecord) -> tuple[Any, ...]:
    """Return the column values of `record`, in `COLUMNS` order.

    Raises:
        TypeError, ValueError, RecursionError: a value in the record cannot be written as JSON,
            its text is not valid Unicode (a lone surrogate), or a count exceeds 64 bits; SQLite
            would reject the last two.
    """
    payload = {
        "messages": [message.to_dict() for message in record.messages],
        "tools": [tool.to_dict() for tool in record.tools],
        "response": record.response.to_dict() if record.response is not None else None,
        "error": record.error,
        "tool_choice": record.tool_choice,
        "response_format": record.response_format,
        "metadata": record.metadata,
    }
    row = (
        record.id,
        record.trace_id,
        record.parent_id,
        record.agent,
        record.node,
        record.model,
        record.provider,
        record.output_kind,
        format_time(record.started_at),
        record.latency_ms,
        record.usage.input_tokens,
        record.usage.output_tokens,
        1 if record.error is not None else 0,
        record.finish_reason,
        record.step,
        record.schema_version,
        _PAYLOAD_ENCODER.encode(payload),
    )
    # Checked here, so a bad record is rejected alone instead of failing every retry of its batch.
    for value in row:
        if isinstance(value, str):
            value.encode("utf-8")
        elif isinstance(value, int) and not SQLITE_MIN_INTEGER <= value <= SQLITE_MAX_INTEGER:
            raise ValueError(f"Integer {value} does not fit a 64-bit SQLite column.")
    return row


def row_to_record(row: Sequence[Any] | Mapping[str, Any]) -> CallRecord:
    """Rebuild a record from a row with the `COLUMNS` values, by position or by name.

    Raises:
        RecordError: the row does not hold a valid record.
        json.JSONDecodeError: the payload is not JSON.
    """
    values = row if isinstance(row, Mapping) else dict(zip(COLUMNS, row, strict=True))
    data: dict[str, Any] = {
        name: values[name]
        for name in COLUMNS
        if name not in ("payload", "is_error", "input_tokens", "output_tokens")
    }
    data["usage"] = {"input_tokens": values["input_tokens"], "output_tokens": values["output_tokens"]}
    data.update(json.loads(values["payload"]))
    return CallRecord.from_dict(data)

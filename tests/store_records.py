"""Realistic call records for store tests and the load benchmark."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from slmshift.records import CallRecord, Message, ToolCall, ToolDefinition, Usage

PLANTED_SECRET = "card 4111-1111-1111-1111 belongs to Ada Lovelace"
BASE_TIME = datetime(2026, 1, 1, tzinfo=timezone.utc)

LOOKUP_TOOL = ToolDefinition(
    name="lookup_order",
    description="Find an order by its number.",
    parameters={"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
)


def make_record(index: int, *, agent: str = "support-bot", trace_id: str | None = None) -> CallRecord:
    """Record `index`: alternates a label node and a tool-calling node, with a planted secret."""
    started_at = BASE_TIME + timedelta(milliseconds=index)
    question = f"Ticket {index}: where is order {index:06d}? My {PLANTED_SECRET}."
    if index % 2 == 0:
        return CallRecord(
            id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{agent}/{index}")),
            trace_id=trace_id or f"run-{index // 2}",
            agent=agent,
            node="classify",
            model="gpt-4o-mini",
            provider="openai",
            messages=(Message("system", "Label the ticket: billing, shipping or other."),
                      Message("user", question)),
            response=Message("assistant", "shipping"),
            usage=Usage(input_tokens=42, output_tokens=1),
            latency_ms=310.5,
            started_at=started_at,
            metadata={"thread_id": f"t{index}", "customer": PLANTED_SECRET},
        )
    return CallRecord(
        id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{agent}/{index}")),
        trace_id=trace_id or f"run-{index // 2}",
        agent=agent,
        node="lookup",
        model="gpt-4o",
        provider="openai",
        messages=(Message("user", question),),
        tools=(LOOKUP_TOOL,),
        response=Message("assistant", None, tool_calls=(ToolCall("lookup_order", {"order": f"{index:06d}"}, id="c1"),)),
        usage=Usage(input_tokens=80, output_tokens=12),
        latency_ms=820.0,
        started_at=started_at,
    )

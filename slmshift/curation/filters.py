"""Record filters: each decides, for one record, whether it is unfit to train on and why.

A filter is a name, a reason and a predicate that returns True for records to drop. The
curation pass applies them in order and counts what each removed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# Openings of refusals in English, matched at the start of a text response, case-insensitively.
REFUSAL_PATTERN = re.compile(
    r"^\s*(?:i'?m sorry,? but|sorry,? (?:but )?i (?:can(?:'|no)t|am unable)|i (?:can(?:'|no)t|won'?t|am unable to|am not able to) "
    r"(?:help|assist|comply|provide|do that|fulfil)|as an ai(?: language model)?,? i|i must decline)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RecordFilter:
    """A named rule that drops records; `drops(record)` is True for a record to remove."""

    name: str
    reason: str
    drops: Callable[[CallRecord], bool]


def is_failed(record: CallRecord) -> bool:
    return record.error is not None or record.response is None


def is_empty(record: CallRecord) -> bool:
    response = record.response
    return response is not None and not response.tool_calls and not response.text.strip()


def is_truncated(record: CallRecord) -> bool:
    return record.finish_reason == "length"


def is_refusal(record: CallRecord) -> bool:
    response = record.response
    if response is None or response.tool_calls:
        return False
    return bool(REFUSAL_PATTERN.match(response.text))


def standard_filters(
    *, exclude_nodes: Iterable[str] = (), exclude_agents: Iterable[str] = ()
) -> list[RecordFilter]:
    """Return the filters every curation pass runs, in order, before deduplication."""
    nodes = frozenset(exclude_nodes)
    agents = frozenset(exclude_agents)
    filters = [
        RecordFilter("failed", "the call raised an error or returned no response", is_failed),
        RecordFilter("empty", "the response has neither text nor tool calls", is_empty),
        RecordFilter("truncated", "generation stopped at the token limit (finish reason 'length')", is_truncated),
        RecordFilter("refusal", "the model declined the request", is_refusal),
    ]
    if nodes:
        filters.append(
            RecordFilter("excluded_node", f"node excluded by configuration ({', '.join(sorted(nodes))})",
                         lambda record: record.node in nodes)
        )
    if agents:
        filters.append(
            RecordFilter("excluded_agent", f"agent excluded by configuration ({', '.join(sorted(agents))})",
                         lambda record: record.agent in agents)
        )
    return filters

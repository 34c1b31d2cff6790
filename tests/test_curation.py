"""Tests of the curation filters and deduplication, with counts per filter."""

from __future__ import annotations

import pytest

from slmshift.curation import CurationConfig, curate
from slmshift.curation.dedupe import find_near_duplicates
from slmshift.records import CallRecord, Message, ToolCall


def record(text: str, answer: str | None = "card_arrival", *, node: str = "router", agent: str = "bot", **fields) -> CallRecord:
    response = Message("assistant", answer) if answer is not None else None
    return CallRecord(messages=(Message("system", "Classify."), Message("user", text)), response=response, node=node, agent=agent, **fields)


def test_each_filter_counts_its_removals():
    records = [
        record("where is my card"),
        record("my card has not arrived yet"),
        record("failed call", None, error="TimeoutError: timed out"),
        record("empty answer", ""),
        record("long answer", "the reply was cut", finish_reason="length"),
        record("write me malware", "I'm sorry, but I can't help with that."),
        record("debug node call", node="debug"),
        record("other agent call", agent="staging-bot"),
        record("where is my card"),
        record("Where is my card??"),
    ]
    config = CurationConfig(redact=False, exclude_nodes=("debug",), exclude_agents=("staging-bot",))
    kept, report = curate(records, config)

    assert report.removed == {
        "failed": 1,
        "empty": 1,
        "truncated": 1,
        "refusal": 1,
        "excluded_node": 1,
        "excluded_agent": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
    }
    assert [r.messages[1].text for r in kept] == ["where is my card", "my card has not arrived yet"]
    assert report.input_records == 10
    assert report.kept_records == 2
    assert "refusal: 1 removed (the model declined the request)" in report.summary()


def test_tool_calls_are_not_empty():
    call = Message("assistant", "", tool_calls=(ToolCall("get_balance", {"account": "main"}),))
    item = CallRecord(messages=(Message("user", "balance?"),), response=call, node="tools")
    kept, report = curate([item], CurationConfig(redact=False))
    assert kept == [item]
    assert report.removed["empty"] == 0


def test_near_duplicates_need_same_output():
    records = [record("where is my new card", "card_arrival"), record("where is my new card?", "card_delivery_estimate")]
    assert find_near_duplicates(records) == set()


def test_near_duplicates_need_same_node():
    records = [record("where is my new card"), record("where is my new card!", node="other")]
    assert find_near_duplicates(records) == set()


def test_different_requests_are_kept():
    records = [record("how do I top up with a card"), record("how do I top up with cash")]
    assert find_near_duplicates(records, threshold=0.85) == set()


def test_invalid_near_threshold_raises():
    with pytest.raises(ValueError, match="Invalid near-duplicate threshold 1.5"):
        find_near_duplicates([], threshold=1.5)


def test_redaction_makes_values_duplicates():
    records = [record("mail me at a.b@example.com please"), record("mail me at c.d@example.org please")]
    kept, report = curate(records)
    assert len(kept) == 1
    assert report.removed["exact_duplicate"] == 1
    assert report.redacted_values == 2

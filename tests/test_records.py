"""Call records: JSON round trip, output kinds, the OpenAI fine-tuning shape and input errors."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from slmshift.records import CallRecord, Message, RecordError, ToolCall, ToolDefinition, Usage

WEATHER_TOOL = ToolDefinition(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def full_record() -> CallRecord:
    return CallRecord(
        id="rec-1",
        trace_id="trace-1",
        parent_id="node-run-1",
        agent="support-bot",
        node="router/classify",
        model="gpt-4o-mini",
        provider="openai",
        messages=(
            Message("system", "Réponds en français. 回答用中文。"),
            Message("user", [{"type": "text", "text": "Wetter in Köln? 🌦️"}]),
            Message(
                "assistant",
                None,
                tool_calls=(ToolCall("get_weather", {"city": "Köln"}, id="call_1"),),
            ),
            Message("tool", '{"temp_c": 7}', tool_call_id="call_1", name="get_weather"),
        ),
        tools=(WEATHER_TOOL,),
        response=Message("assistant", "Es sind 7 °C in Köln 🌧️."),
        usage=Usage(input_tokens=120, output_tokens=None),
        latency_ms=812.25,
        started_at=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=timezone.utc),
        finish_reason="stop",
        tool_choice="auto",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
        step=3,
        metadata={"thread_id": "t-9", "tags": ["a", "ü"], "nested": {"n": 1.5}},
    )


def test_json_round_trip_is_exact() -> None:
    record = full_record()
    text = record.to_json()

    restored = CallRecord.from_json(text)

    assert restored == record
    assert restored.to_json() == text


def test_json_keeps_non_ascii_unescaped() -> None:
    text = full_record().to_json()

    assert "Köln 🌧️" in text
    assert "回答用中文" in text
    assert "\\u" not in text


def test_started_at_is_kept_in_utc() -> None:
    local = datetime(2026, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))

    record = CallRecord(messages=(Message("user", "hi"),), started_at=local)

    assert record.started_at == local
    assert record.started_at.utcoffset() == timedelta(0)
    assert record.to_dict()["started_at"] == "2026-01-31T12:00:00+00:00"


def test_unknown_usage_stays_none() -> None:
    record = CallRecord(messages=(Message("user", "hi"),), response=Message("assistant", "yes"))

    restored = CallRecord.from_json(record.to_json())

    assert restored.usage.input_tokens is None
    assert restored.usage.output_tokens is None
    assert restored.usage.total_tokens is None
    assert CallRecord.from_dict({"messages": [], "usage": {"input_tokens": 5}}).usage.output_tokens is None


def test_tool_call_only_response_is_tool_call() -> None:
    response = Message("assistant", None, tool_calls=(ToolCall("get_weather", {"city": "Oslo"}),))

    record = CallRecord(messages=(Message("user", "Oslo?"),), response=response)

    assert record.output_kind == "tool_call"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        ('{"intent": "refund"}', "json"),
        ("card_arrival", "label"),
        ("Your card should arrive within five days.", "text"),
        ('{"intent": "refund"', "text"),
    ],
)
def test_output_kind_is_inferred_from_text(content: str, kind: str) -> None:
    record = CallRecord(messages=(Message("user", "q"),), response=Message("assistant", content))

    assert record.output_kind == kind


def test_openai_finetune_export_shape() -> None:
    record = full_record().replace(
        response=Message(
            "assistant",
            None,
            tool_calls=(
                ToolCall("get_weather", {"city": "Zürich"}, id="call_2"),
                ToolCall("get_weather", {}, arguments_raw="{city: Bern"),
            ),
        )
    )

    example = record.to_openai_finetune()

    assert set(example) == {"messages", "tools"}
    assert example["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER_TOOL.parameters,
            },
        }
    ]
    messages = example["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant"]
    assert messages[3] == {
        "role": "tool",
        "content": '{"temp_c": 7}',
        "tool_call_id": "call_1",
        "name": "get_weather",
    }
    history_call = messages[2]["tool_calls"][0]
    assert history_call == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Köln"}'},
    }
    final_calls = messages[4]["tool_calls"]
    assert isinstance(final_calls[0]["function"]["arguments"], str)
    assert json.loads(final_calls[0]["function"]["arguments"]) == {"city": "Zürich"}
    assert final_calls[1]["function"]["arguments"] == "{city: Bern"
    assert final_calls[1]["id"] == "call_1"
    json.dumps(example)


def test_openai_tool_arguments_text_is_parsed() -> None:
    call = ToolCall.from_dict({"name": "get_weather", "arguments": '{"city": "Lyon"}', "id": "c"})
    broken = ToolCall.from_dict({"name": "get_weather", "arguments": "{city"})

    assert call.arguments == {"city": "Lyon"}
    assert call.arguments_raw is None
    assert broken.arguments == {}
    assert broken.arguments_raw == "{city"


def test_record_without_id_gets_a_stable_id() -> None:
    data = {"messages": [{"role": "user", "content": "hi"}], "started_at": "2026-01-01T00:00:00+00:00"}

    first = CallRecord.from_dict(data)
    second = CallRecord.from_dict(dict(data))
    other = CallRecord.from_dict({**data, "agent": "other"})

    assert first.id == second.id
    assert first.id != other.id


def test_finetune_export_without_response_raises() -> None:
    record = CallRecord(messages=(Message("user", "hi"),), error="rate limited")

    with pytest.raises(RecordError, match="has no response"):
        record.to_openai_finetune()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1, 2], "must be a JSON object"),
        ({"agent": "a"}, "missing the required field 'messages'"),
        ({"messages": "hello"}, "'messages' must be a list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "Invalid message role 'robot'"),
        ({"messages": [], "output_kind": "poem"}, "Invalid output_kind 'poem'"),
        ({"messages": [], "schema_version": 99}, "newer than this slmshift understands"),
        ({"messages": [], "schema_version": "1"}, "Invalid record schema_version '1'"),
        ({"messages": [], "started_at": "yesterday"}, "Invalid started_at 'yesterday'"),
        ({"messages": [], "agent": 7}, "'agent' must be text or null"),
        ({"messages": [], "latency_ms": "fast"}, "'latency_ms' must be a number"),
        ({"messages": [], "usage": {"input_tokens": -1}}, "non-negative integer"),
        ({"messages": [], "usage": {"output_tokens": "12"}}, "non-negative integer"),
        ({"messages": [], "usage": [3]}, "Usage must be a JSON object"),
        (
            {"messages": [{"role": "assistant", "tool_calls": [{"name": "f", "arguments": [1]}]}]},
            "arguments of type list",
        ),
    ],
)
def test_invalid_record_data_raises(data: object, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        CallRecord.from_dict(data)  # type: ignore[arg-type]


def test_naive_started_at_raises() -> None:
    with pytest.raises(RecordError, match="has no timezone"):
        CallRecord(messages=(), started_at=datetime(2026, 1, 1))


def test_invalid_json_text_raises() -> None:
    with pytest.raises(RecordError, match="Invalid JSON for a call record"):
        CallRecord.from_json("{not json")

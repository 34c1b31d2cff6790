"""Tests of the replay chat model that stands in for a hosted LLM, which cannot be reached here."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.tools import tool

from slmshift.demo.replay import ReplayChatModel, ReplayMissError, estimate_tokens


@tool
def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return "sunny"


def test_replay_returns_recorded_label():
    model = ReplayChatModel(answers={"where is my card": "card_arrival"})
    reply = model.invoke([SystemMessage("classify"), HumanMessage("  where is my card ")])
    assert reply.text == "card_arrival"
    assert reply.response_metadata["finish_reason"] == "stop"


def test_replay_reports_estimated_usage():
    model = ReplayChatModel(answers={"hello there": "greeting"}, model_name="replay-x")
    reply = model.invoke("hello there")
    assert reply.usage_metadata["input_tokens"] == estimate_tokens("hello there")
    assert reply.usage_metadata["output_tokens"] >= 1
    assert reply.response_metadata["usage_is_estimate"] is True
    assert reply.response_metadata["model_name"] == "replay-x"


def test_replay_names_provider_and_model():
    model = ReplayChatModel(model_name="replay-router")
    params = model._get_ls_params()
    assert params["ls_provider"] == "replay"
    assert params["ls_model_name"] == "replay-router"
    assert "replay" in model._llm_type


def test_bind_tools_passes_openai_schemas():
    recorded = AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {"city": "Oslo"}, "id": None}])
    model = ReplayChatModel(answers={"weather in Oslo?": recorded})
    bound = model.bind_tools([get_weather], tool_choice="get_weather")
    assert bound.kwargs["tools"][0]["function"]["name"] == "get_weather"
    assert bound.kwargs["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    reply = bound.invoke("weather in Oslo?")
    assert reply.tool_calls[0]["args"] == {"city": "Oslo"}
    assert reply.tool_calls[0]["id"]
    assert reply.response_metadata["finish_reason"] == "tool_calls"


def test_tool_call_without_bound_tool_raises():
    recorded = AIMessage(content="", tool_calls=[{"name": "get_weather", "args": {}, "id": "1"}])
    model = ReplayChatModel(answers={"weather?": recorded})
    with pytest.raises(ReplayMissError, match="not among the bound tools"):
        model.invoke("weather?")


def test_unknown_request_raises():
    model = ReplayChatModel(answers={"known": "a"})
    with pytest.raises(ReplayMissError, match="no recorded answer for the request 'unknown'"):
        model.invoke("unknown")


def test_unknown_request_gets_default():
    model = ReplayChatModel(answers={}, default=lambda text: text.upper())
    assert model.invoke("abc").text == "ABC"

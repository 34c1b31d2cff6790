"""Tests of the example support agent on real BANKING77 and BFCL data, with the replay teacher.

The teacher is a replay model because no hosted LLM can be reached here.
"""

from __future__ import annotations

import pytest

from slmshift.demo.datasets import load_banking77, load_bfcl
from slmshift.demo.prompts import RESPONDER_NODE, ROUTER_NODE, TOOL_NODE
from slmshift.demo.support_agent import (
    banking_input,
    build_support_graph,
    function_call_input,
    recorded_calls,
    replay_teacher,
)


@pytest.fixture(scope="module")
def slices():
    return load_banking77("train", limit=40, seed=1), load_bfcl(limit=30, seed=1)


@pytest.fixture(scope="module")
def graph(slices):
    banking, bfcl = slices
    return build_support_graph(*replay_teacher(banking=banking, bfcl=bfcl)).compile()


def test_graph_has_three_model_nodes(graph):
    assert {ROUTER_NODE, TOOL_NODE, RESPONDER_NODE} <= set(graph.get_graph().nodes)


def test_banking_request_gets_intent_and_reply(graph, slices):
    for example in slices[0][:10]:
        result = graph.invoke(banking_input(example))
        assert result["intent"] == example.label
        assert example.label.replace("_", " ") in result["reply"]
        assert "tool_calls" not in result


def test_bfcl_question_gets_recorded_calls(graph, slices):
    for example in slices[1]:
        result = graph.invoke(function_call_input(example))
        expected = [call["name"] for call in recorded_calls(example).tool_calls]
        assert [call["name"] for call in result["tool_calls"]] == expected
        assert "intent" not in result


def test_recorded_calls_omit_optional_parameters():
    from slmshift.demo.datasets import FunctionCallExample

    example = FunctionCallExample(
        id="x", category="simple_python", messages=[{"role": "user", "content": "q"}], functions=[],
        ground_truth=[{"math.hypot": {"x": [3], "y": [4, 4.0], "z": ["", 0]}}],
    )
    call = recorded_calls(example).tool_calls[0]
    assert call["name"] == "math.hypot"
    assert call["args"] == {"x": 3, "y": 4}


def test_unknown_request_kind_raises(graph):
    with pytest.raises(ValueError, match="Invalid request kind 'chat'"):
        graph.invoke({"kind": "chat", "request": "hi"})

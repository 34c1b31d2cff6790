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


def test_captured_run_stores_one_record_per_call(slices, tmp_path):
    from slmshift import LangChainTraceHandler, TraceStore

    banking, bfcl = slices
    graph = build_support_graph(*replay_teacher(banking=banking, bfcl=bfcl)).compile()
    store = TraceStore(tmp_path / "traces.db")
    handler = LangChainTraceHandler(store, agent="support-bot")

    for example in banking[:5]:
        graph.invoke(banking_input(example), config={"callbacks": [handler]})
    for example in bfcl[:4]:
        graph.invoke(function_call_input(example), config={"callbacks": [handler]})
    handler.flush()

    records = list(store.records(agent="support-bot"))
    assert len(records) == 5 * 2 + 4
    by_node = {node: [r for r in records if r.node == node] for node in (ROUTER_NODE, RESPONDER_NODE, TOOL_NODE)}
    assert len(by_node[ROUTER_NODE]) == 5
    assert len(by_node[RESPONDER_NODE]) == 5
    assert len(by_node[TOOL_NODE]) == 4
    assert {r.output_kind for r in by_node[ROUTER_NODE]} == {"label"}
    assert {r.output_kind for r in by_node[TOOL_NODE]} == {"tool_call"}
    assert all(r.tools for r in by_node[TOOL_NODE])
    assert {r.provider for r in records} == {"replay"}
    assert sorted(r.response.text for r in by_node[ROUTER_NODE]) == sorted(e.label for e in banking[:5])
    store.close()


def test_example_script_fills_store(tmp_path, capsys):
    import runpy

    from slmshift import TraceStore

    script = runpy.run_path("examples/support_agent/run.py")
    db = tmp_path / "traces.db"
    assert script["main"](["--banking", "6", "--bfcl", "4", "--store", str(db)]) == 0
    output = capsys.readouterr().out
    assert "replay model" in output
    assert str(db) in output
    assert TraceStore(db).count(agent="support-bot") == 6 * 2 + 4


def test_example_script_without_langchain_openai_raises(capsys):
    import importlib.util
    import runpy

    if importlib.util.find_spec("langchain_openai") is not None:
        pytest.fail("langchain-openai is installed here, so the missing-package path cannot be checked")
    script = runpy.run_path("examples/support_agent/run.py")
    with pytest.raises(SystemExit, match="pip install langchain-openai"):
        script["main"](["--banking", "1", "--bfcl", "0", "--teacher-base-url", "http://127.0.0.1:9/v1"])

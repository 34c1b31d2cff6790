"""Spans out of the LangChain handler: parentage under async and parallel branches, GenAI
attributes, content capture, and a round trip through TraceStoreSpanExporter.

The chat model is the scripted test double in tests/fakes.py, because no hosted LLM is
reachable here; LangGraph, langchain-core and the OpenTelemetry SDK are the real packages.
"""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.graph import START, StateGraph
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slmshift.callbacks.langchain import LangChainTraceHandler
from slmshift.integrations.opentelemetry import SpanListener, TraceStoreSpanExporter
from slmshift.store.base import MemoryTraceStore
from tests.fakes import ScriptedChatModel


class State(TypedDict):
    answers: Annotated[list[str], operator.add]


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def parallel_graph(model):
    def branch(name: str):
        async def node(state: State) -> dict:
            await asyncio.sleep(0.01)
            reply = await model.ainvoke([HumanMessage(f"{name} question")])
            return {"answers": [reply.content]}

        return node

    builder = StateGraph(State)
    for name in ("left", "right"):
        builder.add_node(name, branch(name))
        builder.add_edge(START, name)
    return builder.compile(name="fanout")


def _spans_by_id(finished):
    return {span.context.span_id: span for span in finished}


async def test_parallel_async_branches_nest_under_their_nodes(spans):
    provider, exporter = spans
    model = ScriptedChatModel(responder=lambda messages: f"answer to {messages[-1].content}")
    store = MemoryTraceStore()
    handler = LangChainTraceHandler(store, agent="bot", tracer_provider=provider)
    graph = parallel_graph(model)

    await asyncio.gather(
        graph.ainvoke({"answers": []}, {"callbacks": [handler], "configurable": {"thread_id": "t1"}}),
        graph.ainvoke({"answers": []}, {"callbacks": [handler]}),
    )

    finished = exporter.get_finished_spans()
    by_id = _spans_by_id(finished)
    roots = [s for s in finished if s.parent is None]
    assert len(roots) == 2
    assert all(root.attributes["gen_ai.operation.name"] == "invoke_agent" for root in roots)
    chats = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 4
    for chat in chats:
        node_span = by_id[chat.parent.span_id]
        question = chat.attributes["langgraph.node"]
        assert node_span.name == question
        assert node_span.attributes["slmshift.node"] == question
        assert by_id[node_span.parent.span_id].parent is None
        assert node_span.context.trace_id == chat.context.trace_id
        assert chat.attributes["gen_ai.request.model"] == "scripted-model"
        assert chat.attributes["gen_ai.provider.name"] == "scripted"
        assert chat.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert sum(1 for root in roots if root.attributes.get("gen_ai.conversation.id") == "t1") == 1
    assert handler.stats.listener_errors == 0
    assert store.count() == 4


def test_tool_and_model_spans_of_a_react_agent(spans):
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """Return the weather in a city."""
        return f"sunny in {city}"

    provider, exporter = spans
    call = AIMessage(
        content="",
        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 4, "total_tokens": 16},
    )
    model = ScriptedChatModel(responses=[call, "It is sunny."])
    agent = create_react_agent(model, [get_weather])
    store = MemoryTraceStore()
    handler = LangChainTraceHandler(store, agent="weather")
    handler.add_listener(SpanListener(provider, agent="weather", capture_content=True))

    agent.invoke({"messages": [HumanMessage("weather in Paris?")]}, {"callbacks": [handler]})

    finished = exporter.get_finished_spans()
    by_id = _spans_by_id(finished)
    tool_span = next(s for s in finished if s.attributes.get("gen_ai.operation.name") == "execute_tool")
    assert tool_span.name == "execute_tool get_weather"
    assert tool_span.attributes["gen_ai.tool.name"] == "get_weather"
    assert by_id[tool_span.parent.span_id].name == "tools"
    chats = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert [by_id[c.parent.span_id].name for c in chats] == ["agent", "agent"]
    first = min(chats, key=lambda span: span.start_time)
    assert first.attributes["gen_ai.usage.input_tokens"] == 12
    assert first.attributes["gen_ai.usage.output_tokens"] == 4
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert '"weather in Paris?"' in first.attributes["gen_ai.input.messages"]
    assert '"get_weather"' in first.attributes["gen_ai.tool.definitions"]
    root = next(s for s in finished if s.parent is None)
    assert root.name == "invoke_agent weather"


def test_spans_round_trip_into_records(spans):
    provider, exporter = spans
    model = ScriptedChatModel(responses=["billing"])
    store = MemoryTraceStore()
    handler = LangChainTraceHandler(store, agent="bot")
    handler.add_listener(SpanListener(provider, capture_content=True))
    model.invoke([HumanMessage("my card was charged twice")], {"callbacks": [handler]})
    [original] = list(store.records())

    imported_store = MemoryTraceStore()
    TraceStoreSpanExporter(imported_store).export(exporter.get_finished_spans())
    [imported] = list(imported_store.records())
    assert imported.id == original.id
    assert imported.messages == original.messages
    assert imported.response == original.response
    assert imported.model == original.model
    assert imported.provider == original.provider
    assert imported.finish_reason == original.finish_reason


def test_failed_model_call_span_has_error_status(spans):
    provider, exporter = spans
    model = ScriptedChatModel(responses=[ValueError("rate limited")])
    handler = LangChainTraceHandler(MemoryTraceStore(), tracer_provider=provider)
    with pytest.raises(ValueError, match="rate limited"):
        model.invoke([HumanMessage("hi")], {"callbacks": [handler]})
    [chat] = [s for s in exporter.get_finished_spans() if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert chat.status.is_ok is False
    assert chat.attributes["error.type"] == "ValueError"


def test_agent_run_joins_ambient_span_only_when_asked(spans):
    provider, exporter = spans
    model = ScriptedChatModel(responses=["ok"])
    outer_tracer = provider.get_tracer("app")
    for join in (False, True):
        handler = LangChainTraceHandler(MemoryTraceStore())
        handler.add_listener(SpanListener(provider, join_ambient=join))
        with outer_tracer.start_as_current_span(f"request join={join}") as request_span:
            parallel_graph_sync(model).invoke({"answers": []}, {"callbacks": [handler]})
        [run] = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent") and s.start_time >= request_span.start_time]
        if join:
            # Another instrumentation's span may sit in between, so check the trace.
            assert run.context.trace_id == request_span.get_span_context().trace_id
            assert run.parent is not None
        else:
            assert run.parent is None
        exporter.clear()


def parallel_graph_sync(model):
    def node(state: State) -> dict:
        return {"answers": [model.invoke([HumanMessage("q")]).content]}

    builder = StateGraph(State)
    builder.add_node("only", node)
    builder.add_edge(START, "only")
    return builder.compile()

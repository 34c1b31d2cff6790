"""Spans in: real OpenInference and OpenLLMetry spans become call records.

The instrumentations are the real packages; the model is langchain-core's fake chat model and
llama-index-core's MockFunctionCallingLLM, because no hosted LLM is reachable here.
"""

from __future__ import annotations

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slmshift.integrations.opentelemetry import TraceStoreSpanExporter
from slmshift.store.base import MemoryTraceStore


def _tool_call_message() -> AIMessage:
    return AIMessage(
        content="",
        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 10, "output_tokens": 3, "total_tokens": 13},
    )


def _run_fake_chat_model() -> None:
    model = GenericFakeChatModel(messages=iter([_tool_call_message(), AIMessage(content="billing")]))
    model.invoke(
        [SystemMessage("classify"), HumanMessage("hi there")],
        config={"metadata": {"langgraph_node": "classify"}},
    )
    model.invoke([HumanMessage("x")])


@pytest.fixture
def captured_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _records_from(spans) -> list:
    store = MemoryTraceStore()
    bridge = TraceStoreSpanExporter(store, agent="bot")
    bridge.export(spans)
    bridge.force_flush()
    return sorted(store.records(), key=lambda record: record.started_at)


def _check_langchain_records(records) -> None:
    assert len(records) == 2
    first, second = records
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.messages[1].content == "hi there"
    assert first.response.tool_calls[0].name == "get_weather"
    assert first.response.tool_calls[0].arguments == {"city": "Paris"}
    assert first.response.tool_calls[0].id == "call_1"
    assert first.output_kind == "tool_call"
    assert first.usage.input_tokens == 10
    assert first.usage.output_tokens == 3
    assert first.node == "classify"
    assert first.agent == "bot"
    assert first.provider == "genericfakechatmodel"
    assert second.response.content == "billing"
    assert second.output_kind == "label"


def test_openinference_langchain_spans_become_records(captured_spans):
    from openinference.instrumentation.langchain import LangChainInstrumentor

    provider, exporter = captured_spans
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        _run_fake_chat_model()
    finally:
        instrumentor.uninstrument()
    _check_langchain_records(_records_from(exporter.get_finished_spans()))


def test_openllmetry_langchain_spans_become_records(captured_spans, monkeypatch):
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor

    monkeypatch.setenv("TRACELOOP_TRACE_CONTENT", "true")
    provider, exporter = captured_spans
    instrumentor = LangchainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        _run_fake_chat_model()
    finally:
        instrumentor.uninstrument()
    _check_langchain_records(_records_from(exporter.get_finished_spans()))


async def test_openinference_llama_index_spans_name_the_agent(captured_spans):
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    provider, exporter = captured_spans
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        agent = FunctionAgent(
            name="calculator",
            description="adds numbers",
            tools=[FunctionTool.from_defaults(add)],
            llm=MockFunctionCallingLLM(),
            system_prompt="you add",
        )
        await agent.run("add 1 and 2")
    finally:
        instrumentor.uninstrument()
    records = _records_from(exporter.get_finished_spans())
    assert len(records) == 2
    assert {record.node for record in records} == {"calculator"}
    assert records[0].messages[0].content == "you add"
    assert records[0].response.tool_calls[0].name == "add"
    assert records[1].messages[-1].role == "tool"
    assert records[1].response.content == "Tool calls complete."
    assert len({record.trace_id for record in records}) == 1


def test_span_imported_twice_is_one_record(captured_spans):
    from openinference.instrumentation.langchain import LangChainInstrumentor

    provider, exporter = captured_spans
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        _run_fake_chat_model()
    finally:
        instrumentor.uninstrument()
    store = MemoryTraceStore()
    bridge = TraceStoreSpanExporter(store)
    bridge.export(exporter.get_finished_spans())
    bridge.export(exporter.get_finished_spans())
    bridge.force_flush()
    assert store.count() == 2


def test_non_model_spans_are_ignored(captured_spans):
    provider, exporter = captured_spans
    with provider.get_tracer("test").start_as_current_span("http request"):
        pass
    store = MemoryTraceStore()
    bridge = TraceStoreSpanExporter(store)
    bridge.export(exporter.get_finished_spans())
    assert store.count() == 0
    assert bridge.stats["spans"] == 1

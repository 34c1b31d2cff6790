"""LlamaIndexTraceHandler on real llama-index-core agents and workflows.

The model is llama-index-core's MockFunctionCallingLLM (and MockLLM for plain calls), with
scripted responses, because no hosted LLM is reachable here.
"""

from __future__ import annotations

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ToolCallBlock
from llama_index.core.llms import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM, MockLLM
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context, StartEvent, StopEvent, Workflow, step
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from slmshift.callbacks.llama_index import LlamaIndexTraceHandler
from slmshift.store.base import MemoryTraceStore


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _has_tool_result(messages, call_id: str) -> bool:
    return any(
        m.role.value == "tool" and m.additional_kwargs.get("tool_call_id") == call_id for m in messages
    )


def calculator_llm() -> MockFunctionCallingLLM:
    def respond(messages, **kwargs):
        if _has_tool_result(messages, "call-add"):
            return ChatMessage(role="assistant", content="The sum is 3.")
        block = ToolCallBlock(tool_call_id="call-add", tool_name="add", tool_kwargs={"a": 1, "b": 2})
        return ChatMessage(role="assistant", blocks=[block])

    return MockFunctionCallingLLM(response_generator=respond)


def calculator(*, streaming: bool = True, name: str = "calculator") -> FunctionAgent:
    return FunctionAgent(
        name=name,
        description="adds numbers",
        tools=[FunctionTool.from_defaults(add)],
        llm=calculator_llm(),
        system_prompt="You add numbers.",
        streaming=streaming,
    )


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def _by_name(finished):
    return {span.name: span for span in finished}


@pytest.mark.parametrize("streaming", [True, False])
async def test_function_agent_calls_are_recorded(streaming):
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, agent="bot") as handler:
        result = await calculator(streaming=streaming).run("add 1 and 2")
    assert str(result) == "The sum is 3."
    records = list(store.records())
    assert len(records) == 2
    first, second = records
    assert first.node == "calculator"
    assert first.agent == "bot"
    assert [m.role for m in first.messages] == ["system", "user"]
    assert first.response.tool_calls[0].arguments == {"a": 1, "b": 2}
    assert first.output_kind == "tool_call"
    assert first.finish_reason == "tool_calls"
    assert first.tools[0].name == "add"
    assert first.tools[0].parameters["required"] == ["a", "b"]
    assert second.messages[-1].role == "tool"
    assert second.messages[-1].content == "3"
    assert second.messages[-1].tool_call_id == "call-add"
    assert second.response.content == "The sum is 3."
    assert first.trace_id == second.trace_id
    assert first.latency_ms >= 0
    assert handler.stats["errors"] == 0
    assert handler.stats["open_runs"] == 0
    assert handler.stats["open_spans"] == 0
    assert handler.stats["open_calls"] == 0


async def test_function_agent_spans_nest(spans):
    provider, exporter = spans
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, agent="bot", tracer_provider=provider, capture_content=True):
        await calculator().run("add 1 and 2")
    finished = exporter.get_finished_spans()
    root = [s for s in finished if s.parent is None]
    assert len(root) == 1
    assert root[0].name == "invoke_agent bot"
    assert {s.context.trace_id for s in finished} == {root[0].context.trace_id}
    by_id = {s.context.span_id: s for s in finished}
    chats = [s for s in finished if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 2
    for chat in chats:
        parent = by_id[chat.parent.span_id]
        assert parent.name == "invoke_agent calculator"
        assert parent.parent.span_id == root[0].context.span_id
        assert chat.attributes["gen_ai.agent.name"] == "calculator"
        assert chat.attributes["slmshift.node"] == "calculator"
    tool = _by_name(finished)["execute_tool add"]
    assert tool.attributes["gen_ai.tool.call.id"] == "call-add"
    assert tool.attributes["gen_ai.tool.call.arguments"] == '{"a": 1, "b": 2}'
    assert tool.attributes["gen_ai.tool.call.result"] == "3"
    assert '"name":"add"' in chats[0].attributes["gen_ai.output.messages"]


async def test_content_stays_off_spans_by_default(spans, monkeypatch):
    monkeypatch.delenv("SLMSHIFT_OTEL_CAPTURE_CONTENT", raising=False)
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    provider, exporter = spans
    with LlamaIndexTraceHandler(MemoryTraceStore(), tracer_provider=provider):
        await calculator().run("add 1 and 2")
    for span in exporter.get_finished_spans():
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.tool.call.arguments" not in span.attributes
        assert "gen_ai.tool.call.result" not in span.attributes


async def test_redactor_runs_before_store_and_spans(spans):
    provider, exporter = spans

    def redact(record):
        messages = tuple(m.__class__(**{**m.__dict__, "content": "[x]"}) if m.role == "user" else m for m in record.messages)
        return record.replace(messages=messages)

    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, tracer_provider=provider, redactor=redact, capture_content=True):
        await calculator().run("my card is 4111")
    assert all("4111" not in r.to_json() for r in store.records())
    for span in exporter.get_finished_spans():
        assert "4111" not in str(dict(span.attributes))


async def test_agent_workflow_attributes_calls_per_agent(spans):
    provider, exporter = spans

    def route(messages, **kwargs):
        if _has_tool_result(messages, "call-handoff"):
            return ChatMessage(role="assistant", content="handed off")
        block = ToolCallBlock(
            tool_call_id="call-handoff",
            tool_name="handoff",
            tool_kwargs={"to_agent": "calculator", "reason": "needs maths"},
        )
        return ChatMessage(role="assistant", blocks=[block])

    router = FunctionAgent(
        name="router",
        description="routes requests",
        llm=MockFunctionCallingLLM(response_generator=route),
        can_handoff_to=["calculator"],
        system_prompt="Route.",
    )
    workflow = AgentWorkflow(agents=[router, calculator()], root_agent="router")
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, agent="support", tracer_provider=provider) as handler:
        result = await workflow.run(user_msg="add 1 and 2")
    assert str(result) == "The sum is 3."
    nodes = [record.node for record in store.records()]
    assert nodes == ["router", "calculator", "calculator"]
    assert any(t.name == "handoff" for t in list(store.records())[0].tools)
    agent_steps = [s.name for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent ")]
    assert sorted(agent_steps) == sorted(
        ["invoke_agent router", "invoke_agent calculator", "invoke_agent calculator", "invoke_agent support"]
    )
    assert handler.stats["open_runs"] == 0


async def test_react_agent_calls_are_recorded():
    def respond(messages, **kwargs):
        if any("Observation" in (m.content or "") for m in messages[1:]):
            return ChatMessage(role="assistant", content="Thought: I can answer.\nAnswer: 3")
        return ChatMessage(
            role="assistant",
            content='Thought: I need the tool.\nAction: add\nAction Input: {"a": 1, "b": 2}',
        )

    agent = ReActAgent(
        name="reasoner",
        description="adds",
        tools=[FunctionTool.from_defaults(add)],
        llm=MockFunctionCallingLLM(response_generator=respond),
    )
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store):
        result = await agent.run("add 1 and 2")
    assert "3" in str(result)
    records = list(store.records())
    assert len(records) == 2
    assert {r.node for r in records} == {"reasoner"}
    assert "Action: add" in records[0].response.content
    assert records[0].messages[0].role == "system"
    assert "Observation: 3" in records[1].messages[-1].content


class _FailingStep(Workflow):
    @step
    async def call_and_fail(self, ctx: Context, ev: StartEvent) -> StopEvent:
        MockLLM().complete("hello")
        raise RuntimeError("step failed")


async def test_failing_workflow_step_closes_run(spans):
    provider, exporter = spans
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, tracer_provider=provider) as handler:
        with pytest.raises(RuntimeError, match="step failed"):
            await _FailingStep().run()
        assert handler.stats["open_runs"] == 0
        assert handler.stats["open_spans"] == 0
    [record] = list(store.records())
    assert record.messages[0].content == "hello"
    runs = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert len(runs) == 1
    assert runs[0].status.is_ok is False


def test_plain_sync_calls_are_recorded():
    llm = MockLLM(max_tokens=5)
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, agent="plain") as handler:
        llm.complete("one two three")
        llm.chat([ChatMessage(role="user", content="hi")])
        chunks = list(llm.stream_complete("stream me"))
        list(llm.stream_chat([ChatMessage(role="user", content="stream chat")]))
    assert chunks
    records = list(store.records())
    assert [r.messages[-1].content for r in records] == ["one two three", "hi", "stream me", "stream chat"]
    assert all(r.response is not None and r.error is None for r in records)
    assert records[2].metadata["stream_chunks"] >= 1
    assert handler.stats["open_calls"] == 0


def test_model_error_is_recorded_and_raised():
    from llama_index.core.base.llms.types import CompletionResponse
    from llama_index.core.llms.callbacks import llm_completion_callback

    class BrokenLLM(MockLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs) -> CompletionResponse:
            raise ValueError("provider down")

    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store) as handler:
        with pytest.raises(ValueError, match="provider down"):
            BrokenLLM().complete("hi")
    [record] = list(store.records())
    assert "provider down" in record.error
    assert record.response is None
    assert handler.stats["open_calls"] == 0


def test_uninstall_detaches_handler():
    store = MemoryTraceStore()
    handler = LlamaIndexTraceHandler(store).install()
    handler.uninstall()
    MockLLM().complete("after")
    assert store.count() == 0


def test_hook_failure_is_counted_not_raised():
    def broken_redactor(record):
        raise KeyError("redactor bug")

    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, redactor=broken_redactor) as handler:
        response = MockLLM().complete("still works")
    assert response.text == "still works"
    assert handler.stats["errors"] == 1
    assert store.count() == 0

"""Capture of LangChain and LangGraph model calls by `LangChainTraceHandler`.

A hosted LLM cannot be reached from the test machines, so the chat model is the scripted
test double in tests/fakes.py, which binds tools and streams like a real provider. The graphs,
prebuilt agents, callback managers and stores are the real ones.
"""

from __future__ import annotations

import asyncio
import operator
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, Send, interrupt
from pydantic import BaseModel

from slmshift.callbacks._serialize import TRUNCATION_MARKER
from slmshift.callbacks.events import RunEnd, RunStart
from slmshift.callbacks.langchain import LangChainTraceHandler
from slmshift.records import CallRecord
from tests.fakes import ScriptedChatModel, text_message, tool_call_message


class State(TypedDict):
    messages: Annotated[list, operator.add]


class EventLog:
    """A run listener that keeps every event."""

    def __init__(self) -> None:
        self.starts: list[RunStart] = []
        self.ends: list[RunEnd] = []
        self._lock = threading.Lock()

    def on_run_start(self, event: RunStart) -> None:
        with self._lock:
            self.starts.append(event)

    def on_run_end(self, event: RunEnd) -> None:
        with self._lock:
            self.ends.append(event)

    def node_runs(self) -> dict[str, UUID]:
        return {event.name: event.run_id for event in self.starts if event.kind == "node"}


@tool
def get_weather(city: str) -> str:
    """Return the weather for a city."""
    return f"sunny in {city}"


def echo(messages: list[Any]) -> str:
    """Return the last message's text, prefixed, so each record shows which input it belongs to."""
    return f"echo {messages[-1].content}"


def three_node_graph(model: Any) -> Any:
    """classify (one call), plan (two calls), finish (no call)."""

    def classify(state: State) -> dict:
        return {"messages": [model.invoke(state["messages"])]}

    def plan(state: State) -> dict:
        first = model.invoke([HumanMessage("plan step one")])
        second = model.invoke([HumanMessage("plan step two")])
        return {"messages": [first, second]}

    def finish(state: State) -> dict:
        return {"messages": [AIMessage("done")]}

    builder = StateGraph(State)
    builder.add_node("classify", classify)
    builder.add_node("plan", plan)
    builder.add_node("finish", finish)
    builder.add_edge(START, "classify")
    builder.add_edge("classify", "plan")
    builder.add_edge("plan", "finish")
    builder.add_edge("finish", END)
    return builder.compile()


def async_graph(model: Any) -> Any:
    async def first(state: State) -> dict:
        return {"messages": [await model.ainvoke(state["messages"])]}

    async def second(state: State) -> dict:
        return {"messages": [await model.ainvoke([HumanMessage("second")])]}

    builder = StateGraph(State)
    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    return builder.compile()


def test_three_node_graph_records_each_call(memory_store):
    model = ScriptedChatModel(responder=echo)
    events = EventLog()
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[events])

    three_node_graph(model).invoke({"messages": [HumanMessage("hello")]}, {"callbacks": [handler]})
    records = list(memory_store.records())

    assert len(records) == 3
    assert [record.node for record in records] == ["classify", "plan", "plan"]
    assert [record.step for record in records] == [1, 2, 2]
    assert {record.agent for record in records} == {"bot"}
    assert len({record.trace_id for record in records}) == 1
    roots = [event for event in events.starts if event.kind == "agent"]
    assert records[0].trace_id == str(roots[0].run_id)
    node_runs = events.node_runs()
    assert records[0].parent_id == str(node_runs["classify"])
    assert records[1].parent_id == records[2].parent_id == str(node_runs["plan"])
    assert records[1].messages[0].content == "plan step one"
    assert records[2].response.content == "echo plan step two"
    assert handler.stats.records == 3


def test_subgraph_node_is_a_path(memory_store):
    model = ScriptedChatModel(responder=echo)

    def inner_call(state: State) -> dict:
        return {"messages": [model.invoke([HumanMessage("inner")])]}

    inner = StateGraph(State)
    inner.add_node("draft", inner_call)
    inner.add_edge(START, "draft")
    middle = StateGraph(State)
    middle.add_node("writer", inner.compile())
    middle.add_edge(START, "writer")
    outer = StateGraph(State)
    outer.add_node("team", middle.compile())
    outer.add_edge(START, "team")
    handler = LangChainTraceHandler(memory_store, agent="bot")

    outer.compile().invoke({"messages": []}, {"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.node == "team/writer/draft"
    assert record.step == 1
    assert record.metadata["langgraph_checkpoint_ns"].count("|") == 2


def test_async_graph_records_each_call(memory_store):
    model = ScriptedChatModel(responder=echo)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    asyncio.run(
        async_graph(model).ainvoke({"messages": [HumanMessage("hi")]}, {"callbacks": [handler]})
    )
    records = list(memory_store.records())

    assert [record.node for record in records] == ["first", "second"]
    assert records[0].response.content == "echo hi"
    assert len({record.trace_id for record in records}) == 1
    assert records[0].parent_id != records[1].parent_id
    assert handler.active_runs == 0


def test_send_fan_out_attributes_each_branch(memory_store):
    model = ScriptedChatModel(responder=echo)

    class FanState(TypedDict):
        topics: list[str]
        answers: Annotated[list, operator.add]

    def worker(payload: dict) -> dict:
        return {"answers": [model.invoke([HumanMessage(payload["topic"])]).content]}

    builder = StateGraph(FanState)
    builder.add_node("worker", worker)
    builder.add_conditional_edges(
        START, lambda state: [Send("worker", {"topic": t}) for t in state["topics"]]
    )
    handler = LangChainTraceHandler(memory_store, agent="bot")

    result = builder.compile().invoke(
        {"topics": ["a", "b", "c"], "answers": []}, {"callbacks": [handler]}
    )
    records = list(memory_store.records())

    assert sorted(result["answers"]) == ["echo a", "echo b", "echo c"]
    assert [record.node for record in records] == ["worker"] * 3
    assert len({record.parent_id for record in records}) == 3
    for record in records:
        assert record.response.content == f"echo {record.messages[0].content}"
    assert "__pregel_push" in records[0].metadata["langgraph_path"]


def test_shared_handler_in_threads_and_gather(memory_store):
    model = ScriptedChatModel(responder=echo)
    graph = three_node_graph(model)
    agraph = async_graph(model)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    def run_sync(index: int) -> None:
        graph.invoke({"messages": [HumanMessage(f"thread {index}")]}, {"callbacks": [handler]})

    async def run_all() -> None:
        await asyncio.gather(
            *(
                agraph.ainvoke({"messages": [HumanMessage(f"task {i}")]}, {"callbacks": [handler]})
                for i in range(8)
            )
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(run_sync, range(8)))
    asyncio.run(run_all())
    records = list(memory_store.records())

    assert len(records) == 8 * 3 + 8 * 2
    by_trace: dict[str, list[CallRecord]] = {}
    for record in records:
        by_trace.setdefault(record.trace_id, []).append(record)
    assert len(by_trace) == 16
    for trace in by_trace.values():
        first = next(record for record in trace if record.node in ("classify", "first"))
        assert first.response.content == f"echo {first.messages[-1].content}"
        assert len(trace) in (2, 3)
    assert handler.active_runs == 0
    assert handler.stats.internal_errors == 0


def test_streamed_text_is_assembled(memory_store):
    model = ScriptedChatModel(
        responses=[text_message("a streamed answer, in pieces.", input_tokens=5, output_tokens=7)],
        chunk_chars=3,
    )
    graph = three_node_graph(model)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    chunks = list(
        graph.stream(
            {"messages": [HumanMessage("hi")]}, {"callbacks": [handler]}, stream_mode="messages"
        )
    )
    record = next(iter(memory_store.records()))

    assert len(chunks) > 5
    assert record.response.content == "a streamed answer, in pieces."
    assert record.usage.input_tokens == 5
    assert record.usage.output_tokens == 7
    assert record.output_kind == "text"


def test_streamed_tool_arguments_are_joined(memory_store):
    args = {"city": "Zürich", "days": [1, 2], "note": "naïve ☀️ 天气"}
    model = ScriptedChatModel(responses=[tool_call_message("get_weather", args)], chunk_chars=3)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    pieces = list(
        model.bind_tools([get_weather]).stream("weather?", config={"callbacks": [handler]})
    )
    (record,) = memory_store.records()

    assert sum(1 for piece in pieces if piece.tool_call_chunks) > 5
    assert record.response.tool_calls[0].name == "get_weather"
    assert record.response.tool_calls[0].arguments == args
    assert record.response.tool_calls[0].id == "call_1"
    assert record.output_kind == "tool_call"


def test_tool_call_only_response_is_tool_call(memory_store):
    model = ScriptedChatModel(
        responses=[
            tool_call_message(
                "get_weather", {"city": "Oslo"}, usage={"input_tokens": 9, "output_tokens": 4}
            )
        ]
    )
    handler = LangChainTraceHandler(memory_store, agent="bot")

    model.bind_tools([get_weather], tool_choice="get_weather").invoke(
        "weather in Oslo?", config={"callbacks": [handler]}
    )
    (record,) = memory_store.records()

    assert record.output_kind == "tool_call"
    assert record.response.content == ""
    assert record.response.tool_calls[0].arguments == {"city": "Oslo"}
    assert record.tools[0].name == "get_weather"
    assert record.tools[0].parameters["properties"]["city"]["type"] == "string"
    assert record.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    assert record.finish_reason == "tool_calls"
    assert record.usage.input_tokens == 9


def test_unknown_usage_stays_none(memory_store):
    model = ScriptedChatModel(responses=["no usage reported"])
    handler = LangChainTraceHandler(memory_store, agent="bot")

    model.invoke("hi", config={"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.usage.input_tokens is None
    assert record.usage.output_tokens is None
    assert record.model == "scripted-model"
    assert record.provider == "scripted"
    assert record.latency_ms > 0


def test_failed_call_is_recorded(memory_store):
    model = ScriptedChatModel(responses=[RuntimeError("upstream returned 503")])
    graph = three_node_graph(model)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    with pytest.raises(RuntimeError, match="upstream returned 503"):
        graph.invoke({"messages": [HumanMessage("hi")]}, {"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.error == "RuntimeError: upstream returned 503"
    assert record.response is None
    assert record.node == "classify"
    assert record.messages[0].content == "hi"
    assert handler.stats.failed_calls == 1
    assert handler.active_runs == 0


def test_broken_stream_keeps_partial_answer(memory_store):
    model = ScriptedChatModel(
        responses=["this answer never finishes"], chunk_chars=4, fail_after_chunks=3
    )
    handler = LangChainTraceHandler(memory_store, agent="bot")

    with pytest.raises(RuntimeError, match="stream broke after 3 chunks"):
        model.invoke("hi", config={"callbacks": [handler]}, stream=True)
    (record,) = memory_store.records()

    assert record.error == "RuntimeError: stream broke after 3 chunks"
    assert record.response.content == "this answer "
    assert record.metadata["partial_response"] is True


def test_react_agent_records_agent_node(memory_store):
    from langgraph.prebuilt import create_react_agent

    model = ScriptedChatModel(
        responses=[tool_call_message("get_weather", {"city": "Lima"}), "It is sunny in Lima."]
    )
    agent = create_react_agent(model, [get_weather], prompt="You are a weather bot.")
    handler = LangChainTraceHandler(memory_store, agent="weather")

    agent.invoke({"messages": [HumanMessage("Weather in Lima?")]}, {"callbacks": [handler]})
    first, second = memory_store.records()

    assert [first.node, second.node] == ["agent", "agent"]
    assert first.messages[0].role == "system"
    assert first.tools[0].name == "get_weather"
    assert first.output_kind == "tool_call"
    assert [message.role for message in second.messages] == ["system", "user", "assistant", "tool"]
    assert second.messages[3].tool_call_id == "call_1"
    assert second.messages[3].name == "get_weather"
    assert second.messages[2].tool_calls[0].arguments == {"city": "Lima"}
    assert second.response.content == "It is sunny in Lima."


def test_create_agent_records_model_node(memory_store):
    from langchain.agents import create_agent

    model = ScriptedChatModel(
        responses=[tool_call_message("get_weather", {"city": "Kyiv"}), "Sunny."]
    )
    agent = create_agent(model, [get_weather], system_prompt="Be brief.", name="weather_agent")
    handler = LangChainTraceHandler(memory_store, agent="weather")

    agent.invoke({"messages": [HumanMessage("Weather in Kyiv?")]}, {"callbacks": [handler]})
    records = list(memory_store.records())

    assert [record.node for record in records] == ["model", "model"]
    assert records[0].metadata["lc_agent_name"] == "weather_agent"
    assert records[1].messages[-1].role == "tool"
    assert records[0].trace_id == records[1].trace_id


def test_structured_output_schema_is_recorded(memory_store):
    class Ticket(BaseModel):
        category: str
        urgent: bool

    answer = tool_call_message("Ticket", {"category": "billing", "urgent": True})
    model = ScriptedChatModel(responses=[answer])
    handler = LangChainTraceHandler(memory_store, agent="bot")

    ticket = model.with_structured_output(Ticket).invoke(
        "My invoice is wrong!", config={"callbacks": [handler]}
    )
    (record,) = memory_store.records()

    assert ticket == Ticket(category="billing", urgent=True)
    assert record.response_format["schema"]["properties"]["urgent"]["type"] == "boolean"
    assert record.response_format["method"] == "function_calling"
    assert record.tools[0].name == "Ticket"


def test_completion_model_call_is_recorded(memory_store):
    llm = FakeListLLM(responses=["Paris"])
    handler = LangChainTraceHandler(memory_store, agent="bot")

    llm.invoke("Capital of France?", config={"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.messages[0].role == "user"
    assert record.messages[0].content == "Capital of France?"
    assert record.response.content == "Paris"
    assert record.output_kind == "label"


def test_message_roles_and_names_convert(memory_store):
    model = ScriptedChatModel(responses=["fine"])
    handler = LangChainTraceHandler(memory_store, agent="bot")
    history = [
        SystemMessage("rules"),
        HumanMessage("hi", name="alice"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Rome"}, "id": "t1"}]),
        ToolMessage("sunny", tool_call_id="t1", name="get_weather"),
    ]

    model.invoke(history, config={"callbacks": [handler]})
    (record,) = memory_store.records()

    assert [message.role for message in record.messages] == ["system", "user", "assistant", "tool"]
    assert record.messages[1].name == "alice"
    assert record.messages[2].tool_calls[0].id == "t1"
    assert record.messages[3].tool_call_id == "t1"


def test_awkward_metadata_serialises(memory_store):
    model = ScriptedChatModel(responses=["ok"])
    handler = LangChainTraceHandler(memory_store, agent="bot")
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    metadata = {"lock": threading.Lock(), "raw": b"\x00\xff", "tags": {"b", "a"}, "cyclic": cyclic}

    model.invoke("hi", config={"callbacks": [handler], "metadata": metadata})
    (record,) = memory_store.records()
    restored = CallRecord.from_json(record.to_json())

    assert restored == record
    assert record.metadata["lock"].startswith("<_thread.lock")
    assert record.metadata["raw"] == {"type": "bytes", "size": 2, "base64": "AP8="}
    assert record.metadata["tags"] == ["a", "b"]
    assert "reference cycle" in record.metadata["cyclic"]["self"]


def test_long_payload_is_truncated(memory_store):
    model = ScriptedChatModel(responses=["x" * 500])
    handler = LangChainTraceHandler(memory_store, agent="bot", max_payload_chars=100)

    model.invoke("y" * 300, config={"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.messages[0].content.startswith("y" * 100 + TRUNCATION_MARKER)
    assert record.messages[0].content.endswith("300 chars]")
    assert record.response.content.startswith("x" * 100 + TRUNCATION_MARKER)
    assert record.metadata["truncated"] is True


def test_non_ascii_text_round_trips(memory_store):
    text = "Grüße aus Zürich: 東京 → Kraków, emoji 👩‍💻🚀, RTL مرحبا"
    model = ScriptedChatModel(responses=[text])
    handler = LangChainTraceHandler(memory_store, agent="bot")

    model.invoke(text, config={"callbacks": [handler]})
    (record,) = memory_store.records()
    restored = CallRecord.from_json(record.to_json())

    assert record.messages[0].content == text
    assert record.response.content == text
    assert restored.response.content == text
    assert text in record.to_json()


def test_failing_store_does_not_break_agent(memory_store):
    class BrokenStore:
        def add(self, record: CallRecord) -> bool:
            raise OSError("disk full")

        def flush(self, timeout: float | None = None) -> bool:
            return True

    model = ScriptedChatModel(responder=echo)
    handler = LangChainTraceHandler(BrokenStore(), agent="bot")

    result = three_node_graph(model).invoke(
        {"messages": [HumanMessage("hi")]}, {"callbacks": [handler]}
    )

    assert result["messages"][-1].content == "done"
    assert handler.stats.dropped == 3
    assert handler.stats.records == 0
    assert handler.active_runs == 0


def test_failing_redactor_drops_record(memory_store, caplog):
    def redactor(record: CallRecord) -> CallRecord:
        raise ValueError("analyzer crashed")

    model = ScriptedChatModel(responses=["my card is 4111 1111 1111 1111"])
    handler = LangChainTraceHandler(memory_store, agent="bot", redactor=redactor)

    model.invoke("hi", config={"callbacks": [handler]})

    assert memory_store.count() == 0
    assert handler.stats.redaction_failures == 1
    assert handler.stats.dropped == 1
    assert "4111" not in caplog.text
    assert "redactor" in caplog.text


def test_redactor_output_is_stored(memory_store):
    def redactor(record: CallRecord) -> CallRecord:
        return record.replace(
            response=record.response.__class__(role="assistant", content="<REDACTED>")
        )

    model = ScriptedChatModel(responses=["secret answer"])
    events = EventLog()
    handler = LangChainTraceHandler(
        memory_store, agent="bot", redactor=redactor, listeners=[events]
    )

    model.invoke("hi", config={"callbacks": [handler]})
    (record,) = memory_store.records()

    assert record.response.content == "<REDACTED>"
    assert events.ends[-1].record.response.content == "<REDACTED>"


def test_failing_listener_is_counted(memory_store):
    class BrokenListener:
        def on_run_start(self, event: RunStart) -> None:
            raise KeyError("boom")

        def on_run_end(self, event: RunEnd) -> None:
            raise KeyError("boom")

    model = ScriptedChatModel(responder=echo)
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[BrokenListener()])

    three_node_graph(model).invoke({"messages": [HumanMessage("hi")]}, {"callbacks": [handler]})

    assert memory_store.count() == 3
    assert handler.stats.listener_errors > 6


def test_interrupt_is_not_an_error(memory_store):
    model = ScriptedChatModel(responder=echo)

    def ask(state: State) -> dict:
        answer = model.invoke(state["messages"])
        approved = interrupt("approve?")
        return {"messages": [answer, AIMessage(str(approved))]}

    builder = StateGraph(State)
    builder.add_node("ask", ask)
    builder.add_edge(START, "ask")
    graph = builder.compile(checkpointer=InMemorySaver())
    events = EventLog()
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[events])
    config = {"callbacks": [handler], "configurable": {"thread_id": "t1"}}

    graph.invoke({"messages": [HumanMessage("hi")]}, config)
    graph.invoke(Command(resume="yes"), config)

    assert memory_store.count() == 2
    assert all(event.error is None for event in events.ends)
    assert handler.stats.internal_errors == 0
    assert handler.active_runs == 0


def test_state_is_freed_after_runs_errors_and_cancels(memory_store):
    class SlowModel(ScriptedChatModel):
        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs):
            await asyncio.sleep(30)
            raise AssertionError("the task should have been cancelled")

    events = EventLog()
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[events])
    three_node_graph(ScriptedChatModel(responder=echo)).invoke(
        {"messages": [HumanMessage("hi")]}, {"callbacks": [handler]}
    )
    with pytest.raises(ValueError, match="bad input"):
        three_node_graph(ScriptedChatModel(responses=[ValueError("bad input")])).invoke(
            {"messages": [HumanMessage("hi")]}, {"callbacks": [handler]}
        )

    async def cancel_mid_call() -> None:
        task = asyncio.create_task(
            async_graph(SlowModel()).ainvoke(
                {"messages": [HumanMessage("hi")]}, {"callbacks": [handler]}
            )
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_mid_call())
    cancelled = [
        record for record in memory_store.records() if record.error and "Cancelled" in record.error
    ]

    assert handler.active_runs == 0
    assert handler._runs == {}
    assert handler._model_runs == {}
    assert len(cancelled) == 1
    assert cancelled[0].node == "first"
    assert handler.stats.unmatched_events == 0
    assert sorted(event.run_id for event in events.starts) == sorted(
        event.run_id for event in events.ends
    )


def test_bad_options_raise(memory_store):
    with pytest.raises(TypeError, match="has no add method"):
        LangChainTraceHandler(object(), agent="bot")
    with pytest.raises(ValueError, match="max_payload_chars=0 is invalid"):
        LangChainTraceHandler(memory_store, agent="bot", max_payload_chars=0)
    with pytest.raises(TypeError, match="redactor='x' is not callable"):
        LangChainTraceHandler(memory_store, agent="bot", redactor="x")


def test_sqlite_store_receives_records(tmp_path):
    from slmshift.store import TraceStore

    store = TraceStore(tmp_path / "traces.db")
    text = "Grüße 👩‍💻 東京"
    model = ScriptedChatModel(
        responses=[
            tool_call_message("get_weather", {"city": text}),
            text_message(text, input_tokens=3, output_tokens=2),
            text,
        ]
    )
    handler = LangChainTraceHandler(store, agent="bot")

    three_node_graph(model).invoke({"messages": [HumanMessage(text)]}, {"callbacks": [handler]})
    assert handler.flush(timeout=10)
    records = list(store.records(agent="bot"))
    store.close()

    assert [record.node for record in records] == ["classify", "plan", "plan"]
    assert records[0].output_kind == "tool_call"
    assert records[0].response.tool_calls[0].arguments == {"city": text}
    assert records[0].messages[0].content == text
    assert records[1].usage.input_tokens == 3
    assert records[2].usage.input_tokens is None
    assert handler.stats.records == 3
    assert (tmp_path / "traces.db").stat().st_mode & 0o777 == 0o600


def test_parent_command_is_not_an_error(memory_store):
    model = ScriptedChatModel(responder=echo)

    def route(state: State) -> Command:
        answer = model.invoke([HumanMessage("route me")])
        return Command(goto="after", update={"messages": [answer]}, graph=Command.PARENT)

    inner = StateGraph(State)
    inner.add_node("route", route)
    inner.add_edge(START, "route")
    outer = StateGraph(State)
    outer.add_node("team", inner.compile())
    outer.add_node("after", lambda state: {"messages": [model.invoke([HumanMessage("after")])]})
    outer.add_edge(START, "team")
    events = EventLog()
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[events])

    outer.compile().invoke({"messages": []}, {"callbacks": [handler]})
    records = list(memory_store.records())

    assert [record.node for record in records] == ["team/route", "after"]
    assert all(record.error is None for record in records)
    assert all(event.error is None for event in events.ends)
    assert handler.active_runs == 0


def test_malformed_events_are_counted_not_raised(memory_store):
    handler = LangChainTraceHandler(memory_store, agent="bot")
    run_id = UUID(int=7)

    handler.on_chat_model_start({}, None, run_id=run_id)
    handler.on_llm_end(None, run_id=run_id)
    handler.on_chain_end({}, run_id=UUID(int=8))

    assert handler.stats.internal_errors == 1
    assert handler.stats.unmatched_events == 2
    assert memory_store.count() == 0


def test_record_id_is_model_run_id(memory_store):
    events = EventLog()
    handler = LangChainTraceHandler(memory_store, agent="bot", listeners=[events])

    ScriptedChatModel(responses=["ok"]).invoke("hi", config={"callbacks": [handler]})
    (record,) = memory_store.records()
    (start,) = [event for event in events.starts if event.kind == "llm"]

    assert record.id == str(start.run_id)
    assert events.ends[-1].record.id == record.id


def test_async_streamed_tool_arguments_are_joined(memory_store):
    args = {"city": "São Paulo", "units": "°C"}
    model = ScriptedChatModel(responses=[tool_call_message("get_weather", args)], chunk_chars=2)
    handler = LangChainTraceHandler(memory_store, agent="bot")

    async def consume() -> list:
        bound = model.bind_tools([get_weather])
        return [piece async for piece in bound.astream("weather?", config={"callbacks": [handler]})]

    pieces = asyncio.run(consume())
    (record,) = memory_store.records()

    assert sum(1 for piece in pieces if piece.tool_call_chunks) > 5
    assert record.response.tool_calls[0].arguments == args
    assert record.output_kind == "tool_call"
    assert handler.active_runs == 0


def test_fallback_inner_calls_not_recorded(memory_store):
    handler = LangChainTraceHandler(memory_store, agent="bot")
    model = ScriptedChatModel(responses=["inner answer"])

    model.invoke("hello", config={"callbacks": [handler], "tags": ["slmshift:inner"]})
    model.invoke("hello", config={"callbacks": [handler]})
    handler.flush()

    records = list(memory_store.records())
    assert len(records) == 1
    assert handler.stats.unmatched_events == 0
    assert handler.active_runs == 0

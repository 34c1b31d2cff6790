"""End to end: spans from a LangGraph agent and a LlamaIndex agent reach a real Arize Phoenix
server through the stock OTLP/HTTP exporter, with the right parentage and attributes.

Phoenix runs as a subprocess on 127.0.0.1 with telemetry and external resources off and a
temporary working directory (SQLite storage). The chat models are test doubles (the scripted
model in tests/fakes.py and llama-index-core's MockFunctionCallingLLM), because no hosted LLM
is reachable here.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool

from slmshift.callbacks.langchain import LangChainTraceHandler
from slmshift.integrations.opentelemetry import SpanListener, otlp_tracer_provider, span_export_stats
from slmshift.store.base import MemoryTraceStore
from tests.fakes import ScriptedChatModel

pytestmark = pytest.mark.phoenix

STARTUP_TIMEOUT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    http_port, grpc_port = _free_port(), _free_port()
    working_dir = tmp_path_factory.mktemp("phoenix")
    env = {
        **os.environ,
        "PHOENIX_TELEMETRY_ENABLED": "false",
        "PHOENIX_ALLOW_EXTERNAL_RESOURCES": "false",
        "PHOENIX_WORKING_DIR": str(working_dir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(http_port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
    }

    log = open(working_dir / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "phoenix.server.main", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{http_port}"

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            log.close()
            pytest.fail(f"Phoenix exited with {process.returncode}: {(working_dir / 'server.log').read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{base_url}/healthz", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"Phoenix did not start within {STARTUP_TIMEOUT_S} s")
            time.sleep(0.5)

    yield base_url
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


def _spans_of(base_url: str, project: str, expected: int) -> list[dict]:
    deadline = time.monotonic() + 20
    while True:
        try:
            spans = _get_json(f"{base_url}/v1/projects/{project}/spans?limit=1000")["data"]
        except urllib.error.HTTPError:
            spans = []
        if len(spans) >= expected or time.monotonic() > deadline:
            return spans
        time.sleep(0.3)


def _provider(base_url: str, project: str):
    return otlp_tracer_provider(
        base_url, service_name=project, resource_attributes={"openinference.project.name": project}
    )


def test_langgraph_agent_spans_reach_phoenix(phoenix):
    from langgraph.prebuilt import create_react_agent

    @tool
    def get_weather(city: str) -> str:
        """Return the weather in a city."""
        return f"sunny in {city}"

    call = AIMessage(
        content="",
        tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}],
        usage_metadata={"input_tokens": 12, "output_tokens": 4, "total_tokens": 16},
    )
    provider = _provider(phoenix, "langgraph-e2e")
    store = MemoryTraceStore()
    handler = LangChainTraceHandler(store, agent="weather")
    handler.add_listener(SpanListener(provider, agent="weather", capture_content=True))
    agent = create_react_agent(ScriptedChatModel(responses=[call, "It is sunny."]), [get_weather])

    agent.invoke({"messages": [HumanMessage("weather in Paris?")]}, {"callbacks": [handler]})
    assert provider.force_flush(10_000)
    stats = span_export_stats(provider)
    provider.shutdown()

    spans = _spans_of(phoenix, "langgraph-e2e", stats["exported"])
    assert stats["failed"] == 0
    assert len(spans) == stats["exported"]
    by_id = {span["context"]["span_id"]: span for span in spans}
    [root] = [span for span in spans if span["parent_id"] is None]
    assert root["name"] == "invoke_agent weather"
    assert {span["context"]["trace_id"] for span in spans} == {root["context"]["trace_id"]}
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 2
    for chat in chats:
        node = by_id[chat["parent_id"]]
        assert node["name"] == "agent"
        assert node["parent_id"] == root["context"]["span_id"]
        assert chat["attributes"]["langgraph.node"] == "agent"
        assert chat["span_kind"] == "LLM"
    first = min(chats, key=lambda span: span["start_time"])
    assert first["attributes"]["gen_ai.usage.input_tokens"] == 12
    assert first["attributes"]["gen_ai.request.model"] == "scripted-model"
    [tool_span] = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert tool_span["attributes"]["gen_ai.tool.name"] == "get_weather"
    assert by_id[tool_span["parent_id"]]["name"] == "tools"
    assert store.count() == 2


async def test_llama_index_agent_spans_reach_phoenix(phoenix):
    from llama_index.core.agent.workflow import FunctionAgent
    from llama_index.core.base.llms.types import ToolCallBlock
    from llama_index.core.llms import ChatMessage
    from llama_index.core.llms.mock import MockFunctionCallingLLM
    from llama_index.core.tools import FunctionTool

    from slmshift.callbacks.llama_index import LlamaIndexTraceHandler

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    def respond(messages, **kwargs):
        if any(m.role.value == "tool" for m in messages):
            return ChatMessage(role="assistant", content="The sum is 3.")
        block = ToolCallBlock(tool_call_id="call-add", tool_name="add", tool_kwargs={"a": 1, "b": 2})
        return ChatMessage(role="assistant", blocks=[block])

    agent = FunctionAgent(
        name="calculator",
        description="adds numbers",
        tools=[FunctionTool.from_defaults(add)],
        llm=MockFunctionCallingLLM(response_generator=respond),
    )
    provider = _provider(phoenix, "llamaindex-e2e")
    store = MemoryTraceStore()
    with LlamaIndexTraceHandler(store, agent="maths", tracer_provider=provider):
        await agent.run("add 1 and 2")
    assert provider.force_flush(10_000)
    stats = span_export_stats(provider)
    provider.shutdown()

    spans = _spans_of(phoenix, "llamaindex-e2e", stats["exported"])
    assert stats["failed"] == 0
    assert len(spans) == stats["exported"]
    by_id = {span["context"]["span_id"]: span for span in spans}
    [root] = [span for span in spans if span["parent_id"] is None]
    assert root["name"] == "invoke_agent maths"
    chats = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "chat"]
    assert len(chats) == 2
    for chat in chats:
        step = by_id[chat["parent_id"]]
        assert step["name"] == "invoke_agent calculator"
        assert step["parent_id"] == root["context"]["span_id"]
        assert chat["attributes"]["gen_ai.agent.name"] == "calculator"
    [tool_span] = [s for s in spans if s["attributes"].get("gen_ai.operation.name") == "execute_tool"]
    assert tool_span["attributes"]["gen_ai.tool.call.id"] == "call-add"
    assert tool_span["parent_id"] == root["context"]["span_id"]
    assert [r.node for r in store.records()] == ["calculator", "calculator"]

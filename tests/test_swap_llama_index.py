"""swap_agent_models and SLMLLM with real llama-index-core agents and workflows.

The original LLM is llama-index's `MockFunctionCallingLLM` (a hosted model cannot run here);
the SLM side is `SLMLLM` over a scripted generator and over the tiny trained local model.
"""

from __future__ import annotations

import asyncio

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.llms import MockLLM
from llama_index.core.llms.mock import MockFunctionCallingLLM
from llama_index.core.tools import FunctionTool

from conftest_swap_models import REVIEW, REVIEW_LABEL, WEATHER_QUESTION
from fakes_swap import ScriptedGenerator
from slmshift.converters.llama_index import AgentSwapError, swap_agent_models
from slmshift.integrations.llama_index import SLMLLM
from slmshift.records import Message, ToolCall
from slmshift.slm import load_slm
from slmshift.slm.base import Generation


def get_weather(city: str) -> str:
    """Return the weather in a city."""
    return f"sunny in {city}"


WEATHER = FunctionTool.from_defaults(get_weather)


def weather_slm() -> tuple[SLMLLM, ScriptedGenerator]:
    def answer(messages, tools):
        if messages[-1].role == "tool":
            return f"SLM says: {messages[-1].text}"
        call = ToolCall(name="get_weather", arguments={"city": "Oslo"}, id="call_1")
        return Generation(message=Message(role="assistant", content="", tool_calls=(call,)), input_tokens=9, output_tokens=4)

    generator = ScriptedGenerator(answer)
    return SLMLLM(generator=generator), generator


def run(agent, message: str) -> str:
    async def go():
        return str(await agent.run(user_msg=message))

    return asyncio.run(go())


def test_function_agent_swaps_and_calls_tools():
    original_llm = MockFunctionCallingLLM()
    agent = FunctionAgent(name="weather", description="Weather", tools=[WEATHER], llm=original_llm)
    slm, generator = weather_slm()

    swapped = swap_agent_models(agent, {"weather": slm})

    assert run(swapped, "weather in Oslo?") == "SLM says: sunny in Oslo"
    assert generator.calls[0]["tools"][0].name == "get_weather"
    assert agent.llm is original_llm
    assert swapped.llm is slm
    assert swapped.tools == agent.tools


def test_react_agent_swaps_llm():
    original_llm = MockLLM()
    agent = ReActAgent(name="react", description="Thinks", tools=[WEATHER], llm=original_llm)
    generator = ScriptedGenerator(lambda messages, tools: "Thought: I can answer without tools.\nAnswer: forty-two")

    swapped = swap_agent_models(agent, {"react": SLMLLM(generator=generator)})

    assert run(swapped, "what is six times seven?") == "forty-two"
    assert "get_weather" in generator.calls[0]["messages"][0].text
    assert agent.llm is original_llm


def test_agent_workflow_rebuilt_with_settings():
    root_llm, helper_llm = MockFunctionCallingLLM(), MockFunctionCallingLLM()
    root = FunctionAgent(name="root", description="Routes", tools=[WEATHER], llm=root_llm, can_handoff_to=["helper"])
    helper = FunctionAgent(name="helper", description="Helps", tools=[], llm=helper_llm)
    workflow = AgentWorkflow(agents=[root, helper], root_agent="root", initial_state={"tenant": "acme"}, timeout=30)
    slm, _ = weather_slm()

    swapped = swap_agent_models(workflow, {"root": slm})

    assert swapped is not workflow
    assert swapped.agents["root"].llm is slm
    assert swapped.agents["helper"] is helper
    assert workflow.agents["root"].llm is root_llm
    assert swapped.root_agent == "root"
    assert swapped.initial_state == {"tenant": "acme"}
    assert swapped._timeout == 30
    assert run(swapped, "weather in Oslo?") == "SLM says: sunny in Oslo"


def test_unknown_agent_raises():
    agent = FunctionAgent(name="weather", description="Weather", tools=[WEATHER], llm=MockFunctionCallingLLM())

    with pytest.raises(AgentSwapError, match=r"Agents \['billing'\] not found; the agents are \['weather'\]"):
        swap_agent_models(agent, {"billing": weather_slm()[0]})


def test_slm_llm_tool_call_from_tiny_model(tiny_hf_dir):
    llm = SLMLLM(generator=load_slm(tiny_hf_dir, max_new_tokens=40))

    response = llm.chat_with_tools([WEATHER], user_msg=WEATHER_QUESTION)
    calls = llm.get_tool_calls_from_response(response)

    assert [(call.tool_name, call.tool_kwargs) for call in calls] == [("get_weather", {"city": "Paris"})]
    assert any(isinstance(block, ToolCallBlock) for block in response.message.blocks)
    assert response.additional_kwargs["finish_reason"] == "tool_calls"


def test_slm_llm_chat_stream_and_complete(tiny_hf_dir):
    llm = SLMLLM(generator=load_slm(tiny_hf_dir, max_new_tokens=40))

    chat = llm.chat([ChatMessage(role="user", content=REVIEW)])
    streamed = list(llm.stream_chat([ChatMessage(role="user", content=REVIEW)]))
    completion = llm.complete(REVIEW)

    assert chat.message.content == REVIEW_LABEL
    assert chat.additional_kwargs["output_tokens"] >= 2
    assert 0 < chat.additional_kwargs["confidence"] <= 1
    assert streamed[-1].message.content == REVIEW_LABEL
    assert len(streamed) > 2
    assert completion.text == REVIEW_LABEL


def test_no_tool_call_raises_when_required():
    llm = SLMLLM(generator=ScriptedGenerator(lambda messages, tools: "no tools today"))
    response = llm.chat([ChatMessage(role="user", content="hi")])

    with pytest.raises(ValueError, match="Expected at least one tool call"):
        llm.get_tool_calls_from_response(response)

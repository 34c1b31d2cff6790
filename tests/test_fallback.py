"""FallbackChatModel: validation, traced decisions, shadow agreement, canary share, control flow.

The LLM is `ScriptedChatModel` (a hosted model cannot run here) and the SLM an `SLMChatModel`
over scripted generators, so each validation rule can be hit on purpose.
"""

from __future__ import annotations

import logging

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.tools import tool
from langgraph.errors import GraphInterrupt
from langgraph.types import Interrupt
from pydantic import BaseModel

from fakes_swap import ScriptedChatModel, ScriptedGenerator, constant_generator
from slmshift.integrations.fallback import FallbackChatModel
from slmshift.integrations.langchain import SLMChatModel
from slmshift.records import Message, ToolCall
from slmshift.slm.base import Generation
from slmshift.store.base import MemoryTraceStore


@tool
def refund(order_id: int) -> str:
    """Refund an order."""
    return "ok"


class Ticket(BaseModel):
    category: str
    urgent: bool


def slm_saying(text: str, **options) -> SLMChatModel:
    return SLMChatModel(generator=constant_generator(text, **options))


def tool_call_generator(name: str, arguments: dict) -> ScriptedGenerator:
    call = ToolCall(name=name, arguments=arguments, id="call_1")
    return ScriptedGenerator(lambda messages, tools: Generation(message=Message(role="assistant", content="", tool_calls=(call,))))


def decisions(store: MemoryTraceStore) -> list[tuple[str, str | None]]:
    return [(r.metadata["slmshift.decision"], r.metadata.get("slmshift.fallback_reason")) for r in store.records()]


def test_valid_label_is_served_by_slm():
    store = MemoryTraceStore()
    llm = ScriptedChatModel(responses=["billing"])
    model = FallbackChatModel(slm_saying("refund"), llm, validate={"labels": ["refund", "billing"]}, store=store)

    answer = model.invoke("money back please")

    assert answer.content == "refund"
    assert answer.response_metadata["slmshift"]["slmshift.served_by"] == "slm"
    assert llm.calls == []
    assert decisions(store) == [("slm", None)]
    assert store.records().__next__().model == "scripted-slm"


def test_invalid_label_falls_back_with_reason():
    store = MemoryTraceStore()
    llm = ScriptedChatModel(responses=["billing"])
    model = FallbackChatModel(slm_saying("weather"), llm, validate={"labels": ["refund", "billing"]}, store=store)

    answer = model.invoke("invoice question")

    assert answer.content == "billing"
    assert decisions(store) == [("fallback", "invalid_label")]
    record = next(store.records())
    assert record.model == "scripted-llm"
    assert record.metadata["slmshift.slm_response"]["content"] == "weather"
    assert record.response.content == "billing"


def test_low_confidence_falls_back():
    store = MemoryTraceStore()
    model = FallbackChatModel(
        slm_saying("refund", confidence=0.2), ScriptedChatModel(responses=["billing"]), min_confidence=0.5, store=store
    )

    assert model.invoke("x").content == "billing"
    assert decisions(store) == [("fallback", "low_confidence")]


def test_json_schema_mismatch_falls_back():
    store = MemoryTraceStore()
    schema = {"type": "object", "properties": {"category": {"type": "string"}}, "required": ["category"]}
    model = FallbackChatModel(
        slm_saying('{"cat": 1}'), ScriptedChatModel(responses=['{"category": "refund"}']), validate={"json_schema": schema}, store=store
    )

    assert model.invoke("x").content == '{"category": "refund"}'
    assert decisions(store) == [("fallback", "schema_mismatch")]


def test_slm_error_falls_back():
    store = MemoryTraceStore()

    def broken(messages, tools):
        raise RuntimeError("CUDA out of memory")

    model = FallbackChatModel(SLMChatModel(generator=ScriptedGenerator(broken)), ScriptedChatModel(responses=["ok"]), store=store)

    assert model.invoke("x").content == "ok"
    record = next(store.records())
    assert record.metadata["slmshift.fallback_reason"] == "slm_error"
    assert "CUDA out of memory" in record.metadata["slmshift.fallback_detail"]


def test_tools_bound_after_wrapping_reach_both_models():
    llm = ScriptedChatModel(responses=["unused"])
    slm_generator = tool_call_generator("refund", {"order_id": "not a number"})
    store = MemoryTraceStore()
    model = FallbackChatModel(SLMChatModel(generator=slm_generator), llm, store=store).bind_tools([refund], tool_choice="refund")

    llm.responses = [_llm_tool_call()]
    answer = model.invoke("refund order 12")

    assert answer.tool_calls[0]["args"] == {"order_id": 12}
    assert [tool.name for tool in slm_generator.calls[0]["tools"]] == ["refund"]
    assert llm.calls[0]["kwargs"]["tools"][0]["function"]["name"] == "refund"
    assert llm.calls[0]["kwargs"]["tool_choice"] == {"type": "function", "function": {"name": "refund"}}
    assert decisions(store) == [("fallback", "invalid_tool_arguments")]


def test_unknown_tool_falls_back():
    store = MemoryTraceStore()
    model = FallbackChatModel(
        SLMChatModel(generator=tool_call_generator("delete_account", {})), ScriptedChatModel(responses=[_llm_tool_call()]), store=store
    ).bind_tools([refund])

    model.invoke("refund order 12")

    assert decisions(store) == [("fallback", "unknown_tool")]


def test_valid_tool_call_served_by_slm():
    store = MemoryTraceStore()
    model = FallbackChatModel(
        SLMChatModel(generator=tool_call_generator("refund", {"order_id": 5})), ScriptedChatModel(responses=["unused"]), store=store
    ).bind_tools([refund])

    answer = model.invoke("refund order 5")

    assert answer.tool_calls[0]["args"] == {"order_id": 5}
    assert decisions(store) == [("slm", None)]
    assert next(store.records()).tools[0].name == "refund"


def test_structured_output_json_mode_falls_back_to_llm_structured_output():
    llm = ScriptedChatModel(responses=[_llm_tool_call("Ticket", {"category": "refund", "urgent": True})])
    slm = SLMChatModel(generator=constant_generator('{"category": "refund"}'), supports_tools=False)
    store = MemoryTraceStore()
    structured = FallbackChatModel(slm, llm, store=store).with_structured_output(Ticket)

    ticket = structured.invoke("refund now!")

    assert ticket == Ticket(category="refund", urgent=True)
    assert decisions(store) == [("fallback", "schema_mismatch")]
    assert llm.calls[0]["kwargs"]["tools"][0]["function"]["name"] == "Ticket"


def test_shadow_serves_llm_and_records_agreement():
    store = MemoryTraceStore()
    slm = SLMChatModel(generator=ScriptedGenerator(lambda messages, tools: "Refund" if "money" in messages[-1].text else "other"))
    llm = ScriptedChatModel(responses=["refund"])
    model = FallbackChatModel(slm, llm, mode="shadow", store=store)

    first = model.invoke("money back")
    second = model.invoke("hello")

    assert first.content == "refund"
    assert second.content == "refund"
    agreements = [record.metadata["slmshift.agreement"] for record in store.records()]
    assert agreements == [True, False]
    assert {record.metadata["slmshift.served_by"] for record in store.records()} == {"llm"}


def test_canary_share_is_deterministic_and_close():
    llm = ScriptedChatModel(responses=["llm"])
    model = FallbackChatModel(slm_saying("slm"), llm, mode="canary", canary_share=0.3, seed=7)
    prompts = [f"ticket number {index}" for index in range(300)]

    served = [model.invoke(prompt).content for prompt in prompts]
    again = [model.invoke(prompt).content for prompt in prompts[:50]]

    share = served.count("slm") / len(served)
    assert 0.2 < share < 0.4
    assert again == served[:50]
    assert set(served) == {"slm", "llm"}


def test_canary_llm_route_is_traced():
    store = MemoryTraceStore()
    model = FallbackChatModel(slm_saying("slm"), ScriptedChatModel(responses=["llm"]), mode="canary", canary_share=0.0, store=store)

    assert model.invoke("x").content == "llm"
    assert decisions(store) == [("canary_llm", None)]


def test_graph_interrupt_passes_through_without_fallback():
    def interrupting(messages, tools):
        raise GraphInterrupt((Interrupt(value="approve?"),))

    llm = ScriptedChatModel(responses=["llm"])
    store = MemoryTraceStore()
    model = FallbackChatModel(SLMChatModel(generator=ScriptedGenerator(interrupting)), llm, store=store)

    with pytest.raises(GraphInterrupt):
        model.invoke([HumanMessage("x")])
    assert llm.calls == []
    assert list(store.records()) == []


def test_store_failure_never_breaks_the_call(caplog):
    def failing_store(record):
        raise OSError("disk full")

    model = FallbackChatModel(slm_saying("refund"), ScriptedChatModel(responses=["x"]), store=failing_store)

    assert model.invoke("x").content == "refund"
    assert "Failed to record a fallback decision" in caplog.text


def test_invalid_mode_raises():
    with pytest.raises(ValueError, match="Invalid mode 'blue'"):
        FallbackChatModel(slm_saying("x"), ScriptedChatModel(responses=["x"]), mode="blue")


def test_invalid_canary_share_raises():
    with pytest.raises(ValueError, match="canary_share 1.5"):
        FallbackChatModel(slm_saying("x"), ScriptedChatModel(responses=["x"]), mode="canary", canary_share=1.5)


def _llm_tool_call(name: str = "refund", args: dict | None = None):
    from langchain_core.messages import AIMessage

    return AIMessage(content="", tool_calls=[{"name": name, "args": args or {"order_id": 12}, "id": "call_llm"}])



def test_slm_failure_log_has_no_message_text(caplog):
    # Built apart from the raise line, because the logged frames quote source lines.
    secret = "sk-live-" + "LEAKME123"

    def fail(messages, kwargs):
        raise RuntimeError(f"upstream said: Incorrect API key {secret}")

    model = FallbackChatModel(slm=ScriptedChatModel(script=fail), llm=ScriptedChatModel(responses=["ok"]))

    with caplog.at_level(logging.WARNING, logger="slmshift.integrations.fallback"):
        answer = model.invoke([HumanMessage("hello")])

    assert answer.content == "ok"
    assert "RuntimeError" in caplog.text
    assert "LEAKME" not in caplog.text

"""Test doubles for hosted LLMs, which cannot run here.

`ScriptedChatModel` answers from a script and binds tools the way provider integrations do
(tools converted to the OpenAI format, `tool_choice` in the OpenAI form), unlike the fakes in
langchain-core, whose `bind_tools` raises NotImplementedError. `ScriptedGenerator` is an
`SLMGenerator` with scripted answers, for tests of routing logic that need no real weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from slmshift.records import Message
from slmshift.slm.base import Generation, SLMManifest

Script = Callable[[list[BaseMessage], dict[str, Any]], AIMessage | str]


class ScriptedChatModel(BaseChatModel):
    """Answers with `script(messages, kwargs)`, or cycles through `responses`; logs every call."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = "scripted-llm"
    responses: list[Any] = Field(default_factory=list)
    script: Any = None
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools, *, tool_choice=None, **kwargs):
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if isinstance(tool_choice, str) and tool_choice not in ("auto", "none", "any", "required"):
            tool_choice = {"type": "function", "function": {"name": tool_choice}}
        elif tool_choice == "any":
            tool_choice = "required"
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.calls.append({"messages": list(messages), "kwargs": dict(kwargs)})
        if self.script is not None:
            answer = self.script(messages, kwargs)
        else:
            answer = self.responses[(len(self.calls) - 1) % len(self.responses)]
        if isinstance(answer, str):
            answer = AIMessage(content=answer)
        answer = answer.model_copy()
        answer.response_metadata = {**answer.response_metadata, "model_name": self.model_name, "finish_reason": "stop"}
        return ChatResult(generations=[ChatGeneration(message=answer)])


class ScriptedGenerator:
    """An `SLMGenerator` whose answers come from `script(messages, tools)`."""

    def __init__(self, script: Callable[..., Generation | str], *, name: str = "scripted-slm", supports_tools: bool = True) -> None:
        self.script = script
        self.name = name
        self.supports_tools = supports_tools
        self.manifest = SLMManifest(kind="compact", base_model="scripted")
        self.calls: list[dict[str, Any]] = []

    def generate(self, messages, *, tools=None, max_new_tokens=None) -> Generation:
        self.calls.append({"messages": messages, "tools": tools})
        answer = self.script(messages, tools)
        if isinstance(answer, str):
            answer = Generation(message=Message(role="assistant", content=answer), confidence=0.9, input_tokens=5, output_tokens=1)
        return answer


def constant_generator(text: str, *, confidence: float | None = 0.9, **options: Any) -> ScriptedGenerator:
    return ScriptedGenerator(
        lambda messages, tools: Generation(
            message=Message(role="assistant", content=text), confidence=confidence, input_tokens=7, output_tokens=2
        ),
        **options,
    )

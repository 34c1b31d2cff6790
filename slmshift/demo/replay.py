"""A LangChain chat model that replays recorded outputs in place of a hosted LLM.

No machine here reaches a hosted LLM, so the example agent's teacher is a `ReplayChatModel`:
it answers each request with the output recorded for it in a public dataset (a BANKING77
intent label, or a BFCL ground-truth function call). It behaves like a provider's chat model
in every other way that capture and swapping rely on: `bind_tools` binds OpenAI tool schemas as
the `tools` keyword, responses carry `usage_metadata` and `response_metadata`, and the
LangSmith parameters name a provider (`replay`) and a model.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

logger = logging.getLogger(__name__)

REPLAY_PROVIDER = "replay"
DEFAULT_REPLAY_MODEL = "replay-teacher"

# Rough English average used for the token estimate: one token per 4 characters.
CHARS_PER_TOKEN = 4

_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class ReplayMissError(LookupError):
    """The replay model has no recorded output for the request and no default."""


Answer = str | AIMessage


class ReplayChatModel(BaseChatModel):
    """A chat model that replays the datasets' recorded labels and tool calls.

    It replaces a hosted LLM, which cannot be reached here. The answer is looked up by the
    text of the last user message, stripped of surrounding whitespace: a string becomes the
    reply's text, an `AIMessage` is returned as recorded (tool calls included). A request with
    no recorded answer gets `default` when one is set, and raises `ReplayMissError` otherwise.

    Token counts in `usage_metadata` are estimates (words and punctuation, or characters / 4,
    whichever is larger), and `response_metadata["usage_is_estimate"]` says so.

    Attributes:
        answers: Recorded answers, keyed by the last user message's text.
        default: Answer for requests missing from `answers`, or a function of the request text;
            `None` makes a miss raise `ReplayMissError`.
        model_name: Model name reported to callbacks and in response metadata.
        latency_ms: Simulated latency per call in milliseconds; 0 (the default) adds none.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    answers: Mapping[str, Answer] = Field(default_factory=dict)
    # Typed Any because pydantic would try to coerce a function into an AIMessage.
    default: Any = None
    model_name: str = DEFAULT_REPLAY_MODEL
    latency_ms: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "replay-recorded-dataset-outputs"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "recorded_answers": len(self.answers)}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = LangSmithParams(
            ls_provider=REPLAY_PROVIDER, ls_model_name=self.model_name, ls_model_type="chat"
        )
        if stop:
            params["ls_stop"] = stop
        return params

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind `tools` as OpenAI tool schemas, the way hosted providers' chat models do."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = _normalise_tool_choice(tool_choice)
        return self.bind(tools=formatted, **kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        request = _last_user_text(messages)
        answer = self._lookup(request)
        reply = _as_message(answer)
        _check_tool_names(reply, kwargs.get("tools"), request)

        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000)

        reply = _with_usage(reply, messages, kwargs.get("tools"), self.model_name)
        return ChatResult(generations=[ChatGeneration(message=reply)])

    def _lookup(self, request: str) -> Answer:
        answer = self.answers.get(request)
        if answer is not None:
            return answer
        if self.default is None:
            raise ReplayMissError(
                f"The replay model {self.model_name!r} has no recorded answer for the request "
                f"{request[:80]!r}: record one in `answers` or set `default`."
            )
        return self.default(request) if callable(self.default) else self.default


def _normalise_tool_choice(tool_choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(tool_choice, dict) or tool_choice in ("auto", "none", "required"):
        return tool_choice
    if tool_choice == "any":
        return "required"
    return {"type": "function", "function": {"name": tool_choice}}


def _last_user_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.text.strip()
    raise ReplayMissError(
        "The replay model received no user message: it looks answers up by the last user "
        "message's text, so send at least one."
    )


def _as_message(answer: Answer) -> AIMessage:
    if isinstance(answer, AIMessage):
        calls = [{**call, "id": call.get("id") or f"call_{uuid.uuid4().hex[:12]}"} for call in answer.tool_calls]
        return answer.model_copy(update={"tool_calls": calls})
    if isinstance(answer, str):
        return AIMessage(content=answer)
    raise TypeError(
        f"Invalid replay answer of type {type(answer).__name__}: use a string or an AIMessage."
    )


def _check_tool_names(reply: AIMessage, tools: Any, request: str) -> None:
    if not reply.tool_calls:
        return
    offered = {tool["function"]["name"] for tool in tools or () if "function" in tool}
    for call in reply.tool_calls:
        if call["name"] not in offered:
            raise ReplayMissError(
                f"The recorded answer to {request[:80]!r} calls {call['name']!r}, which is not "
                f"among the bound tools ({', '.join(sorted(offered)) or 'none'}): bind it with "
                "bind_tools before invoking."
            )


def estimate_tokens(text: str) -> int:
    """Return a token-count estimate for `text`: words and punctuation, or characters / 4."""
    if not text:
        return 0
    return max(len(_WORD.findall(text)), -(-len(text) // CHARS_PER_TOKEN))


def _with_usage(
    reply: AIMessage, messages: Sequence[BaseMessage], tools: Any, model_name: str
) -> AIMessage:
    input_text = "\n".join(message.text for message in messages)
    if tools:
        input_text += "\n" + repr(tools)
    output_text = reply.text + "".join(repr(call["args"]) + call["name"] for call in reply.tool_calls)

    input_tokens = estimate_tokens(input_text)
    output_tokens = max(1, estimate_tokens(output_text))
    finish_reason = "tool_calls" if reply.tool_calls else "stop"
    return reply.model_copy(
        update={
            "usage_metadata": {
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
            "response_metadata": {
                **reply.response_metadata,
                "model_name": model_name,
                "model_provider": REPLAY_PROVIDER,
                "finish_reason": finish_reason,
                "usage_is_estimate": True,
            },
        }
    )

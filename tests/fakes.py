"""Test doubles for hosted chat models, which cannot be reached from the test machines.

`ScriptedChatModel` responds from a script, or from a function of the messages, and behaves
like a real provider where slmshift looks: `bind_tools` converts tools to OpenAI tool schemas
and binds them as the `tools` keyword (langchain-core's own fake models raise
`NotImplementedError` there), responses carry `usage_metadata`, `response_metadata` with a
model name and finish reason, and streaming yields text in pieces and tool-call arguments as
`tool_call_chunks` split mid-JSON, with usage on the last chunk.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.base import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field, PrivateAttr

Script = AIMessage | str | BaseException
Responder = Callable[[list[BaseMessage]], Script]


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays `responses` in order (cycling), or calls `responder`.

    A script entry is an `AIMessage` (tool calls and `usage_metadata` included), a string
    (a plain text response), or an exception to raise. `chunk_chars` sets the size of streamed
    text and argument pieces; `fail_after_chunks` makes a stream raise after that many chunks.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    responses: Sequence[Any] = ()
    responder: Any = None
    model_name: str = "scripted-model"
    provider: str = "scripted"
    chunk_chars: int = 4
    fail_after_chunks: int | None = None
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    _cycle: Iterator[Script] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "scripted-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = self.provider
        params["ls_model_name"] = self.model_name
        return params

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Bind tools the way OpenAI-compatible providers do: OpenAI schemas under `tools`."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = _openai_tool_choice(tool_choice)
        return self.bind(tools=formatted, **kwargs)

    def next_response(self, messages: list[BaseMessage]) -> AIMessage:
        """Take the next scripted response, raising it when it is an exception."""
        with self._lock:
            self.calls.append(list(messages))
            if self.responder is not None:
                script = self.responder(messages)
            else:
                if self._cycle is None:
                    self._cycle = itertools.cycle(self.responses or ["ok"])
                script = next(self._cycle)
        if isinstance(script, BaseException):
            raise script
        message = AIMessage(content=script) if isinstance(script, str) else script
        finish = "tool_calls" if message.tool_calls else "stop"
        metadata = {
            "model_name": self.model_name,
            "finish_reason": finish,
            **message.response_metadata,
        }
        return message.model_copy(update={"response_metadata": metadata})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self.next_response(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self.next_response(messages)
        for index, chunk in enumerate(split_into_chunks(message, self.chunk_chars)):
            if self.fail_after_chunks is not None and index >= self.fail_after_chunks:
                raise RuntimeError(f"stream broke after {index} chunks")
            yield ChatGenerationChunk(message=chunk)


def split_into_chunks(message: AIMessage, size: int) -> list[AIMessageChunk]:
    """Split `message` like a provider stream: text pieces, then argument pieces per tool call."""
    text = message.content if isinstance(message.content, str) else ""
    chunks = [
        AIMessageChunk(content=text[start : start + size]) for start in range(0, len(text), size)
    ]
    for index, call in enumerate(message.tool_calls):
        arguments = json.dumps(call["args"], ensure_ascii=False)
        pieces = [arguments[start : start + size] for start in range(0, len(arguments), size)] or [
            ""
        ]
        for number, piece in enumerate(pieces):
            first = number == 0
            chunks.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {
                            "name": call["name"] if first else None,
                            "args": piece,
                            "id": call.get("id") if first else None,
                            "index": index,
                        }
                    ],
                )
            )
    final = AIMessageChunk(content="", response_metadata=dict(message.response_metadata))
    if message.usage_metadata is not None:
        final = AIMessageChunk(
            content="",
            usage_metadata=message.usage_metadata,
            response_metadata=dict(message.response_metadata),
        )
    chunks.append(final)
    return chunks


def _openai_tool_choice(tool_choice: Any) -> Any:
    if tool_choice in ("auto", "none", "required"):
        return tool_choice
    if tool_choice in ("any", True):
        return "required"
    if isinstance(tool_choice, str):
        return {"type": "function", "function": {"name": tool_choice}}
    return tool_choice


def tool_call_message(
    name: str, args: dict[str, Any], *, call_id: str = "call_1", usage: dict[str, int] | None = None
) -> AIMessage:
    """Build a response that is only a tool call, as providers return it (empty text)."""
    message = AIMessage(
        content="", tool_calls=[{"name": name, "args": args, "id": call_id, "type": "tool_call"}]
    )
    if usage is not None:
        message.usage_metadata = {
            **usage,
            "total_tokens": usage["input_tokens"] + usage["output_tokens"],
        }
    return message


def text_message(
    text: str, *, input_tokens: int | None = None, output_tokens: int | None = None
) -> AIMessage:
    """Build a text response, with usage when both counts are given."""
    message = AIMessage(content=text)
    if input_tokens is not None and output_tokens is not None:
        message.usage_metadata = {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens,
        }
    return message

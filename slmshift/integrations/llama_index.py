"""`SLMLLM`: a LlamaIndex function-calling LLM served by any slmshift SLM generator.

It drives `FunctionAgent` (tools arrive through `chat_with_tools`, tool calls come back as
`ToolCallBlock`s), `ReActAgent` (plain chat) and plain `chat`, `complete` and streaming calls.
Token usage, the finish reason and the generator's confidence are reported in
`ChatResponse.additional_kwargs` and `raw`, where LlamaIndex providers put them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from pydantic import ConfigDict, Field

from slmshift.records import Message, ToolCall, ToolDefinition
from slmshift.slm.base import Generation, SLMGenerator

logger = logging.getLogger(__name__)

DEFAULT_CONTEXT_WINDOW = 4096
_ROLES = {
    MessageRole.SYSTEM: "system",
    MessageRole.DEVELOPER: "system",
    MessageRole.USER: "user",
    MessageRole.ASSISTANT: "assistant",
    MessageRole.TOOL: "tool",
    MessageRole.FUNCTION: "tool",
}


class SLMLLM(FunctionCallingLLM):
    """A LlamaIndex LLM over an `SLMGenerator`; see the module docstring."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any = Field(exclude=True)
    model_name: str | None = None
    max_new_tokens: int | None = None
    context_window: int = DEFAULT_CONTEXT_WINDOW
    supports_tools: bool | None = None

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        if not isinstance(self.generator, SLMGenerator):
            raise TypeError(
                f"SLMLLM needs an SLMGenerator, got {type(self.generator).__name__}: "
                "load one with slmshift.slm.load_slm(directory)."
            )
        if self.model_name is None:
            self.model_name = self.generator.name
        if self.supports_tools is None:
            self.supports_tools = bool(getattr(self.generator, "supports_tools", True))

    @classmethod
    def class_name(cls) -> str:
        return "SLMLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.max_new_tokens or 256,
            is_chat_model=True,
            is_function_calling_model=bool(self.supports_tools),
            model_name=self.model_name or "slm",
        )

    # -- chat ---------------------------------------------------------------------------------

    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        generation = self.generator.generate(
            to_record_messages(messages), tools=_tool_definitions(kwargs.get("tools")), max_new_tokens=self.max_new_tokens
        )
        return _chat_response(generation)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Stream text deltas; with tools bound, the answer comes whole because a partial tool call cannot be parsed."""
        tools = _tool_definitions(kwargs.get("tools"))
        stream = getattr(self.generator, "stream", None)
        record_messages = to_record_messages(messages)

        def whole() -> ChatResponseGen:
            response = _chat_response(self.generator.generate(record_messages, tools=tools, max_new_tokens=self.max_new_tokens))
            response.delta = response.message.content or ""
            yield response

        def deltas() -> ChatResponseGen:
            text = ""
            for item in stream(record_messages, tools=None, max_new_tokens=self.max_new_tokens):
                if isinstance(item, Generation):
                    final = _chat_response(item)
                    final.delta = ""
                    yield final
                    return
                text += item
                yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=text), delta=item)

        return whole() if tools or stream is None else deltas()

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await asyncio.to_thread(self.chat, messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        responses = await asyncio.to_thread(lambda: list(self.stream_chat(messages, **kwargs)))

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            for response in responses:
                yield response

        return gen()

    # -- completion ---------------------------------------------------------------------------

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        response = self.chat([ChatMessage(role=MessageRole.USER, content=prompt)])
        return CompletionResponse(text=response.message.content or "", raw=response.raw, additional_kwargs=response.additional_kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        def gen() -> CompletionResponseGen:
            for response in self.stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)]):
                yield CompletionResponse(text=response.message.content or "", delta=response.delta, additional_kwargs=response.additional_kwargs)

        return gen()

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await asyncio.to_thread(self.complete, prompt, formatted, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseAsyncGen:
        responses = await asyncio.to_thread(lambda: list(self.stream_complete(prompt, formatted, **kwargs)))

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            for response in responses:
                yield response

        return gen()

    # -- tools --------------------------------------------------------------------------------

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        specs = [tool.metadata.to_openai_tool() for tool in tools]
        choice = kwargs.get("tool_choice")
        if isinstance(choice, str) and choice not in ("auto", "none", "required", "any"):
            specs = [spec for spec in specs if spec["function"]["name"] == choice] or specs
        return {"messages": messages, "tools": specs or None}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = [block for block in response.message.blocks if isinstance(block, ToolCallBlock)]
        if not calls and error_on_no_tool_call:
            raise ValueError(f"Expected at least one tool call, got the response {response.message.content!r:.200}.")
        return [
            ToolSelection(
                tool_id=block.tool_call_id or "",
                tool_name=block.tool_name,
                tool_kwargs=block.tool_kwargs if isinstance(block.tool_kwargs, dict) else {},
            )
            for block in calls
        ]


def to_record_messages(messages: Sequence[ChatMessage]) -> list[Message]:
    """Convert LlamaIndex chat messages, tool-call blocks and tool results included."""
    converted = []
    for message in messages:
        calls = tuple(
            ToolCall(
                name=block.tool_name,
                arguments=block.tool_kwargs if isinstance(block.tool_kwargs, dict) else {},
                id=block.tool_call_id,
                arguments_raw=block.tool_kwargs if isinstance(block.tool_kwargs, str) else None,
            )
            for block in message.blocks
            if isinstance(block, ToolCallBlock)
        )
        converted.append(
            Message(
                role=_ROLES.get(message.role, "user"),
                content=message.content or "",
                tool_calls=calls,
                tool_call_id=message.additional_kwargs.get("tool_call_id"),
            )
        )
    return converted


def _tool_definitions(tools: Sequence[dict[str, Any]] | None) -> list[ToolDefinition] | None:
    if not tools:
        return None
    return [ToolDefinition.from_dict(tool) for tool in tools]


def _chat_response(generation: Generation) -> ChatResponse:
    message = generation.message
    blocks: list[Any] = []
    if message.text:
        blocks.append(TextBlock(text=message.text))
    blocks.extend(
        ToolCallBlock(tool_call_id=call.id, tool_name=call.name, tool_kwargs=call.arguments or (call.arguments_raw or {}))
        for call in message.tool_calls
    )
    usage = {"input_tokens": generation.input_tokens, "output_tokens": generation.output_tokens}
    details = {"usage": usage, "finish_reason": generation.finish_reason, "confidence": generation.confidence}
    return ChatResponse(
        message=ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks),
        raw=details,
        additional_kwargs={**usage, "finish_reason": generation.finish_reason, "confidence": generation.confidence},
    )

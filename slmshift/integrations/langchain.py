"""`SLMChatModel`: a LangChain chat model served by any slmshift SLM generator.

The model behaves like a provider integration: `bind_tools` takes tools in any LangChain form,
the generator renders them into its chat template and tool calls come back as standard
`AIMessage.tool_calls`; `with_structured_output` uses tool calling, or JSON mode with schema
validation when the generator cannot call tools; answers carry `usage_metadata`, a
`finish_reason` and the generator's `confidence` in `response_metadata`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import LangSmithParams
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from slmshift.integrations._lc_messages import (
    to_langchain_message,
    to_record_messages,
    to_tool_definitions,
    tool_choice_name,
)
from slmshift.integrations._structured import (
    json_mode_structured_output,
    json_schema_from_response_format,
)
from slmshift.records import Message, ToolDefinition
from slmshift.slm.base import Generation, SLMGenerator
from slmshift.slm.toolcalls import parse_tool_calls

logger = logging.getLogger(__name__)

PROVIDER = "slmshift"
JSON_INSTRUCTION = "Answer with one JSON object only, matching this JSON schema:\n{schema}"
JSON_MODE_INSTRUCTION = "Answer with one JSON object only."


class SLMChatModel(BaseChatModel):
    """A chat model that answers with a local or remote SLM generator.

    Args:
        generator: Any `SLMGenerator` (from `slmshift.slm.load_slm`, or the OpenAI-compatible
            generator in `slmshift.integrations.openai_compat`).
        model_name: Name reported in traces; defaults to the generator's name.
        max_new_tokens: Generation limit per call; `None` leaves it to the generator.
        supports_tools: Whether the generator was trained to call tools; defaults to the
            generator's own `supports_tools` attribute, else True. When False,
            `with_structured_output` uses JSON mode.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    generator: Any = Field(exclude=True)
    model_name: str | None = None
    max_new_tokens: int | None = None
    supports_tools: bool | None = None

    def model_post_init(self, context: Any) -> None:
        if not isinstance(self.generator, SLMGenerator):
            raise TypeError(
                f"SLMChatModel needs an SLMGenerator, got {type(self.generator).__name__}: "
                "load one with slmshift.slm.load_slm(directory)."
            )
        if self.model_name is None:
            self.model_name = self.generator.name
        if self.supports_tools is None:
            self.supports_tools = bool(getattr(self.generator, "supports_tools", True))

    @property
    def _llm_type(self) -> str:
        return "slmshift-slm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = PROVIDER
        params["ls_model_name"] = self.model_name or ""
        return params

    # -- binding ------------------------------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Any],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in the OpenAI format; `tool_choice` may be a name, `auto`, `any` or `none`."""
        if not self.supports_tools:
            logger.warning(
                "SLM %s was not trained to call tools; its tool calls may be unreliable.",
                self.model_name,
            )
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        choice = tool_choice_name(tool_choice)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Return a runnable that answers with `schema`.

        `method` is `function_calling` (a forced tool call) or `json_schema` / `json_mode`
        (a JSON answer validated against the schema); by default tool calling when the
        generator supports tools, else JSON mode.
        """
        if method is None:
            method = "function_calling" if self.supports_tools else "json_schema"
        if method in ("json_schema", "json_mode"):
            return json_mode_structured_output(self, schema, include_raw=include_raw)
        if method != "function_calling":
            raise ValueError(
                f"Unsupported structured-output method {method!r}: use function_calling, "
                "json_schema or json_mode."
            )
        return super().with_structured_output(schema, include_raw=include_raw, **kwargs)

    # -- generation ---------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        record_messages, tools = self._prepare(messages, kwargs)
        generation = self.generator.generate(
            record_messages, tools=tools or None, max_new_tokens=self.max_new_tokens
        )
        message = self._to_ai_message(generation, tools, stop)
        info = {"finish_reason": message.response_metadata["finish_reason"]}
        if generation.confidence is not None:
            info["confidence"] = generation.confidence
        return ChatResult(
            generations=[ChatGeneration(message=message, generation_info=info)],
            llm_output={"model_name": self.model_name, "token_usage": dict(message.usage_metadata or {})},
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        """Stream text as it is generated; answers that may be tool calls or JSON come whole.

        Text deltas are only streamed when no tools or response format are bound and the
        generator has a `stream` method, because a partial tool call cannot be parsed.
        """
        record_messages, tools = self._prepare(messages, kwargs)
        stream = getattr(self.generator, "stream", None)
        if tools or stop or kwargs.get("response_format") or stream is None:
            result = self._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
            message = result.generations[0].message
            chunk = AIMessageChunk(
                content=message.content,
                tool_call_chunks=[
                    {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": index}
                    for index, call in enumerate(message.tool_calls)
                ],
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
                chunk_position="last",
            )
            if run_manager and message.content:
                run_manager.on_llm_new_token(str(message.content))
            yield ChatGenerationChunk(message=chunk)
            return

        final: Generation | None = None
        for item in stream(record_messages, tools=None, max_new_tokens=self.max_new_tokens):
            if isinstance(item, Generation):
                final = item
                continue
            if run_manager:
                run_manager.on_llm_new_token(item)
            yield ChatGenerationChunk(message=AIMessageChunk(content=item))
        if final is None:
            raise RuntimeError(f"SLM {self.model_name} stream ended without a final generation.")
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=_usage(final),
                response_metadata=self._response_metadata(final, final.finish_reason),
                chunk_position="last",
            )
        )

    def _prepare(
        self, messages: list[BaseMessage], kwargs: dict[str, Any]
    ) -> tuple[list[Message], list[ToolDefinition]]:
        record_messages = to_record_messages(messages)
        tools = to_tool_definitions(kwargs.get("tools"))
        choice = tool_choice_name(kwargs.get("tool_choice"))
        if choice == "none":
            tools = []
        elif choice not in (None, "auto", "any"):
            tools = [tool for tool in tools if tool.name == choice] or tools

        response_format = kwargs.get("response_format")
        if response_format:
            schema = json_schema_from_response_format(response_format)
            instruction = (
                JSON_INSTRUCTION.format(schema=json.dumps(schema, ensure_ascii=False))
                if schema is not None
                else JSON_MODE_INSTRUCTION
            )
            record_messages = _with_system_instruction(record_messages, instruction)
        return record_messages, tools

    def _to_ai_message(
        self, generation: Generation, tools: list[ToolDefinition], stop: list[str] | None
    ) -> AIMessage:
        message = generation.message
        if tools and not message.tool_calls:
            text, calls = parse_tool_calls(message.text, {tool.name for tool in tools})
            message = Message(role="assistant", content=text, tool_calls=tuple(calls))
        if stop and not message.tool_calls:
            message = Message(role="assistant", content=_cut_at_stop(message.text, stop))

        finish_reason = "tool_calls" if message.tool_calls else generation.finish_reason
        ai_message = to_langchain_message(Message(role="assistant", content=message.content, tool_calls=message.tool_calls))
        ai_message.usage_metadata = _usage(generation)
        ai_message.response_metadata = self._response_metadata(generation, finish_reason)
        return ai_message

    def _response_metadata(self, generation: Generation, finish_reason: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "model_name": self.model_name,
            "model_provider": PROVIDER,
            "finish_reason": finish_reason,
            "confidence": generation.confidence,
        }
        if generation.latency_ms is not None:
            metadata["latency_ms"] = generation.latency_ms
        return metadata


def _usage(generation: Generation) -> UsageMetadata | None:
    if generation.input_tokens is None or generation.output_tokens is None:
        return None
    return UsageMetadata(
        input_tokens=generation.input_tokens,
        output_tokens=generation.output_tokens,
        total_tokens=generation.input_tokens + generation.output_tokens,
    )


def _with_system_instruction(messages: list[Message], instruction: str) -> list[Message]:
    if messages and messages[0].role == "system":
        first = messages[0]
        return [Message(role="system", content=f"{first.text}\n\n{instruction}"), *messages[1:]]
    return [Message(role="system", content=instruction), *messages]


def _cut_at_stop(text: str, stop: list[str]) -> str:
    positions = [text.find(word) for word in stop if word and word in text]
    return text[: min(positions)] if positions else text

"""Convert LangChain messages, tools and results into the parts of a `CallRecord`.

Imports of langchain-core stay out of this module: it reads message attributes by name, so
it also accepts message-like objects and costs nothing to import.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from slmshift.callbacks._serialize import to_jsonable_with_flag, truncate_text
from slmshift.records import Message, ToolCall, ToolDefinition, Usage

logger = logging.getLogger(__name__)

# LangChain message `type` values and chat roles mapped to our roles.
_ROLE_BY_TYPE = {
    "system": "system",
    "developer": "system",
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "AIMessageChunk": "assistant",
    "HumanMessageChunk": "user",
    "SystemMessageChunk": "system",
    "ToolMessageChunk": "tool",
    "FunctionMessageChunk": "tool",
}
_EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


class PayloadLimiter:
    """Applies the handler's size limit to every payload of one record and notes truncation."""

    __slots__ = ("max_chars", "truncated")

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.truncated = False

    def text(self, value: str) -> str:
        if len(value) <= self.max_chars:
            return value
        self.truncated = True
        return truncate_text(value, self.max_chars)

    def json(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.text(value)
        if kind is int or kind is bool or value is None:
            return value
        converted, truncated = to_jsonable_with_flag(value, max_chars=self.max_chars)
        self.truncated = self.truncated or truncated
        return converted

    def flat_mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Convert a mapping of mostly scalars and string tuples, such as run metadata.

        This is the per-call hot path: plain values are copied without the general
        conversion, and anything else goes through `json`.
        """
        converted: dict[str, Any] = {}
        for key, value in values.items():
            kind = type(value)
            if kind is str:
                converted[key] = self.text(value)
            elif kind is int or kind is bool or value is None:
                converted[key] = value
            elif (kind is tuple or kind is list) and self._short_strings(value):
                converted[key] = list(value)
            else:
                converted[key] = self.json(value)
        return converted

    def _short_strings(self, values: tuple[Any, ...] | list[Any]) -> bool:
        for item in values:
            if type(item) is not str or len(item) > self.max_chars:
                return False
        return True


def convert_messages(
    messages: Sequence[Any], limiter: PayloadLimiter
) -> tuple[tuple[Message, ...], dict[int, str]]:
    """Convert LangChain messages.

    Also returns, by message index, the original role of messages whose role had no equivalent.
    """
    converted = []
    unmapped_roles: dict[int, str] = {}
    for index, message in enumerate(messages):
        item, original_role = convert_message(message, limiter)
        converted.append(item)
        if original_role is not None:
            unmapped_roles[index] = original_role
    return tuple(converted), unmapped_roles


def convert_message(message: Any, limiter: PayloadLimiter) -> tuple[Message, str | None]:
    """Convert one LangChain message; also return its role when it had to be mapped to `user`."""
    message_type = getattr(message, "type", None)
    if message_type in ("chat", "ChatMessageChunk"):
        message_type = getattr(message, "role", None)
    role = _ROLE_BY_TYPE.get(message_type or "")
    original_role = None
    if role is None:
        role, original_role = "user", str(message_type)

    content = getattr(message, "content", None)
    content = limiter.text(content) if type(content) is str else limiter.json(content)
    return (
        Message(
            role=role,
            content=content,
            tool_calls=convert_tool_calls(message, limiter) if role == "assistant" else (),
            # Only tool messages have the attribute; a miss on a pydantic message is slow.
            tool_call_id=getattr(message, "tool_call_id", None) if role == "tool" else None,
            name=getattr(message, "name", None),
        ),
        original_role,
    )


def convert_tool_calls(message: Any, limiter: PayloadLimiter) -> tuple[ToolCall, ...]:
    """Tool calls of an AI message, the unparsable ones included with their raw argument text."""
    calls = [
        ToolCall(
            name=call.get("name") or "",
            arguments=_arguments(call.get("args"), limiter),
            id=call.get("id"),
        )
        for call in getattr(message, "tool_calls", None) or ()
    ]
    for call in getattr(message, "invalid_tool_calls", None) or ():
        raw = call.get("args")
        calls.append(
            ToolCall(
                name=call.get("name") or "",
                arguments={},
                id=call.get("id"),
                arguments_raw=limiter.text(raw) if isinstance(raw, str) else None,
            )
        )
    return tuple(calls)


def _arguments(args: Any, limiter: PayloadLimiter) -> dict[str, Any]:
    if not args:
        return {}
    converted = limiter.json(args)
    return converted if isinstance(converted, dict) else {"value": converted}


def convert_prompt(prompt: str, limiter: PayloadLimiter) -> Message:
    """Return a completion-model prompt as a single user message."""
    return Message(role="user", content=limiter.text(prompt))


def convert_tools(
    tools: Any, limiter: PayloadLimiter
) -> tuple[tuple[ToolDefinition, ...], list[Any]]:
    """Normalise provider-format tools; also return the tools that no known format matched."""
    definitions = []
    unrecognised = []
    for tool in tools or ():
        definition = convert_tool(tool, limiter)
        if definition is None:
            unrecognised.append(limiter.json(tool))
        else:
            definitions.append(definition)
    return tuple(definitions), unrecognised


def convert_tool(tool: Any, limiter: PayloadLimiter) -> ToolDefinition | None:
    """Convert one tool in OpenAI, Responses, Anthropic, Bedrock Converse or Gemini format."""
    if not isinstance(tool, Mapping):
        return _convert_tool_object(tool, limiter)
    spec = tool
    if isinstance(tool.get("function"), Mapping):  # OpenAI chat completions
        spec = tool["function"]
    elif isinstance(tool.get("toolSpec"), Mapping):  # Bedrock Converse
        spec = tool["toolSpec"]
    elif (
        isinstance(tool.get("function_declarations"), list)
        and len(tool["function_declarations"]) == 1
    ):
        spec = tool["function_declarations"][0]  # Gemini
    name = spec.get("name")
    if not isinstance(name, str):
        return None
    parameters = spec.get("parameters") or spec.get("input_schema") or spec.get("inputSchema")
    if isinstance(parameters, Mapping) and isinstance(parameters.get("json"), Mapping):
        parameters = parameters["json"]  # Bedrock wraps the schema in {"json": ...}
    return ToolDefinition(
        name=name,
        description=limiter.text(str(spec.get("description") or "")),
        parameters=limiter.json(parameters) if parameters is not None else dict(_EMPTY_PARAMETERS),
    )


def _convert_tool_object(tool: Any, limiter: PayloadLimiter) -> ToolDefinition | None:
    # A BaseTool, pydantic class or function bound without conversion.
    try:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        return convert_tool(convert_to_openai_tool(tool), limiter)
    except Exception:  # noqa: BLE001 - an unknown tool form is reported as unrecognised
        logger.debug("Tool of type %s has no known schema form", type(tool).__name__, exc_info=True)
        return None


def convert_response_format(
    options: Mapping[str, Any] | None, params: Mapping[str, Any] | None, limiter: PayloadLimiter
) -> dict[str, Any] | None:
    """Return the structured-output request.

    The source is LangChain's `ls_structured_output_format` option, else a `response_format`
    invocation parameter.
    """
    structured = (options or {}).get("ls_structured_output_format")
    if isinstance(structured, Mapping):
        form = {"schema": limiter.json(structured.get("schema"))}
        kwargs = structured.get("kwargs")
        if isinstance(kwargs, Mapping):
            form.update({str(key): limiter.json(value) for key, value in kwargs.items()})
        return form
    response_format = (params or {}).get("response_format")
    if response_format is None:
        return None
    converted = limiter.json(response_format)
    return converted if isinstance(converted, dict) else {"schema": converted}


def usage_from(message: Any, llm_output: Mapping[str, Any] | None) -> Usage:
    """Token usage from `usage_metadata`, else from a provider's `token_usage` in `llm_output`."""
    usage = getattr(message, "usage_metadata", None)
    if usage:
        return Usage(
            input_tokens=usage.get("input_tokens"), output_tokens=usage.get("output_tokens")
        )
    token_usage = (llm_output or {}).get("token_usage") or (llm_output or {}).get("usage")
    if isinstance(token_usage, Mapping):
        return Usage(
            input_tokens=_first_int(token_usage, "input_tokens", "prompt_tokens"),
            output_tokens=_first_int(token_usage, "output_tokens", "completion_tokens"),
        )
    return Usage()


def _first_int(values: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = values.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def finish_reason_from(generation: Any) -> str | None:
    """Return the finish reason from the message's response metadata or the generation info."""
    message = getattr(generation, "message", None)
    for source in (
        getattr(message, "response_metadata", None),
        getattr(generation, "generation_info", None),
    ):
        if isinstance(source, Mapping):
            reason = source.get("finish_reason") or source.get("stop_reason")
            if reason is not None:
                return str(reason)
    return None


def response_model_name(generation: Any) -> str | None:
    """Return the model name the provider reported in the response, or None."""
    metadata = getattr(getattr(generation, "message", None), "response_metadata", None)
    if isinstance(metadata, Mapping):
        name = metadata.get("model_name") or metadata.get("model")
        if isinstance(name, str) and name:
            return name
    return None

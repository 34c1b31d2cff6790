"""Conversions from LlamaIndex objects (chat messages, tools, responses) to record parts.

Checked against llama-index-core 0.14.25. Chat messages carry content blocks (`TextBlock`,
`ToolCallBlock`, ...), and a tool result message keeps its call id in
`additional_kwargs["tool_call_id"]`. `ChatResponse` has no usage field, so usage is read from
`raw` or `additional_kwargs`, in the OpenAI and Anthropic shapes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from slmshift.integrations._genai_messages import normalize_role, tool_call_from_parts
from slmshift.records import Message, ToolCall, ToolDefinition, Usage

logger = logging.getLogger(__name__)

# Chat-model settings in `model_dict` that are request parameters.
REQUEST_PARAMETER_NAMES = ("temperature", "max_tokens", "top_p", "top_k", "seed", "stop")
_EXTRA_ROLES = {"chatbot": "assistant", "developer": "system"}


def message_from_llama(message: Any) -> Message:
    """Convert a LlamaIndex `ChatMessage` to a record message."""
    role_value = getattr(message.role, "value", message.role)
    role = normalize_role(_EXTRA_ROLES.get(str(role_value), role_value))
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in getattr(message, "blocks", ()) or ():
        kind = getattr(block, "block_type", None)
        if kind == "text":
            texts.append(block.text)
        elif kind == "tool_call":
            calls.append(tool_call_from_parts(block.tool_name, block.tool_kwargs, block.tool_call_id))
    extra = getattr(message, "additional_kwargs", None) or {}
    calls.extend(_openai_tool_calls(extra.get("tool_calls")))
    return Message(
        role=role,
        content="".join(texts) if texts else None,
        tool_calls=tuple(calls),
        tool_call_id=extra.get("tool_call_id") if role == "tool" else None,
        name=extra.get("name"),
    )


def tools_from_llama(tools: Iterable[Any] | None) -> tuple[ToolDefinition, ...]:
    """Convert the tools passed with a chat call: LlamaIndex tools or OpenAI-format dicts."""
    converted = []
    for tool in tools or ():
        if isinstance(tool, Mapping):
            if tool.get("name") or isinstance(tool.get("function"), Mapping):
                converted.append(ToolDefinition.from_dict(dict(tool)))
            continue
        metadata = getattr(tool, "metadata", None)
        if metadata is None or not getattr(metadata, "name", None):
            continue
        converted.append(
            ToolDefinition(
                name=metadata.name,
                description=metadata.description or "",
                parameters=metadata.get_parameters_dict(),
            )
        )
    return tuple(converted)


def usage_from_response(response: Any) -> Usage:
    """Read token usage from a chat or completion response's `raw` or `additional_kwargs`."""
    for source in (getattr(response, "raw", None), getattr(response, "additional_kwargs", None)):
        usage = _usage_mapping(source)
        if usage is not None:
            return usage
    return Usage()


def finish_reason_from_response(response: Any, message: Message | None) -> str | None:
    """Read the finish reason from the raw response, or infer `tool_calls`."""
    raw = _as_mapping(getattr(response, "raw", None))
    if raw is not None:
        choices = raw.get("choices")
        if isinstance(choices, list) and choices and isinstance(_as_mapping(choices[0]), Mapping):
            reason = _as_mapping(choices[0]).get("finish_reason")
            if reason:
                return str(reason)
        for key in ("finish_reason", "stop_reason"):
            if raw.get(key):
                return str(raw[key])
    if message is not None and message.tool_calls:
        return "tool_calls"
    return None


def model_from_dict(model_dict: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return (model, provider) from an LLM's `model_dict` as start events carry it."""
    model = model_dict.get("model") or model_dict.get("model_name")
    if model in (None, "", "unknown"):
        model = None
    class_name = str(model_dict.get("class_name") or "")
    provider = class_name.lower().removesuffix("_llm") if class_name else None
    return (str(model) if model is not None else None), provider


def request_parameters(model_dict: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Return the request parameters set on the model or passed with the call."""
    parameters = {}
    for name in REQUEST_PARAMETER_NAMES:
        value = extra.get(name, model_dict.get(name))
        if value is not None:
            parameters[name] = value
    return parameters


def _openai_tool_calls(calls: Any) -> Iterator[ToolCall]:
    if not isinstance(calls, list):
        return
    for call in calls:
        data = _as_mapping(call)
        if data is None:
            continue
        function = _as_mapping(data.get("function")) or {}
        yield tool_call_from_parts(function.get("name"), function.get("arguments"), data.get("id"))


def _usage_mapping(source: Any) -> Usage | None:
    data = _as_mapping(source)
    if data is None:
        return None
    usage = _as_mapping(data.get("usage")) or data
    input_tokens = usage.get("prompt_tokens", usage.get("input_tokens"))
    output_tokens = usage.get("completion_tokens", usage.get("output_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    return Usage(input_tokens=_int(input_tokens), output_tokens=_int(output_tokens))


def _as_mapping(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, Mapping):
        return value
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            dumped = dump()
        except Exception:  # noqa: BLE001 - a provider object that cannot dump is skipped
            return None
        return dumped if isinstance(dumped, Mapping) else None
    return None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def json_text(value: Any) -> str:
    """Return `value` as JSON text, falling back to `str` for objects JSON cannot encode."""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str, ensure_ascii=False)

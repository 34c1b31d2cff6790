"""Messages in the GenAI semantic-convention JSON form, both ways.

The conventions give each message as `{"role": ..., "parts": [...]}` with parts of type `text`,
`tool_call` (`id`, `name`, `arguments`) and `tool_call_response` (`id`, `response`); output
messages also carry `finish_reason`. System prompts may instead travel in
`gen_ai.system_instructions` as a list of parts.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from slmshift.records import Message, ToolCall, ToolDefinition

logger = logging.getLogger(__name__)

# Roles other instrumentations write, mapped to ours.
_ROLE_ALIASES = {"human": "user", "ai": "assistant", "model": "assistant", "function": "tool"}


def message_to_genai(message: Message, *, finish_reason: str | None = None) -> dict[str, Any]:
    """Convert a record message to the GenAI message form."""
    parts: list[dict[str, Any]] = []
    if message.role == "tool":
        parts.append(
            {"type": "tool_call_response", "id": message.tool_call_id, "response": message.text}
        )
    elif isinstance(message.content, str) and message.content:
        parts.append({"type": "text", "content": message.content})
    elif isinstance(message.content, list):
        parts.extend(_content_part(part) for part in message.content)
    for call in message.tool_calls:
        arguments: Any = call.arguments if call.arguments_raw is None else call.arguments_raw
        parts.append({"type": "tool_call", "id": call.id, "name": call.name, "arguments": arguments})
    converted: dict[str, Any] = {"role": message.role, "parts": parts}
    if message.name is not None:
        converted["name"] = message.name
    if finish_reason is not None:
        converted["finish_reason"] = finish_reason
    return converted


def tool_to_genai(tool: ToolDefinition) -> dict[str, Any]:
    """Convert a tool definition to the GenAI `gen_ai.tool.definitions` item form."""
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
    }


def message_from_genai(data: dict[str, Any]) -> Message:
    """Convert a GenAI message (or a plain `{"role", "content"}` object) to a record message."""
    role = normalize_role(data.get("role"))
    parts = data.get("parts")
    if parts is None:
        return Message(role=role, content=data.get("content"), name=data.get("name"))
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    tool_call_id = None
    for part in parts:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("content", "")))
        elif kind == "tool_call":
            tool_calls.append(tool_call_from_parts(part.get("name"), part.get("arguments"), part.get("id")))
        elif kind == "tool_call_response":
            tool_call_id = part.get("id")
            response = part.get("response")
            texts.append(response if isinstance(response, str) else json.dumps(response))
    content = "".join(texts) if texts else None
    if role == "tool" and tool_call_id is None:
        tool_call_id = data.get("tool_call_id")
    return Message(
        role=role,
        content=content,
        tool_calls=tuple(tool_calls),
        tool_call_id=tool_call_id,
        name=data.get("name"),
    )


def tool_call_from_parts(name: Any, arguments: Any, call_id: Any) -> ToolCall:
    """Build a tool call from a name, arguments as a dict or JSON text, and an id."""
    if isinstance(arguments, dict):
        return ToolCall(name=str(name or ""), arguments=arguments, id=_text_or_none(call_id))
    if arguments is None or arguments == "":
        return ToolCall(name=str(name or ""), id=_text_or_none(call_id))
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        return ToolCall(name=str(name or ""), arguments=parsed, id=_text_or_none(call_id))
    return ToolCall(name=str(name or ""), id=_text_or_none(call_id), arguments_raw=str(arguments))


def normalize_role(role: Any) -> str:
    """Map a role name from any instrumentation to one of the record roles."""
    text = str(role or "user").lower()
    text = _ROLE_ALIASES.get(text, text)
    if text not in ("system", "user", "assistant", "tool"):
        logger.debug("Unknown message role %r read as user.", role)
        return "user"
    return text


def _content_part(part: Any) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "content": part}
    if isinstance(part, dict) and isinstance(part.get("text"), str):
        return {"type": "text", "content": part["text"]}
    return {"type": str(part.get("type", "unknown")) if isinstance(part, dict) else "unknown"}


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)

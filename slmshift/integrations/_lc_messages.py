"""Conversions between LangChain messages and tools and slmshift's records."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.utils.function_calling import convert_to_openai_tool

from slmshift.records import Message, ToolCall, ToolDefinition

logger = logging.getLogger(__name__)

_ROLE_BY_TYPE = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def to_record_message(message: BaseMessage) -> Message:
    """Convert a LangChain message; unknown types (such as `chat`) keep their declared role."""
    role = _ROLE_BY_TYPE.get(message.type) or getattr(message, "role", None) or "user"
    if role not in _ROLE_BY_TYPE.values():
        role = "user"
    tool_calls: tuple[ToolCall, ...] = ()
    if isinstance(message, AIMessage):
        tool_calls = tuple(
            ToolCall(name=call["name"], arguments=dict(call.get("args") or {}), id=call.get("id"))
            for call in message.tool_calls
        )
    return Message(
        role=role,
        content=message.content,
        tool_calls=tool_calls,
        tool_call_id=getattr(message, "tool_call_id", None),
        name=message.name,
    )


def to_record_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    return [to_record_message(message) for message in messages]


def to_langchain_message(message: Message) -> BaseMessage:
    """Convert a record message back; tool-call arguments that failed to parse become invalid calls."""
    content = message.content if message.content is not None else ""
    if message.role == "system":
        return SystemMessage(content=content)
    if message.role == "user":
        return HumanMessage(content=content, name=message.name)
    if message.role == "tool":
        return ToolMessage(content=content, tool_call_id=message.tool_call_id or "", name=message.name)
    return AIMessage(content=content, name=message.name, **_ai_tool_calls(message.tool_calls))


def to_tool_definitions(tools: Sequence[Any] | None) -> list[ToolDefinition]:
    """Convert tools in any form LangChain accepts (dicts, pydantic classes, functions, BaseTool)."""
    return [ToolDefinition.from_dict(convert_to_openai_tool(tool)) for tool in tools or ()]


def tool_choice_name(tool_choice: Any) -> str | None:
    """Normalise a provider-specific tool choice to a tool name, `auto`, `any` or `none`.

    OpenAI (`{"type": "function", "function": {"name": ...}}`, `required`), Anthropic
    (`{"type": "tool", "name": ...}`, `{"type": "any"}`) and plain strings are understood.
    """
    if tool_choice is None or tool_choice is False:
        return None
    if tool_choice is True:
        return "any"
    if isinstance(tool_choice, str):
        return "any" if tool_choice == "required" else tool_choice
    if isinstance(tool_choice, dict):
        function = tool_choice.get("function")
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            return function["name"]
        if isinstance(tool_choice.get("name"), str):
            return tool_choice["name"]
        if tool_choice.get("type") in ("any", "auto", "none"):
            return tool_choice["type"]
    logger.warning("Unrecognised tool_choice %r; leaving the choice to the model.", tool_choice)
    return None


def _ai_tool_calls(calls: Sequence[ToolCall]) -> dict[str, Any]:
    valid = []
    invalid = []
    for index, call in enumerate(calls):
        call_id = call.id or f"call_{index}"
        if call.arguments_raw is not None and not call.arguments:
            invalid.append(
                {"name": call.name, "args": call.arguments_raw, "id": call_id, "error": "invalid JSON",
                 "type": "invalid_tool_call"}
            )
        else:
            valid.append({"name": call.name, "args": call.arguments, "id": call_id, "type": "tool_call"})
    return {"tool_calls": valid, "invalid_tool_calls": invalid}


def message_text(message: BaseMessage) -> str:
    """Return the text of a message's content, joining the text parts of a list content."""
    return to_record_message(message).text


def dumps_structured(value: Any) -> str:
    """Serialise a structured-output value (pydantic model or JSON-compatible data) to JSON text."""
    if hasattr(value, "model_dump_json"):
        return value.model_dump_json()
    return json.dumps(value, ensure_ascii=False)

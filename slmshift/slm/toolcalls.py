"""Tool-call text formats that small models produce, and the prompt that offers them tools.

Fine-tuned SLMs answer a tool call as text. Two formats are parsed back into `ToolCall`s:
the Hermes/Qwen form, one `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block per
call, and plain JSON (one such object, or a list of them) as the whole answer.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from slmshift.records import ToolCall, ToolDefinition

logger = logging.getLogger(__name__)

TOOL_CALL_PATTERN = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def parse_tool_calls(text: str, tool_names: set[str] | None = None) -> tuple[str, list[ToolCall]]:
    """Split a model answer into its remaining text and the tool calls it contains.

    A plain-JSON answer counts as a tool call only when its `name` is in `tool_names` (when
    `tool_names` is given), so that JSON answers of structured-output tasks stay text.
    Arguments that are not valid JSON are kept in `ToolCall.arguments_raw`.
    """
    blocks = TOOL_CALL_PATTERN.findall(text)
    if blocks:
        calls = [call for block in blocks if (call := _call_from_text(block)) is not None]
        remaining = TOOL_CALL_PATTERN.sub("", text).strip()
        return remaining, calls

    stripped = text.strip()
    if not stripped.startswith(("{", "[")):
        return text, []
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError:
        return text, []
    items = data if isinstance(data, list) else [data]
    calls = [_call_from_json(item) for item in items]
    if not calls or any(call is None for call in calls):
        return text, []
    if tool_names is not None and any(call.name not in tool_names for call in calls):
        return text, []
    return "", [call for call in calls if call is not None]


def format_tool_call(call: ToolCall) -> str:
    """Render a call in the Hermes/Qwen `<tool_call>` form that `parse_tool_calls` reads."""
    body = {"name": call.name, "arguments": call.arguments}
    return f"<tool_call>\n{json.dumps(body, ensure_ascii=False)}\n</tool_call>"


def tools_system_prompt(tools: list[ToolDefinition]) -> str:
    """Describe `tools` for a chat template that has no tool support of its own."""
    signatures = "\n".join(json.dumps(tool.to_openai(), ensure_ascii=False) for tool in tools)
    return (
        "You may call one or more functions. The available functions are:\n"
        f"<tools>\n{signatures}\n</tools>\n"
        "For each call, answer with a JSON object inside tags: "
        '<tool_call>{"name": <function-name>, "arguments": <args-json-object>}</tool_call>'
    )


def _call_from_text(block: str) -> ToolCall | None:
    try:
        data = json.loads(block)
    except json.JSONDecodeError:
        name = re.search(r'"name"\s*:\s*"([^"]+)"', block)
        if name is None:
            logger.debug("Ignored a <tool_call> block without a function name: %.80s", block)
            return None
        return ToolCall(name=name.group(1), id=_new_call_id(), arguments_raw=block)
    return _call_from_json(data)


def _call_from_json(data: Any) -> ToolCall | None:
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return None
    if set(data) - {"name", "arguments", "parameters", "id"}:
        return None
    arguments = data.get("arguments", data.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            parsed = json.loads(arguments)
        except json.JSONDecodeError:
            return ToolCall(name=data["name"], id=_new_call_id(), arguments_raw=arguments)
        arguments = parsed
    if not isinstance(arguments, dict):
        return ToolCall(name=data["name"], id=_new_call_id(), arguments_raw=json.dumps(arguments))
    return ToolCall(name=data["name"], arguments=arguments, id=data.get("id") or _new_call_id())


def _new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"

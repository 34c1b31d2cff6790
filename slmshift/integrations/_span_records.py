"""Turn model-call spans written by other instrumentations into call records.

Three attribute layouts are read, each by its own small extractors:

- OpenInference (`openinference.span.kind = LLM`, `llm.input_messages.N.message.*`, ...);
- GenAI semantic conventions with JSON message attributes (`gen_ai.input.messages`, ...),
  as OpenLLMetry 0.50 and later and slmshift's own spans write them;
- the older indexed GenAI form (`gen_ai.prompt.N.role`, `gen_ai.completion.N.content`).

`SpanData` is the neutral span form shared by the live exporter (SDK `ReadableSpan`s) and the
OTLP JSON file reader.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from slmshift.integrations import _semconv as sc
from slmshift.integrations._genai_messages import (
    message_from_genai,
    normalize_role,
    tool_call_from_parts,
)
from slmshift.records import CallRecord, Message, ToolCall, ToolDefinition, Usage

logger = logging.getLogger(__name__)

# Namespace of record ids derived from (trace id, span id), so a span imported twice is one record.
RECORD_ID_NAMESPACE = uuid.UUID("7c6a53a4-3f0c-4a43-9d55-6a7d0f2c9a61")
_AGENT_NAME_IN_REPR = re.compile(r"current_agent_name='([^']*)'")
_UNKNOWN_MODEL_NAMES = frozenset({"", "unknown"})


@dataclass(frozen=True)
class SpanData:
    """A finished span in a neutral form: hex ids, times in Unix nanoseconds, plain attributes."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str | None
    start_ns: int
    end_ns: int | None
    attributes: Mapping[str, Any]
    error: str | None = None
    resource: Mapping[str, Any] = field(default_factory=dict)


def is_model_call(span: SpanData) -> bool:
    """Return whether the span is a model call in one of the layouts read here."""
    attributes = span.attributes
    if attributes.get(sc.OI_SPAN_KIND) == sc.OI_SPAN_KIND_LLM:
        # OpenInference also marks LlamaIndex helper spans (`_prepare_chat_with_tools`) as LLM;
        # only spans with messages or token counts are real model calls.
        return any(key.startswith((sc.OI_INPUT_MESSAGES, sc.OI_OUTPUT_MESSAGES, "llm.token_count")) for key in attributes)
    if attributes.get(sc.GEN_AI_OPERATION_NAME) in sc.MODEL_CALL_OPERATIONS:
        return True
    return attributes.get(sc.LEGACY_REQUEST_TYPE) in ("chat", "completion")


def span_to_record(span: SpanData, *, agent: str | None = None) -> CallRecord:
    """Build the call record of a model-call span (check `is_model_call` first)."""
    attributes = span.attributes
    metadata = _metadata(attributes)
    response, finish_reason = _response(attributes)
    start = datetime.fromtimestamp(span.start_ns / 1e9, tz=timezone.utc)
    latency_ms = (span.end_ns - span.start_ns) / 1e6 if span.end_ns else None
    parameters = _invocation_parameters(attributes)
    metadata["otel"] = {"trace_id": span.trace_id, "span_id": span.span_id, "name": span.name}
    return CallRecord(
        id=str(attributes.get(sc.SLMSHIFT_RECORD_ID) or _record_id(span)),
        trace_id=span.trace_id,
        parent_id=span.parent_span_id,
        agent=agent or _first(attributes, sc.GEN_AI_AGENT_NAME) or span.resource.get("service.name"),
        node=node_of(span, metadata),
        model=_model(attributes),
        provider=_provider(attributes, metadata),
        messages=tuple(_input_messages(attributes)),
        tools=tuple(_tools(attributes)),
        response=response,
        usage=_usage(attributes),
        latency_ms=latency_ms,
        started_at=start,
        error=span.error,
        finish_reason=finish_reason or _finish_reason(attributes),
        tool_choice=parameters.get("tool_choice"),
        response_format=_dict_or_none(parameters.get("response_format")),
        metadata=metadata,
    )


def node_of(span: SpanData, metadata: Mapping[str, Any] | None = None) -> str | None:
    """Return the node or agent name a span names for itself, or None."""
    attributes = span.attributes
    for key in (sc.SLMSHIFT_NODE, sc.LANGGRAPH_NODE):
        if attributes.get(key):
            return str(attributes[key])
    metadata = _metadata(attributes) if metadata is None else metadata
    for key in sc.NODE_METADATA_KEYS:
        if metadata.get(key):
            return str(metadata[key])
    return None


def agent_step_name(span: SpanData) -> str | None:
    """Return the agent that a workflow agent-step span ran, or None for other spans."""
    if span.attributes.get(sc.GEN_AI_OPERATION_NAME) == sc.OPERATION_INVOKE_AGENT:
        name = span.attributes.get(sc.GEN_AI_AGENT_NAME)
        return str(name) if name else None
    if span.name.endswith(".run_agent_step"):
        # OpenInference records the step's `ev` argument as its repr inside `input.value`.
        match = _AGENT_NAME_IN_REPR.search(str(span.attributes.get("input.value", "")))
        return match.group(1) if match else None
    return node_of(span)


# -- extractors ---------------------------------------------------------------------------------


def _input_messages(attributes: Mapping[str, Any]) -> Iterator[Message]:
    if _has_prefix(attributes, sc.OI_INPUT_MESSAGES):
        yield from _indexed_openinference_messages(attributes, sc.OI_INPUT_MESSAGES)
        return
    if sc.GEN_AI_INPUT_MESSAGES in attributes or sc.GEN_AI_SYSTEM_INSTRUCTIONS in attributes:
        yield from _system_instructions(attributes.get(sc.GEN_AI_SYSTEM_INSTRUCTIONS))
        for item in _json_list(attributes.get(sc.GEN_AI_INPUT_MESSAGES)):
            yield message_from_genai(item)
        return
    yield from _indexed_legacy_messages(attributes, sc.LEGACY_PROMPT_PREFIX)


def _response(attributes: Mapping[str, Any]) -> tuple[Message | None, str | None]:
    if _has_prefix(attributes, sc.OI_OUTPUT_MESSAGES):
        messages = list(_indexed_openinference_messages(attributes, sc.OI_OUTPUT_MESSAGES))
        return (messages[0] if messages else None), None
    if sc.GEN_AI_OUTPUT_MESSAGES in attributes:
        outputs = _json_list(attributes.get(sc.GEN_AI_OUTPUT_MESSAGES))
        if not outputs:
            return None, None
        return message_from_genai(outputs[0]), outputs[0].get("finish_reason") or None
    messages = list(_indexed_legacy_messages(attributes, sc.LEGACY_COMPLETION_PREFIX))
    if not messages:
        return None, None
    reason = attributes.get(f"{sc.LEGACY_COMPLETION_PREFIX}.0.finish_reason")
    return messages[0], reason or None


def _tools(attributes: Mapping[str, Any]) -> Iterator[ToolDefinition]:
    for index in _indices(attributes, sc.OI_TOOLS):
        schema = _json_value(attributes.get(f"{sc.OI_TOOLS}.{index}.{sc.OI_TOOL_JSON_SCHEMA}"))
        if isinstance(schema, dict) and (schema.get("name") or isinstance(schema.get("function"), dict)):
            yield ToolDefinition.from_dict(schema)
    for item in _json_list(attributes.get(sc.GEN_AI_TOOL_DEFINITIONS)):
        if item.get("name") or isinstance(item.get("function"), dict):
            yield ToolDefinition.from_dict(item)
    for index in _indices(attributes, sc.LEGACY_FUNCTIONS_PREFIX):
        prefix = f"{sc.LEGACY_FUNCTIONS_PREFIX}.{index}"
        parameters = _json_value(attributes.get(f"{prefix}.parameters"))
        yield ToolDefinition(
            name=str(attributes.get(f"{prefix}.name", "")),
            description=str(attributes.get(f"{prefix}.description", "")),
            parameters=parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}},
        )


def _usage(attributes: Mapping[str, Any]) -> Usage:
    input_tokens = _first(
        attributes, sc.GEN_AI_USAGE_INPUT_TOKENS, sc.LEGACY_USAGE_PROMPT_TOKENS, sc.OI_TOKEN_COUNT_PROMPT
    )
    output_tokens = _first(
        attributes,
        sc.GEN_AI_USAGE_OUTPUT_TOKENS,
        sc.LEGACY_USAGE_COMPLETION_TOKENS,
        sc.OI_TOKEN_COUNT_COMPLETION,
    )
    return Usage(input_tokens=_int_or_none(input_tokens), output_tokens=_int_or_none(output_tokens))


def _model(attributes: Mapping[str, Any]) -> str | None:
    for key in (sc.GEN_AI_RESPONSE_MODEL, sc.GEN_AI_REQUEST_MODEL, sc.OI_MODEL_NAME):
        value = attributes.get(key)
        if value is not None and str(value) not in _UNKNOWN_MODEL_NAMES:
            return str(value)
    return None


def _provider(attributes: Mapping[str, Any], metadata: Mapping[str, Any]) -> str | None:
    value = metadata.get("ls_provider") or _first(
        attributes, sc.GEN_AI_PROVIDER_NAME, sc.GEN_AI_SYSTEM, sc.OI_PROVIDER, sc.OI_SYSTEM
    )
    return str(value) if value else None


def _finish_reason(attributes: Mapping[str, Any]) -> str | None:
    reasons = attributes.get(sc.GEN_AI_RESPONSE_FINISH_REASONS)
    if isinstance(reasons, (list, tuple)) and reasons:
        return str(reasons[0])
    return str(reasons) if isinstance(reasons, str) and reasons else None


def _metadata(attributes: Mapping[str, Any]) -> dict[str, Any]:
    metadata: dict[str, Any] = {}
    openinference = _json_value(attributes.get(sc.OI_METADATA))
    if isinstance(openinference, dict):
        metadata.update(openinference)
    for key, value in attributes.items():
        if key.startswith(sc.TRACELOOP_ASSOCIATION_PREFIX):
            metadata[key[len(sc.TRACELOOP_ASSOCIATION_PREFIX) :]] = _json_value(value)
    conversation = _first(attributes, sc.GEN_AI_CONVERSATION_ID, sc.OI_SESSION_ID)
    if conversation is not None:
        metadata.setdefault("conversation_id", str(conversation))
    return metadata


def _invocation_parameters(attributes: Mapping[str, Any]) -> dict[str, Any]:
    parameters = _json_value(attributes.get(sc.OI_INVOCATION_PARAMETERS))
    return parameters if isinstance(parameters, dict) else {}


# -- layout helpers ---------------------------------------------------------------------------


def _indexed_openinference_messages(attributes: Mapping[str, Any], prefix: str) -> Iterator[Message]:
    for index in _indices(attributes, prefix):
        base = f"{prefix}.{index}."
        role = normalize_role(attributes.get(base + sc.OI_MESSAGE_ROLE))
        content = attributes.get(base + sc.OI_MESSAGE_CONTENT)
        if content is None:
            content = _openinference_contents(attributes, base + sc.OI_MESSAGE_CONTENTS)
        calls = tuple(_openinference_tool_calls(attributes, base + sc.OI_MESSAGE_TOOL_CALLS))
        yield Message(
            role=role,
            content=content,
            tool_calls=calls,
            tool_call_id=attributes.get(base + sc.OI_MESSAGE_TOOL_CALL_ID),
            name=attributes.get(base + sc.OI_MESSAGE_NAME),
        )


def _openinference_tool_calls(attributes: Mapping[str, Any], prefix: str) -> Iterator[ToolCall]:
    for index in _indices(attributes, prefix):
        base = f"{prefix}.{index}."
        yield tool_call_from_parts(
            attributes.get(base + sc.OI_TOOL_CALL_NAME),
            attributes.get(base + sc.OI_TOOL_CALL_ARGUMENTS),
            attributes.get(base + sc.OI_TOOL_CALL_ID),
        )


def _openinference_contents(attributes: Mapping[str, Any], prefix: str) -> str | None:
    texts = [
        str(attributes[f"{prefix}.{index}.message_content.text"])
        for index in _indices(attributes, prefix)
        if f"{prefix}.{index}.message_content.text" in attributes
    ]
    return "".join(texts) if texts else None


def _indexed_legacy_messages(attributes: Mapping[str, Any], prefix: str) -> Iterator[Message]:
    for index in _indices(attributes, prefix):
        base = f"{prefix}.{index}"
        calls = tuple(
            tool_call_from_parts(
                attributes.get(f"{base}.tool_calls.{call}.name"),
                attributes.get(f"{base}.tool_calls.{call}.arguments"),
                attributes.get(f"{base}.tool_calls.{call}.id"),
            )
            for call in _indices(attributes, f"{base}.tool_calls")
        )
        yield Message(
            role=normalize_role(attributes.get(f"{base}.role")),
            content=attributes.get(f"{base}.content"),
            tool_calls=calls,
            tool_call_id=attributes.get(f"{base}.tool_call_id"),
        )


def _system_instructions(value: Any) -> Iterator[Message]:
    parts = _json_list(value)
    texts = [str(part.get("content", "")) for part in parts if part.get("type") == "text"]
    if texts:
        yield Message(role="system", content="".join(texts))


def _indices(attributes: Mapping[str, Any], prefix: str) -> list[int]:
    start = prefix + "."
    found = set()
    for key in attributes:
        if key.startswith(start):
            head = key[len(start) :].split(".", 1)[0]
            if head.isdigit():
                found.add(int(head))
    return sorted(found)


def _has_prefix(attributes: Mapping[str, Any], prefix: str) -> bool:
    start = prefix + "."
    return any(key.startswith(start) for key in attributes)


def _json_value(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def _json_list(value: Any) -> list[dict[str, Any]]:
    parsed = _json_value(value)
    if not isinstance(parsed, list):
        return []
    return [item for item in parsed if isinstance(item, dict)]


def _first(attributes: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None and value != "":
            return value
    return None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _record_id(span: SpanData) -> uuid.UUID:
    return uuid.uuid5(RECORD_ID_NAMESPACE, f"{span.trace_id}:{span.span_id}")

"""Call records: one model call made by an agent, with everything needed to train on it.

A `CallRecord` is the unit every step of slmshift reads and writes. Records are plain
dataclasses with an exact JSON round trip (`CallRecord.from_json(r.to_json()) == r`) and a
`SCHEMA_VERSION` so that stores and exports written by older releases can be migrated.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1

OutputKind = Literal["label", "json", "tool_call", "text"]
OUTPUT_KINDS: tuple[str, ...] = ("label", "json", "tool_call", "text")
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")

# A response of at most this many words, without sentence punctuation, reads as a label.
MAX_LABEL_WORDS = 4


class RecordError(ValueError):
    """A record or one of its parts does not match the record schema."""



def new_record_id() -> str:
    """Return a random version-4 UUID string for a new record.

    The bits come from `random`, not `uuid.uuid4`: record ids need uniqueness, not secrecy,
    and `uuid4` reads os.urandom, which releases the GIL. On a busy interpreter the agent's
    thread then waited milliseconds to get it back, on every model call. `random` is reseeded
    in forked children, so processes do not repeat each other's ids.
    """
    return str(uuid.UUID(int=random.getrandbits(128), version=4))

@dataclass(frozen=True)
class ToolCall:
    """A function call requested by the model.

    `arguments` holds the parsed JSON arguments. When the model produced arguments that are
    not valid JSON, `arguments` is empty and `arguments_raw` keeps the text as received.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    arguments_raw: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "arguments": self.arguments,
            "arguments_raw": self.arguments_raw,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolCall:
        """Build a call from `to_dict` output; `arguments` may also be JSON text, as OpenAI sends it.

        Raises:
            RecordError: `name` is missing, or `arguments` is neither an object nor text.
        """
        _require_keys(data, ("name",), "ToolCall")
        arguments = data.get("arguments")
        arguments_raw = data.get("arguments_raw")
        if isinstance(arguments, str):
            arguments, arguments_raw = _parse_arguments(arguments, arguments_raw)
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise RecordError(
                f"ToolCall {data['name']!r} has arguments of type {type(arguments).__name__}: "
                "pass a JSON object or its JSON text."
            )
        return cls(name=data["name"], arguments=dict(arguments), id=data.get("id"), arguments_raw=arguments_raw)


@dataclass(frozen=True)
class ToolDefinition:
    """A tool offered to the model: a name, a description and a JSON schema of its parameters."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}

    def to_openai(self) -> dict[str, Any]:
        """Return the tool in the OpenAI `tools` format."""
        return {"type": "function", "function": self.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolDefinition:
        """Build a definition from our own form or from the OpenAI `{"type": "function", ...}` form."""
        if data.get("type") == "function" and isinstance(data.get("function"), dict):
            data = data["function"]
        _require_keys(data, ("name",), "ToolDefinition")
        parameters = data.get("parameters")
        if parameters is None:
            parameters = {"type": "object", "properties": {}}
        return cls(name=data["name"], description=data.get("description") or "", parameters=parameters)


@dataclass(frozen=True)
class Message:
    """A chat message. `content` is text, or a list of content parts for multimodal input."""

    role: str
    content: str | list[Any] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise RecordError(f"Invalid message role {self.role!r}: use one of {', '.join(ROLES)}.")
        if isinstance(self.tool_calls, list):
            object.__setattr__(self, "tool_calls", tuple(self.tool_calls))

    @property
    def text(self) -> str:
        """The message's text: `content` itself, or its text parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "content": self.content,
            "tool_calls": [call.to_dict() for call in self.tool_calls],
            "tool_call_id": self.tool_call_id,
            "name": self.name,
        }

    def to_openai(self) -> dict[str, Any]:
        """Return the message in the OpenAI chat format; tool-call arguments become JSON text."""
        message: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{index}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": _openai_arguments(call)},
                }
                for index, call in enumerate(self.tool_calls)
            ]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            message["name"] = self.name
        return message

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        _require_keys(data, ("role",), "Message")
        return cls(
            role=data["role"],
            content=data.get("content"),
            tool_calls=tuple(ToolCall.from_dict(call) for call in data.get("tool_calls") or ()),
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass(frozen=True)
class Usage:
    """Token counts. `None` means the provider did not report the count; it never means 0."""

    input_tokens: int | None = None
    output_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens"):
            object.__setattr__(self, name, _token_count(name, getattr(self, name)))

    @property
    def total_tokens(self) -> int | None:
        if self.input_tokens is None or self.output_tokens is None:
            return None
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Usage:
        data = data or {}
        if not isinstance(data, dict):
            raise RecordError(f"Usage must be a JSON object, got {type(data).__name__}: {data!r:.80}")
        return cls(input_tokens=data.get("input_tokens"), output_tokens=data.get("output_tokens"))


@dataclass(frozen=True)
class CallRecord:
    """One model call made by an agent.

    Attributes:
        id: Unique record id (a UUID string).
        trace_id: Id of the agent run the call belongs to.
        parent_id: Id of the enclosing run (node or chain) when known.
        agent: Name the user gave the agent when attaching the handler.
        node: Graph node or LlamaIndex agent that made the call; `outer/inner` inside subgraphs.
        model: Model name as the provider reports it.
        provider: Provider name, such as `openai` or `anthropic`.
        messages: Messages sent to the model.
        tools: Tools offered to the model.
        response: The model's answer, tool calls included; `None` when the call failed.
        output_kind: `label`, `json`, `tool_call` or `text`.
        usage: Token counts; unknown counts stay `None`.
        latency_ms: Wall time of the call in milliseconds.
        started_at: Start time, timezone-aware UTC.
        error: Error text when the call failed.
        finish_reason: Why generation stopped (`stop`, `length`, `tool_calls`, ...).
        tool_choice: Tool choice requested with the call, as the provider received it.
        response_format: Structured-output schema requested with the call.
        step: Graph step of the node run, when the framework reports one.
        metadata: Anything else captured with the call (framework metadata, thread id, ...).
    """

    messages: tuple[Message, ...]
    response: Message | None = None
    id: str = field(default_factory=lambda: new_record_id())
    trace_id: str | None = None
    parent_id: str | None = None
    agent: str | None = None
    node: str | None = None
    model: str | None = None
    provider: str | None = None
    tools: tuple[ToolDefinition, ...] = ()
    output_kind: str | None = None
    usage: Usage = field(default_factory=Usage)
    latency_ms: float | None = None
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None
    finish_reason: str | None = None
    tool_choice: Any = None
    response_format: dict[str, Any] | None = None
    step: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.messages, list):
            object.__setattr__(self, "messages", tuple(self.messages))
        if isinstance(self.tools, list):
            object.__setattr__(self, "tools", tuple(self.tools))
        if not isinstance(self.started_at, datetime):
            raise RecordError(
                f"CallRecord.started_at must be a datetime, got {type(self.started_at).__name__}."
            )
        if self.started_at.tzinfo is None:
            raise RecordError(
                f"CallRecord.started_at {self.started_at.isoformat()!r} has no timezone: "
                "pass a timezone-aware datetime, for example datetime.now(timezone.utc)."
            )
        # Kept in UTC, so that `to_json` writes one form for one instant and stores sort by text.
        object.__setattr__(self, "started_at", self.started_at.astimezone(timezone.utc))
        if self.output_kind is None and self.response is not None:
            object.__setattr__(self, "output_kind", infer_output_kind(self.response))
        if self.output_kind is not None and self.output_kind not in OUTPUT_KINDS:
            raise RecordError(
                f"Invalid output_kind {self.output_kind!r}: use one of {', '.join(OUTPUT_KINDS)}."
            )

    @property
    def ok(self) -> bool:
        """Whether the call succeeded and returned a response."""
        return self.error is None and self.response is not None

    def replace(self, **changes: Any) -> CallRecord:
        """Return a copy with `changes` applied."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "id": self.id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "agent": self.agent,
            "node": self.node,
            "model": self.model,
            "provider": self.provider,
            "messages": [message.to_dict() for message in self.messages],
            "tools": [tool.to_dict() for tool in self.tools],
            "response": self.response.to_dict() if self.response is not None else None,
            "output_kind": self.output_kind,
            "usage": self.usage.to_dict(),
            "latency_ms": self.latency_ms,
            "started_at": self.started_at.isoformat(),
            "error": self.error,
            "finish_reason": self.finish_reason,
            "tool_choice": self.tool_choice,
            "response_format": self.response_format,
            "step": self.step,
            "metadata": self.metadata,
        }

    def to_json(self) -> str:
        """Serialise to compact JSON; non-ASCII text is kept as it is, not escaped."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def to_openai_finetune(self) -> dict[str, Any]:
        """Return one line of the OpenAI chat fine-tuning format: messages plus tools.

        Raises:
            RecordError: the record has no response to learn from.
        """
        if self.response is None:
            raise RecordError(
                f"Record {self.id} has no response, so it cannot be a training example: "
                "filter failed calls out first (slmshift.curation drops them)."
            )
        example: dict[str, Any] = {
            "messages": [message.to_openai() for message in (*self.messages, self.response)]
        }
        if self.tools:
            example["tools"] = [tool.to_openai() for tool in self.tools]
        return example

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallRecord:
        """Build a record from `to_dict` output.

        Raises:
            RecordError: a required field is missing or a value has the wrong form.
        """
        if not isinstance(data, dict):
            raise RecordError(f"A call record must be a JSON object, got {type(data).__name__}.")
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RecordError(
                f"Invalid record schema_version {version!r}: use a positive integer such as "
                f"{SCHEMA_VERSION}."
            )
        if version > SCHEMA_VERSION:
            raise RecordError(
                f"Record schema_version {version!r} is newer than this slmshift understands "
                f"({SCHEMA_VERSION}): upgrade slmshift to read it."
            )
        _require_keys(data, ("messages",), "CallRecord")
        _check_field_types(data)
        try:
            return cls(
                schema_version=SCHEMA_VERSION,
                id=data.get("id") or _content_id(data),
                trace_id=data.get("trace_id"),
                parent_id=data.get("parent_id"),
                agent=data.get("agent"),
                node=data.get("node"),
                model=data.get("model"),
                provider=data.get("provider"),
                messages=tuple(Message.from_dict(m) for m in data["messages"]),
                tools=tuple(ToolDefinition.from_dict(t) for t in data.get("tools") or ()),
                response=Message.from_dict(data["response"]) if data.get("response") else None,
                output_kind=data.get("output_kind"),
                usage=Usage.from_dict(data.get("usage")),
                latency_ms=data.get("latency_ms"),
                started_at=_parse_time(data.get("started_at")),
                error=data.get("error"),
                finish_reason=data.get("finish_reason"),
                tool_choice=data.get("tool_choice"),
                response_format=data.get("response_format"),
                step=data.get("step"),
                metadata=dict(data.get("metadata") or {}),
            )
        except RecordError:
            raise
        except (TypeError, AttributeError, ValueError) as exc:
            raise RecordError(f"Invalid call record {data.get('id')!r}: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> CallRecord:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(f"Invalid JSON for a call record: {exc}") from exc
        return cls.from_dict(data)


def infer_output_kind(response: Message) -> str:
    """Classify a response as `tool_call`, `json`, `label` or `text`.

    A response with tool calls is a `tool_call` even when it also carries text. Text that
    parses as a JSON object or array is `json`. A short answer of at most `MAX_LABEL_WORDS`
    words with no sentence punctuation is a `label`; everything else is `text`.
    """
    if response.tool_calls:
        return "tool_call"
    text = response.text.strip()
    if text.startswith(("{", "[")):
        try:
            json.loads(text)
            return "json"
        except json.JSONDecodeError:
            pass
    words = text.split()
    if 0 < len(words) <= MAX_LABEL_WORDS and not any(mark in text for mark in ".?!,;:"):
        return "label"
    return "text"


# Fields that must hold text (or null) in a record's JSON form.
_TEXT_FIELDS = ("id", "trace_id", "parent_id", "agent", "node", "model", "provider", "error", "finish_reason")


def _check_field_types(data: dict[str, Any]) -> None:
    for name in _TEXT_FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            raise RecordError(
                f"CallRecord field {name!r} must be text or null, got {type(value).__name__}: {value!r:.80}"
            )
    latency = data.get("latency_ms")
    if latency is not None and (isinstance(latency, bool) or not isinstance(latency, (int, float))):
        raise RecordError(f"CallRecord field 'latency_ms' must be a number or null, got {latency!r:.80}")
    if not isinstance(data["messages"], list):
        raise RecordError(
            f"CallRecord field 'messages' must be a list, got {type(data['messages']).__name__}."
        )


def _content_id(data: dict[str, Any]) -> str:
    """Derive an id from the record's content, so that importing one id-less record twice adds it once."""
    canonical = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "slmshift:record:" + canonical))


def _token_count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise RecordError(
            f"Usage.{name} must be a non-negative integer or None (unknown), got {value!r:.40}."
        )
    return value


def _parse_arguments(text: str, raw: str | None) -> tuple[dict[str, Any], str | None]:
    """Parse tool-call arguments given as JSON text; text that is not a JSON object is kept raw."""
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError:
        return {}, raw if raw is not None else text
    if not isinstance(parsed, dict):
        return {}, raw if raw is not None else text
    return parsed, raw


def _openai_arguments(call: ToolCall) -> str:
    if call.arguments_raw is not None and not call.arguments:
        return call.arguments_raw
    return json.dumps(call.arguments, ensure_ascii=False)


def _parse_time(value: Any) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError as exc:
            raise RecordError(
                f"Invalid started_at {value!r}: use an ISO 8601 time such as "
                "2026-01-31T12:00:00+00:00."
            ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed


def _require_keys(data: Any, keys: tuple[str, ...], kind: str) -> None:
    if not isinstance(data, dict):
        raise RecordError(f"A {kind} must be a JSON object, got {type(data).__name__}: {data!r:.80}")
    for key in keys:
        if key not in data:
            raise RecordError(f"{kind} is missing the required field {key!r}: {data!r:.120}")

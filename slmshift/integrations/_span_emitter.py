"""Span emission for capture handlers: agent runs, steps, model calls and tool calls.

A handler calls `SpanEmitter` with the run ids its framework gives it. Each span's parent is
looked up by the parent's run id, never taken from the ambient OpenTelemetry context, so
spans nest correctly under asyncio tasks, thread pools and parallel graph branches. An agent
run starts a new trace, unless `join_ambient=True` lets it join the span that is current when
the run starts (a web request's span, for example). That is off by default because other
instrumentations attach spans of their own to the ambient context during a run.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider

from slmshift.callbacks._stats import traceback_without_messages
from slmshift.integrations import _semconv as sc
from slmshift.integrations._genai_messages import message_to_genai, tool_to_genai
from slmshift.integrations._span_export import env_flag
from slmshift.records import CallRecord, Message, ToolCall

logger = logging.getLogger(__name__)

Redactor = Callable[[CallRecord], CallRecord]

# Standard switch of the OpenTelemetry GenAI instrumentations, and slmshift's own.
CAPTURE_CONTENT_ENV_VARS = (
    "SLMSHIFT_OTEL_CAPTURE_CONTENT",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
)
TRACER_NAME = "slmshift"


class SpanEmitter:
    """Emit GenAI spans for one capture handler.

    Args:
        tracer_provider: Where spans go. Nothing is emitted through the global provider.
        agent: The agent name (`gen_ai.agent.name` on the run span).
        capture_content: Record messages, tool definitions and tool arguments and results.
            `None` reads `SLMSHIFT_OTEL_CAPTURE_CONTENT`, then
            `OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`; both unset means off.
        redactor: Applied to each record (and to tool arguments and results, wrapped in a
            record) before any content reaches a span.
        node_attribute: Framework-specific key that repeats the node name, such as
            `langgraph.node`; `slmshift.node` is always set.
        join_ambient: Make an agent run's span a child of the span current when it starts.

    Thread contract: every method may be called from any thread, never raises (failures are
    logged and counted in `stats["errors"]`) and does not block on export.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        *,
        agent: str | None = None,
        capture_content: bool | None = None,
        redactor: Redactor | None = None,
        node_attribute: str | None = None,
        join_ambient: bool = False,
    ) -> None:
        from slmshift import __version__

        self.agent = agent
        self.capture_content = _resolve_capture_content(capture_content)
        self.redactor = redactor
        self.node_attribute = node_attribute
        self.join_ambient = join_ambient
        self._tracer = tracer_provider.get_tracer(TRACER_NAME, __version__)
        # Open spans by run id. Entries are removed when their span ends.
        self._spans: dict[Hashable, trace.Span] = {}
        self._counters = {"errors": 0}
        self._lock = threading.Lock()

    # -- runs, steps and tools ---------------------------------------------------------------

    def start_run(
        self,
        run_id: Hashable,
        *,
        parent_run_id: Hashable | None = None,
        name: str | None = None,
        conversation_id: str | None = None,
    ) -> None:
        """Open the span of one agent run (`invoke_agent`)."""
        try:
            attributes = dict(_agent_attributes(self.agent, conversation_id))
            span_name = f"{sc.OPERATION_INVOKE_AGENT} {name or self.agent or 'agent'}"
            self._open(run_id, parent_run_id, span_name, attributes, root=parent_run_id is None)
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("start a run span", run_id)

    def start_step(
        self,
        run_id: Hashable,
        parent_run_id: Hashable | None,
        *,
        name: str,
        node: str | None = None,
        agent_step: bool = False,
        step: int | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        """Open the span of a graph node or workflow step named `name`.

        `node` is the node or agent the step belongs to (default `name`). With
        `agent_step=True` the span is an `invoke_agent` span of the agent `node` (a LlamaIndex
        workflow agent taking its turn).
        """
        try:
            node = node or name
            span_attributes = dict(self._node_attributes(node))
            span_attributes.update(attributes or {})
            if step is not None:
                span_attributes[sc.SLMSHIFT_STEP] = step
            if agent_step:
                span_attributes[sc.GEN_AI_OPERATION_NAME] = sc.OPERATION_INVOKE_AGENT
                span_attributes[sc.GEN_AI_AGENT_NAME] = node
                name = f"{sc.OPERATION_INVOKE_AGENT} {node}"
            self._open(run_id, parent_run_id, name, span_attributes)
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("start a step span", run_id)

    def start_tool(
        self,
        run_id: Hashable,
        parent_run_id: Hashable | None,
        *,
        name: str,
        call_id: str | None = None,
        arguments: Any = None,
        node: str | None = None,
    ) -> None:
        """Open an `execute_tool` span; arguments are recorded only with content capture on."""
        try:
            attributes = dict(_tool_attributes(name, call_id))
            attributes.update(self._node_attributes(node))
            if self.capture_content and arguments is not None:
                redacted = self._redact_tool_text(name, call_id, arguments, role="assistant")
                attributes[sc.GEN_AI_TOOL_CALL_ARGUMENTS] = redacted
            self._open(run_id, parent_run_id, f"{sc.OPERATION_EXECUTE_TOOL} {name}", attributes)
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("start a tool span", run_id)

    def end_tool(
        self,
        run_id: Hashable,
        *,
        result: Any = None,
        error: BaseException | str | None = None,
        name: str = "",
        call_id: str | None = None,
    ) -> None:
        """Close a tool span, adding its result when content capture is on."""
        try:
            span = self._spans.get(run_id)
            if span is not None and self.capture_content and result is not None:
                text = self._redact_tool_text(name, call_id, result, role="tool")
                span.set_attribute(sc.GEN_AI_TOOL_CALL_RESULT, text)
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("record a tool result", run_id)
        self.end(run_id, error=error)

    def end(self, run_id: Hashable, *, error: BaseException | str | None = None) -> None:
        """Close the span opened for `run_id`; an unknown id is ignored."""
        try:
            span = self._spans.pop(run_id, None)
            if span is None:
                return
            if error is not None:
                _mark_error(span, error)
            span.end()
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("end a span", run_id)

    def end_all(self, *, error: str = "capture handler closed") -> None:
        """Close every open span, marking it failed; used when a handler is detached."""
        for run_id in list(self._spans):
            self.end(run_id, error=error)

    # -- model calls -------------------------------------------------------------------------

    def emit_model_call(
        self,
        record: CallRecord,
        *,
        parent_run_id: Hashable | None,
        operation: str = sc.OPERATION_CHAT,
        request_parameters: Mapping[str, Any] | None = None,
        redacted: bool = False,
        include_content: bool = True,
    ) -> None:
        """Emit the finished span of one model call, timed from the record.

        `redacted=True` means the handler already ran the redactor on `record`; otherwise the
        emitter runs it before reading content. `include_content=False` leaves content off
        this span even when content capture is on.
        """
        try:
            capture = self.capture_content and include_content
            if capture and self.redactor is not None and not redacted:
                record = self.redactor(record)
            attributes = model_call_attributes(
                record,
                operation=operation,
                request_parameters=request_parameters,
                capture_content=capture,
                node_attribute=self.node_attribute,
            )
            start_ns = _datetime_ns(record.started_at)
            name = f"{operation} {record.model}" if record.model else operation
            span = self._tracer.start_span(
                name,
                context=self._parent_context(parent_run_id, root=False),
                kind=SpanKind.CLIENT,
                attributes=attributes,
                start_time=start_ns,
            )
            if record.error is not None:
                _mark_error(span, record.error)
            span.end(end_time=start_ns + int((record.latency_ms or 0) * 1_000_000))
        except Exception:  # noqa: BLE001 - tracing must never break the agent
            self._fail("emit a model-call span", record.id)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: internal errors, and spans open now."""
        with self._lock:
            return {**self._counters, "open": len(self._spans)}

    # -- helpers -----------------------------------------------------------------------------

    def _open(
        self,
        run_id: Hashable,
        parent_run_id: Hashable | None,
        name: str,
        attributes: dict[str, Any],
        *,
        root: bool = False,
    ) -> None:
        context = self._parent_context(parent_run_id, root=root)
        self._spans[run_id] = self._tracer.start_span(name, context=context, attributes=attributes)

    def _parent_context(self, parent_run_id: Hashable | None, *, root: bool) -> Context | None:
        parent = self._spans.get(parent_run_id) if parent_run_id is not None else None
        if parent is not None:
            return trace.set_span_in_context(parent, Context())
        if root and self.join_ambient:
            return None
        # An unknown parent starts a new trace: the ambient span may belong to another branch.
        return Context()

    def _node_attributes(self, node: str | None) -> Iterator[tuple[str, Any]]:
        if node is None:
            return
        yield sc.SLMSHIFT_NODE, node
        if self.node_attribute is not None:
            yield self.node_attribute, node

    def _redact_tool_text(self, name: str, call_id: str | None, value: Any, *, role: str) -> str:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if self.redactor is None:
            return text
        # The redactor takes records, so tool text travels through a one-message record.
        if role == "tool":
            message = Message(role="tool", content=text, tool_call_id=call_id)
        else:
            message = Message(role="assistant", tool_calls=(ToolCall(name, id=call_id, arguments_raw=text),))
        redacted = self.redactor(CallRecord(messages=(message,)))
        out = redacted.messages[0]
        return out.text if role == "tool" else (out.tool_calls[0].arguments_raw or "")

    def _add(self, counter: str) -> None:
        with self._lock:
            self._counters[counter] += 1

    def _fail(self, action: str, run_id: Any) -> None:
        """Count and log the exception being handled, without its message (it may hold content)."""
        self._add("errors")
        error = sys.exc_info()[1]
        details = traceback_without_messages(error) if error is not None else ""
        logger.error("Failed to %s for run %s; the agent is not affected. %s", action, run_id, details)


def model_call_attributes(
    record: CallRecord,
    *,
    operation: str = sc.OPERATION_CHAT,
    request_parameters: Mapping[str, Any] | None = None,
    capture_content: bool = False,
    node_attribute: str | None = None,
) -> dict[str, Any]:
    """Build the GenAI attributes of a model-call span from a (redacted) record."""
    attributes: dict[str, Any] = {sc.GEN_AI_OPERATION_NAME: operation}
    extractors = [
        _model_attributes(record),
        _usage_attributes(record),
        _identity_attributes(record, node_attribute),
        _request_attributes(request_parameters or {}),
    ]
    if capture_content:
        extractors.append(_content_attributes(record))
    for extractor in extractors:
        attributes.update(extractor)
    return attributes


# -- extractors: each yields (key, value) pairs and skips what the record lacks ---------------


def _model_attributes(record: CallRecord) -> Iterator[tuple[str, Any]]:
    if record.provider:
        yield sc.GEN_AI_PROVIDER_NAME, record.provider
    if record.model:
        yield sc.GEN_AI_REQUEST_MODEL, record.model
        yield sc.GEN_AI_RESPONSE_MODEL, record.metadata.get("response_model") or record.model
    if record.finish_reason:
        yield sc.GEN_AI_RESPONSE_FINISH_REASONS, (record.finish_reason,)
    if record.output_kind:
        yield sc.SLMSHIFT_OUTPUT_KIND, record.output_kind


def _usage_attributes(record: CallRecord) -> Iterator[tuple[str, Any]]:
    if record.usage.input_tokens is not None:
        yield sc.GEN_AI_USAGE_INPUT_TOKENS, record.usage.input_tokens
    if record.usage.output_tokens is not None:
        yield sc.GEN_AI_USAGE_OUTPUT_TOKENS, record.usage.output_tokens


def _identity_attributes(record: CallRecord, node_attribute: str | None) -> Iterator[tuple[str, Any]]:
    yield sc.SLMSHIFT_RECORD_ID, record.id
    if record.agent:
        yield sc.GEN_AI_AGENT_NAME, record.agent
    if record.node:
        yield sc.SLMSHIFT_NODE, record.node
        if node_attribute is not None:
            yield node_attribute, record.node
    conversation_id = record.metadata.get("thread_id") or record.metadata.get("conversation_id")
    if conversation_id is not None:
        yield sc.GEN_AI_CONVERSATION_ID, str(conversation_id)


def _request_attributes(parameters: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for name, key in sc.REQUEST_PARAMETER_ATTRIBUTES.items():
        value = parameters.get(name)
        if value is None:
            continue
        if key == sc.GEN_AI_REQUEST_STOP_SEQUENCES:
            value = (value,) if isinstance(value, str) else tuple(str(item) for item in value)
        if isinstance(value, (bool, int, float, str, tuple)):
            yield key, value


def _content_attributes(record: CallRecord) -> Iterator[tuple[str, Any]]:
    messages = [message_to_genai(message) for message in record.messages]
    yield sc.GEN_AI_INPUT_MESSAGES, _compact_json(messages)
    if record.response is not None:
        output = message_to_genai(record.response, finish_reason=record.finish_reason or "stop")
        yield sc.GEN_AI_OUTPUT_MESSAGES, _compact_json([output])
    if record.tools:
        yield sc.GEN_AI_TOOL_DEFINITIONS, _compact_json([tool_to_genai(t) for t in record.tools])


def _agent_attributes(agent: str | None, conversation_id: str | None) -> Iterator[tuple[str, Any]]:
    yield sc.GEN_AI_OPERATION_NAME, sc.OPERATION_INVOKE_AGENT
    if agent:
        yield sc.GEN_AI_AGENT_NAME, agent
    if conversation_id:
        yield sc.GEN_AI_CONVERSATION_ID, conversation_id


def _tool_attributes(name: str, call_id: str | None) -> Iterator[tuple[str, Any]]:
    yield sc.GEN_AI_OPERATION_NAME, sc.OPERATION_EXECUTE_TOOL
    yield sc.GEN_AI_TOOL_NAME, name
    yield sc.GEN_AI_TOOL_TYPE, "function"
    if call_id:
        yield sc.GEN_AI_TOOL_CALL_ID, call_id


def _mark_error(span: trace.Span, error: BaseException | str) -> None:
    if isinstance(error, BaseException):
        span.set_attribute(sc.ERROR_TYPE, type(error).__qualname__)
        span.set_status(Status(StatusCode.ERROR, str(error)))
    else:
        span.set_attribute(sc.ERROR_TYPE, _error_type(error))
        span.set_status(Status(StatusCode.ERROR, error))


def _error_type(error_text: str) -> str:
    head = error_text.split(":", 1)[0].strip()
    return head if head.isidentifier() else "error"


def _datetime_ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _resolve_capture_content(requested: bool | None) -> bool:
    if requested is not None:
        return requested
    for name in CAPTURE_CONTENT_ENV_VARS:
        value = env_flag(name)
        if value is not None:
            return value
    return False

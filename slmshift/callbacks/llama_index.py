"""Capture the model calls of LlamaIndex agents through the instrumentation dispatcher.

`LlamaIndexTraceHandler` attaches a span handler and an event handler to the root dispatcher
of `llama_index.core.instrumentation`. Span notices give the call tree: a workflow's `run`
span is the agent run, its steps are children, and `run_agent_step` names the agent taking its
turn (`ev.current_agent_name`). LLM events (`LLMChatStartEvent`, `LLMChatEndEvent`, and the
completion pair) give the call's content. Each call becomes a `CallRecord` whose `node` is the
workflow agent that made it.

Handlers on the root dispatcher are process-wide: an installed handler receives every
LlamaIndex call, from every thread and event loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events.llm import (
    LLMChatEndEvent,
    LLMChatInProgressEvent,
    LLMChatStartEvent,
    LLMCompletionEndEvent,
    LLMCompletionInProgressEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.workflow import Workflow
from pydantic import PrivateAttr

from slmshift.callbacks._llama_index_records import (
    finish_reason_from_response,
    json_text,
    message_from_llama,
    model_from_dict,
    request_parameters,
    tools_from_llama,
    usage_from_response,
)
from slmshift.callbacks._stats import traceback_without_messages
from slmshift.integrations import _semconv as sc
from slmshift.records import CallRecord, Message
from slmshift.store.base import TraceStore

logger = logging.getLogger(__name__)

Redactor = Callable[[CallRecord], CallRecord]

AGENT_STEP_METHOD = "run_agent_step"
TOOL_STEP_METHOD = "call_tool"
DEFAULT_MAX_OPEN_CALLS = 10_000
# How far up the span tree a model call looks for an enclosing model call.
MAX_NESTED_CALL_DEPTH = 4
STREAM_NOT_FINISHED = "IncompleteStream: the run ended before the model's stream finished"


@dataclass
class _SpanState:
    """Handler state for one open LlamaIndex span."""

    root_id: str
    # Nearest span (this one or an ancestor) that was emitted as an OTel span.
    anchor_id: str | None
    agent_name: str | None
    kind: str  # "run", "step", "tool" or "other"
    parent_id: str | None = None
    tool: tuple[str, str | None] | None = None


@dataclass
class _RunState:
    """Per-run state, freed when the run's root span ends."""

    current_agent: str | None = None
    open_calls: set[str] = field(default_factory=set)


@dataclass
class _OpenCall:
    """A model call between its start event and its end event."""

    span_id: str
    root_id: str
    anchor_id: str | None
    node: str | None
    messages: tuple[Message, ...]
    tools: tuple[Any, ...]
    model: str | None
    provider: str | None
    parameters: dict[str, Any]
    operation: str
    started_at: datetime
    started: float
    chunks: int = 0


class LlamaIndexTraceHandler:
    """Record every LLM call of LlamaIndex agents into a trace store, optionally as OTel spans.

    Args:
        store: Where records go.
        agent: Name stored in each record's `agent` field.
        tracer_provider: Also emit GenAI spans (run, agent steps, model calls, tool calls)
            through this provider; `None` emits nothing.
        redactor: Applied to each record before it is stored or put on a span.
        capture_content: Put message content on spans (see `SpanEmitter`).
        max_open_calls: Calls waiting for their end event; beyond this the oldest is written
            as failed. Guards against streams that are never consumed.

    Use `install()` and `uninstall()`, or `with LlamaIndexTraceHandler(...):`. Hooks never
    raise into LlamaIndex: failures are logged and counted in `stats["errors"]`.
    """

    def __init__(
        self,
        store: TraceStore,
        agent: str | None = None,
        *,
        tracer_provider: Any = None,
        redactor: Redactor | None = None,
        capture_content: bool | None = None,
        max_open_calls: int = DEFAULT_MAX_OPEN_CALLS,
    ) -> None:
        self.store = store
        self.agent = agent
        self.redactor = redactor
        self.max_open_calls = max_open_calls
        self._emitter = None
        if tracer_provider is not None:
            from slmshift.integrations.opentelemetry import SpanEmitter

            self._emitter = SpanEmitter(
                tracer_provider,
                agent=agent,
                capture_content=capture_content,
                redactor=redactor,
                node_attribute=sc.GEN_AI_AGENT_NAME,
            )
        self._spans: dict[str, _SpanState] = {}
        self._runs: dict[str, _RunState] = {}
        self._calls: dict[str, _OpenCall] = {}
        self._lock = threading.Lock()
        self._counters = {"calls": 0, "records": 0, "dropped": 0, "errors": 0}
        self._span_hook = _SpanHook(self)
        self._event_hook = _EventHook(self)
        self._installed = False

    # -- lifecycle ---------------------------------------------------------------------------

    def install(self) -> LlamaIndexTraceHandler:
        """Attach to the LlamaIndex root dispatcher; a second call does nothing."""
        if self._installed:
            return self
        dispatcher = get_dispatcher()
        dispatcher.add_span_handler(self._span_hook)
        dispatcher.add_event_handler(self._event_hook)
        self._installed = True
        return self

    def uninstall(self) -> None:
        """Detach from the dispatcher, close open spans and write calls still open as failed."""
        if not self._installed:
            return
        dispatcher = get_dispatcher()
        _remove(dispatcher.span_handlers, self._span_hook)
        _remove(dispatcher.event_handlers, self._event_hook)
        self._installed = False
        for call in list(self._calls.values()):
            self._finish_call(call, error="HandlerRemoved: uninstalled before the call ended")
        self._spans.clear()
        self._runs.clear()
        if self._emitter is not None:
            self._emitter.end_all()

    def __enter__(self) -> LlamaIndexTraceHandler:
        return self.install()

    def __exit__(self, *exc_info: object) -> None:
        self.uninstall()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the store has written every record; return False on timeout."""
        return self.store.flush(timeout)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: calls seen, records written, records dropped by the store, errors, and
        the runs, spans and calls still open."""
        with self._lock:
            counters = dict(self._counters)
        counters.update(open_runs=len(self._runs), open_spans=len(self._spans), open_calls=len(self._calls))
        return counters

    # -- span notices ------------------------------------------------------------------------

    def on_span_enter(self, span_id: str, bound_args: Any, instance: Any, parent_id: str | None) -> None:
        parent = self._spans.get(parent_id) if parent_id is not None else None
        method = _method_name(span_id)
        arguments = getattr(bound_args, "arguments", {})
        if parent is None:
            self._enter_root(span_id, instance, method)
            return
        run = self._runs.get(parent.root_id)
        event = arguments.get("ev")
        agent_name = getattr(event, "current_agent_name", None) or parent.agent_name
        if method == AGENT_STEP_METHOD and agent_name is None:
            agent_name = getattr(instance, "name", None)
        if run is not None and agent_name is not None:
            run.current_agent = agent_name
        state = _SpanState(parent.root_id, parent.anchor_id, agent_name, "other", parent_id)
        if parent.kind == "run":
            self._enter_step(span_id, state, method, event, run)
        self._spans[span_id] = state

    def on_span_exit(self, span_id: str, result: Any = None, error: BaseException | None = None) -> None:
        state = self._spans.pop(span_id, None)
        if error is not None and span_id in self._calls:
            self._finish_call(self._calls[span_id], error=f"{type(error).__qualname__}: {error}")
        if state is None:
            return
        if self._emitter is not None and state.anchor_id == span_id:
            self._end_emitted(span_id, state, result, error)
        if state.kind == "run":
            self._end_run(span_id)

    def _enter_root(self, span_id: str, instance: Any, method: str) -> None:
        if not (isinstance(instance, Workflow) and method == "run"):
            # A model call outside any workflow is its own root, with no run span.
            self._spans[span_id] = _SpanState(span_id, None, None, "other")
            return
        name = getattr(instance, "name", None)
        self._spans[span_id] = _SpanState(span_id, span_id, name if isinstance(name, str) else None, "run")
        self._runs[span_id] = _RunState()
        if self._emitter is not None:
            self._emitter.start_run(span_id, name=self.agent or type(instance).__name__)

    def _enter_step(
        self, span_id: str, state: _SpanState, method: str, event: Any, run: _RunState | None
    ) -> None:
        state.kind = "step"
        if method == TOOL_STEP_METHOD and event is not None:
            state.kind = "tool"
            state.tool = (str(getattr(event, "tool_name", "")), getattr(event, "tool_id", None))
        if self._emitter is None:
            return
        node = state.agent_name or (run.current_agent if run is not None else None)
        if state.kind == "tool":
            name, call_id = state.tool or ("", None)
            self._emitter.start_tool(
                span_id,
                state.anchor_id,
                name=name,
                call_id=call_id,
                arguments=getattr(event, "tool_kwargs", None),
                node=node,
            )
        elif method == AGENT_STEP_METHOD and node is not None:
            self._emitter.start_step(span_id, state.anchor_id, name=method, node=node, agent_step=True)
        else:
            self._emitter.start_step(
                span_id,
                state.anchor_id,
                name=method,
                node=node,
                attributes={sc.LLAMA_INDEX_STEP: method},
            )
        state.anchor_id = span_id

    def _end_emitted(self, span_id: str, state: _SpanState, result: Any, error: BaseException | None) -> None:
        assert self._emitter is not None
        if state.kind != "tool":
            self._emitter.end(span_id, error=error)
            return
        output = getattr(result, "tool_output", None)
        if error is None and getattr(output, "is_error", False):
            error_text = f"ToolError: {getattr(output, 'content', '')}"
        else:
            error_text = None
        name, call_id = state.tool or ("", None)
        self._emitter.end_tool(
            span_id,
            result=getattr(output, "content", None) if output is not None else None,
            error=error or error_text,
            name=name,
            call_id=call_id,
        )

    def _end_run(self, root_id: str) -> None:
        run = self._runs.pop(root_id, None)
        if run is None:
            return
        for call_id in list(run.open_calls):
            call = self._calls.get(call_id)
            if call is not None:
                self._finish_call(call, error=STREAM_NOT_FINISHED)

    # -- LLM events --------------------------------------------------------------------------

    def on_event(self, event: Any) -> None:
        if isinstance(event, LLMChatStartEvent):
            messages = tuple(message_from_llama(message) for message in event.messages)
            self._start_call(event, messages, sc.OPERATION_CHAT)
        elif isinstance(event, LLMCompletionStartEvent):
            messages = (Message(role="user", content=event.prompt),)
            self._start_call(event, messages, sc.OPERATION_TEXT_COMPLETION)
        elif isinstance(event, (LLMChatInProgressEvent, LLMCompletionInProgressEvent)):
            call = self._calls.get(event.span_id or "")
            if call is not None:
                call.chunks += 1
        elif isinstance(event, LLMChatEndEvent):
            self._end_call(event, event.response, _chat_response_message(event.response))
        elif isinstance(event, LLMCompletionEndEvent):
            text = getattr(event.response, "text", None)
            self._end_call(event, event.response, Message(role="assistant", content=text))

    def _start_call(self, event: Any, messages: tuple[Message, ...], operation: str) -> None:
        span_id = event.span_id or event.id_
        state = self._spans.get(span_id)
        if self._inside_open_call(state):
            # An LLM method that calls another one (`achat` running `chat`) emits both start
            # events; the outer call is the one the agent made.
            return
        root_id = state.root_id if state is not None else span_id
        run = self._runs.get(root_id)
        node = state.agent_name if state is not None else None
        if node is None and run is not None:
            node = run.current_agent

        extra = dict(event.additional_kwargs or {})
        model, provider = model_from_dict(event.model_dict or {})
        call = _OpenCall(
            span_id=span_id,
            root_id=root_id,
            anchor_id=state.anchor_id if state is not None else None,
            node=node,
            messages=messages,
            tools=tools_from_llama(extra.get("tools")),
            model=model,
            provider=provider,
            parameters=request_parameters(event.model_dict or {}, extra),
            operation=operation,
            started_at=datetime.now(timezone.utc),
            started=time.perf_counter(),
        )

        self._calls[span_id] = call
        if run is not None:
            run.open_calls.add(span_id)
        self._add("calls")
        if len(self._calls) > self.max_open_calls:
            oldest = next(iter(self._calls.values()))
            self._finish_call(oldest, error="IncompleteCall: too many calls open at once")

    def _inside_open_call(self, state: _SpanState | None) -> bool:
        for _ in range(MAX_NESTED_CALL_DEPTH):
            if state is None or state.parent_id is None:
                return False
            if state.parent_id in self._calls:
                return True
            state = self._spans.get(state.parent_id)
        return False

    def _end_call(self, event: Any, response: Any, message: Message | None) -> None:
        call = self._calls.get(event.span_id or event.id_)
        if call is None:
            return
        error = None if response is not None else "EmptyResponse: the model returned no response"
        self._finish_call(call, response=response, message=message, error=error)

    def _finish_call(
        self,
        call: _OpenCall,
        *,
        response: Any = None,
        message: Message | None = None,
        error: str | None = None,
    ) -> None:
        if self._calls.pop(call.span_id, None) is None:
            return
        run = self._runs.get(call.root_id)
        if run is not None:
            run.open_calls.discard(call.span_id)
        record = self._build_record(call, response, message, error)
        if self.redactor is not None:
            record = self.redactor(record)
        if self.store.add(record):
            self._add("records")
        else:
            self._add("dropped")
        if self._emitter is not None:
            self._emitter.emit_model_call(
                record,
                parent_run_id=call.anchor_id,
                operation=call.operation,
                request_parameters=call.parameters,
                redacted=True,
            )

    def _build_record(
        self, call: _OpenCall, response: Any, message: Message | None, error: str | None
    ) -> CallRecord:
        metadata: dict[str, Any] = {"framework": "llama_index", "span_id": call.span_id}
        if call.parameters:
            metadata["request_parameters"] = {k: json_text(v) for k, v in call.parameters.items()}
        if call.chunks:
            metadata["stream_chunks"] = call.chunks
        return CallRecord(
            trace_id=call.root_id,
            parent_id=call.anchor_id,
            agent=self.agent,
            node=call.node,
            model=call.model,
            provider=call.provider,
            messages=call.messages,
            tools=call.tools,
            response=message if error is None else None,
            usage=usage_from_response(response),
            latency_ms=(time.perf_counter() - call.started) * 1000,
            started_at=call.started_at,
            error=error,
            finish_reason=finish_reason_from_response(response, message) if error is None else None,
            metadata=metadata,
        )

    # -- guards ------------------------------------------------------------------------------

    def guarded(self, action: str, function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Run a hook, logging and counting any failure instead of raising into LlamaIndex."""
        try:
            function(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - capture must never break the agent
            self._add("errors")
            logger.error(
                "LlamaIndex capture failed to %s; the agent is not affected. %s",
                action,
                traceback_without_messages(exc),
            )

    def _add(self, counter: str) -> None:
        with self._lock:
            self._counters[counter] += 1


class _SpanHook(BaseSpanHandler[Any]):
    """Forwards span notices to the handler; it keeps no spans of its own."""

    _owner: Any = PrivateAttr()

    def __init__(self, owner: LlamaIndexTraceHandler) -> None:
        super().__init__()
        self._owner = owner

    @classmethod
    def class_name(cls) -> str:
        return "SlmshiftSpanHook"

    def span_enter(self, id_: str, bound_args: Any, instance: Any = None, parent_id: str | None = None, tags: Any = None, **kwargs: Any) -> None:
        self._owner.guarded("open a span", self._owner.on_span_enter, id_, bound_args, instance, parent_id)

    def span_exit(self, id_: str, bound_args: Any, instance: Any = None, result: Any = None, **kwargs: Any) -> None:
        self._owner.guarded("close a span", self._owner.on_span_exit, id_, result)

    def span_drop(self, id_: str, bound_args: Any, instance: Any = None, err: BaseException | None = None, **kwargs: Any) -> None:
        self._owner.guarded("close a failed span", self._owner.on_span_exit, id_, None, err)

    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class _EventHook(BaseEventHandler):
    """Forwards instrumentation events to the handler."""

    _owner: Any = PrivateAttr()

    def __init__(self, owner: LlamaIndexTraceHandler) -> None:
        super().__init__()
        self._owner = owner

    @classmethod
    def class_name(cls) -> str:
        return "SlmshiftEventHook"

    def handle(self, event: Any, **kwargs: Any) -> None:
        self._owner.guarded("read an event", self._owner.on_event, event)


def _method_name(span_id: str) -> str:
    # The dispatcher names spans "<Class>.<method>-<uuid4>" (or "<qualname>-<uuid4>").
    return span_id.rsplit("-", 5)[0].rsplit(".", 1)[-1]


def _chat_response_message(response: Any) -> Message | None:
    if response is None:
        return None
    return message_from_llama(response.message)


def _remove(handlers: list[Any], handler: Any) -> None:
    for index, existing in enumerate(handlers):
        if existing is handler:
            del handlers[index]
            return

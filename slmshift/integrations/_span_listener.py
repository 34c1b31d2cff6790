"""The run listener that turns LangChain handler run events into spans.

`LangChainTraceHandler(tracer_provider=...)` adds a `SpanListener`. Agent runs become
`invoke_agent` spans, graph nodes become node spans, tools become `execute_tool` spans and
model calls become `chat` or `text_completion` spans built from the stored record. Plain chain
runs (LCEL pieces, LangGraph's internal writers) get no span of their own: their children
attach to the nearest run that has one.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from datetime import datetime, timezone
from typing import Any

from opentelemetry.trace import TracerProvider

from slmshift.callbacks.events import RunEnd, RunStart
from slmshift.integrations import _semconv as sc
from slmshift.integrations._span_emitter import Redactor, SpanEmitter
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# LangChain model metadata (`ls_*`) to request parameter names.
_LS_PARAMETERS = {"ls_temperature": "temperature", "ls_max_tokens": "max_tokens", "ls_stop": "stop"}


class SpanListener:
    """Emit GenAI spans for the runs a LangChain capture handler reports.

    Args:
        tracer_provider: Where spans go.
        agent: Agent name for the run spans (`gen_ai.agent.name`).
        capture_content: Put messages on model-call spans; see `SpanEmitter`.
        redactor: Used only for tool text; records arrive already redacted by the handler.
        join_ambient: Make agent-run spans children of the span current when the run starts.

    Called on the agent's thread. Emitter failures are logged and counted in
    `emitter.stats`, and the handler counts anything else a listener raises.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider,
        *,
        agent: str | None = None,
        capture_content: bool | None = None,
        redactor: Redactor | None = None,
        join_ambient: bool = False,
    ) -> None:
        self.emitter = SpanEmitter(
            tracer_provider,
            agent=agent,
            capture_content=capture_content,
            redactor=redactor,
            node_attribute=sc.LANGGRAPH_NODE,
            join_ambient=join_ambient,
        )
        # Runs without a span of their own, mapped to the nearest ancestor that has one.
        self._anchors: dict[Hashable, Hashable | None] = {}
        self._model_starts: dict[Hashable, RunStart] = {}

    def on_run_start(self, event: RunStart) -> None:
        parent = self._anchor_of(event.parent_run_id)
        if event.kind == "agent":
            conversation = event.metadata.get("thread_id")
            self.emitter.start_run(
                event.run_id,
                parent_run_id=parent,
                name=self.emitter.agent or event.name,
                conversation_id=str(conversation) if conversation is not None else None,
            )
        elif event.kind == "node":
            name = event.name or event.node or "node"
            self.emitter.start_step(event.run_id, parent, name=name, node=event.node or name, step=event.step)
        elif event.kind == "tool":
            self.emitter.start_tool(event.run_id, parent, name=event.name or "tool", node=event.node)
        elif event.kind == "llm":
            self._model_starts[event.run_id] = event
        else:
            self._anchors[event.run_id] = parent

    def on_run_end(self, event: RunEnd) -> None:
        if event.kind == "llm":
            self._end_model_call(event)
        elif event.kind == "chain":
            self._anchors.pop(event.run_id, None)
        else:
            self.emitter.end(event.run_id, error=event.error)

    def _end_model_call(self, event: RunEnd) -> None:
        start = self._model_starts.pop(event.run_id, None)
        if start is None:
            return
        record = event.record
        include_content = record is not None
        if record is None:
            # The handler dropped the record (store full, redactor failed): the span still
            # shows the call, without content.
            record = _placeholder_record(start, event)
        operation = sc.OPERATION_TEXT_COMPLETION if start.metadata.get("ls_model_type") == "llm" else sc.OPERATION_CHAT
        self.emitter.emit_model_call(
            record,
            parent_run_id=self._anchor_of(start.parent_run_id),
            operation=operation,
            request_parameters=_request_parameters(start.metadata),
            redacted=True,
            include_content=include_content,
        )

    def _anchor_of(self, run_id: Hashable | None) -> Hashable | None:
        if run_id is None:
            return None
        return self._anchors.get(run_id, run_id)


def _request_parameters(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {name: metadata[key] for key, name in _LS_PARAMETERS.items() if metadata.get(key) is not None}


def _placeholder_record(start: RunStart, end: RunEnd) -> CallRecord:
    error = None
    if end.error is not None:
        error = f"{type(end.error).__qualname__}: {end.error}"
    return CallRecord(
        messages=(),
        node=start.node,
        model=start.metadata.get("ls_model_name"),
        provider=start.metadata.get("ls_provider"),
        started_at=datetime.fromtimestamp(start.start_time_ns / 1e9, tz=timezone.utc),
        latency_ms=(end.end_time_ns - start.start_time_ns) / 1e6,
        error=error,
    )

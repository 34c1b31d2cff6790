"""OpenTelemetry bridges: spans out of slmshift's handlers, and spans in from other tools.

Spans out: give a capture handler `tracer_provider=...` and it emits, through a
`SpanEmitter`, one span per agent run, node or agent step, model call and tool call, with the
GenAI semantic-convention attributes listed in `slmshift.integrations._semconv`. Nothing is
exported unless a provider is given. `otlp_tracer_provider(endpoint)` builds a provider whose
export never makes the agent wait, whatever the backend does.

Spans in: `TraceStoreSpanExporter(store)` is an OTel `SpanExporter` that turns the model-call
spans of OpenInference, OpenLLMetry (or any GenAI semantic-convention instrumentation) into
call records, so an application instrumented with those feeds the store without our handler.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from slmshift.integrations._span_emitter import (
    CAPTURE_CONTENT_ENV_VARS,
    Redactor,
    SpanEmitter,
    model_call_attributes,
)
from slmshift.integrations._span_export import (
    QueueSpanProcessor,
    otlp_tracer_provider,
    span_export_stats,
)
from slmshift.integrations._span_listener import SpanListener
from slmshift.integrations._span_records import (
    SpanData,
    agent_step_name,
    is_model_call,
    span_to_record,
)
from slmshift.records import CallRecord
from slmshift.store.base import TraceStore

logger = logging.getLogger(__name__)

__all__ = [
    "CAPTURE_CONTENT_ENV_VARS",
    "QueueSpanProcessor",
    "Redactor",
    "SpanData",
    "SpanEmitter",
    "SpanListener",
    "TraceStoreSpanExporter",
    "model_call_attributes",
    "otlp_tracer_provider",
    "span_data_from_readable",
    "span_export_stats",
]

DEFAULT_MAX_PENDING_RECORDS = 10_000


class TraceStoreSpanExporter(SpanExporter):
    """An OTel `SpanExporter` that writes model-call spans to a trace store as call records.

    Add it to a `TracerProvider` with a span processor (`BatchSpanProcessor` or
    `QueueSpanProcessor`) next to, or instead of, the exporter to your backend.

    A model-call span that names no node waits until its parent span is exported (a parent
    ends after its children), so that a LlamaIndex `run_agent_step` parent can name the
    agent. At most `max_pending` records wait; `force_flush` and `shutdown` write the rest.

    Args:
        store: Where records go (`store.add`, which does not block).
        agent: Agent name for every record; default `gen_ai.agent.name` or the resource's
            `service.name`.
        max_pending: Records kept waiting for their parent span before they are written
            without a node.
    """

    def __init__(
        self,
        store: TraceStore,
        *,
        agent: str | None = None,
        max_pending: int = DEFAULT_MAX_PENDING_RECORDS,
    ) -> None:
        self.store = store
        self.agent = agent
        self.max_pending = max_pending
        # Parent span id to the records of its children that still lack a node.
        self._pending: OrderedDict[str, list[CallRecord]] = OrderedDict()
        self._pending_count = 0
        self._lock = threading.Lock()
        self._counters = {"spans": 0, "records": 0, "errors": 0}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Convert and store the model calls among `spans`; FAILURE only if a span failed."""
        result = SpanExportResult.SUCCESS
        for span in spans:
            if not self.consume(span_data_from_readable(span)):
                result = SpanExportResult.FAILURE
        return result

    def consume(self, span: SpanData) -> bool:
        """Take one span in neutral form; return False when it could not be converted."""
        try:
            self._consume(span)
            return True
        except Exception:  # noqa: BLE001 - a bad span must not stop the rest of the batch
            self._add("errors", 1)
            logger.exception("Failed to convert span %s (%s) to a call record.", span.span_id, span.name)
            return False

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Write records still waiting for their parent span, without a node."""
        with self._lock:
            waiting = [record for records in self._pending.values() for record in records]
            self._pending.clear()
            self._pending_count = 0
        for record in waiting:
            self._write(record)
        return True

    def shutdown(self) -> None:
        self.force_flush()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: spans seen, records written, spans that failed to convert, and pending."""
        with self._lock:
            return {**self._counters, "pending": self._pending_count}

    # -- helpers -----------------------------------------------------------------------------

    def _consume(self, span: SpanData) -> None:
        self._add("spans", 1)
        with self._lock:
            children = self._pending.pop(span.span_id, [])
            self._pending_count -= len(children)
        if children:
            node = agent_step_name(span)
            for record in children:
                self._write(record.replace(node=node) if node else record)
        if not is_model_call(span):
            return
        record = span_to_record(span, agent=self.agent)
        if record.node is None and span.parent_span_id is not None:
            self._wait_for_parent(span.parent_span_id, record)
        else:
            self._write(record)

    def _wait_for_parent(self, parent_span_id: str, record: CallRecord) -> None:
        overflow: list[CallRecord] = []
        with self._lock:
            self._pending.setdefault(parent_span_id, []).append(record)
            self._pending_count += 1
            while self._pending_count > self.max_pending:
                _, oldest = self._pending.popitem(last=False)
                self._pending_count -= len(oldest)
                overflow.extend(oldest)
        for waiting in overflow:
            self._write(waiting)

    def _write(self, record: CallRecord) -> None:
        if self.store.add(record):
            self._add("records", 1)

    def _add(self, counter: str, amount: int) -> None:
        with self._lock:
            self._counters[counter] += amount


def span_data_from_readable(span: ReadableSpan) -> SpanData:
    """Convert an SDK `ReadableSpan` to the neutral `SpanData` form."""
    context = span.get_span_context()
    parent = span.parent
    error = None
    if span.status.status_code is StatusCode.ERROR:
        error = span.status.description or "error"
    resource: dict[str, Any] = dict(span.resource.attributes) if span.resource is not None else {}
    return SpanData(
        name=span.name,
        trace_id=format_trace_id(context.trace_id),
        span_id=format_span_id(context.span_id),
        parent_span_id=format_span_id(parent.span_id) if parent is not None else None,
        start_ns=span.start_time or 0,
        end_ns=span.end_time,
        attributes=dict(span.attributes or {}),
        error=error,
        resource=resource,
    )

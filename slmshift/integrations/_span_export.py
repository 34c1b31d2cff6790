"""Span export that never makes the agent wait: a bounded queue, a worker thread, counted drops.

`QueueSpanProcessor` does what the SDK's `BatchSpanProcessor` does (spans leave the agent's
thread through a queue and a worker thread exports them in batches), with three differences
that matter when the backend is slow or dead:

- spans dropped because the queue is full are counted in `stats` and logged at most once per
  `DROP_LOG_INTERVAL_S`, not once per span;
- `force_flush(timeout_millis)` waits at most its timeout (opentelemetry-sdk 1.45's
  `BatchSpanProcessor.force_flush` ignores the timeout and exports in the caller's thread);
- `shutdown(timeout_millis)` returns within its timeout even while an export hangs.

The export worker is the only thread that talks to the backend. An export to a collector that
accepts connections and never answers blocks that worker for the exporter's timeout; meanwhile
`on_end` keeps appending to the queue and drops (and counts) spans once it is full.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

logger = logging.getLogger(__name__)

DEFAULT_MAX_QUEUE_SIZE = 8192
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_SCHEDULE_DELAY_MILLIS = 1000
DEFAULT_EXPORT_TIMEOUT_MILLIS = 3000
DEFAULT_SHUTDOWN_TIMEOUT_MILLIS = 5000
DROP_LOG_INTERVAL_S = 30.0
_WORKER_JOIN_MILLIS = 100


class QueueSpanProcessor(SpanProcessor):
    """Queue finished spans and export them in batches from one worker thread.

    Thread contract: `on_end` may be called from any thread; it never blocks on the exporter
    and never raises. `force_flush` and `shutdown` block their caller for at most their
    timeout. `stats` counts queued, exported, dropped (queue full or after shutdown) and failed
    (the exporter returned FAILURE or raised) spans.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        schedule_delay_millis: float = DEFAULT_SCHEDULE_DELAY_MILLIS,
    ) -> None:
        if max_queue_size < 1:
            raise ValueError(f"max_queue_size must be at least 1, got {max_queue_size}.")
        if not 1 <= max_export_batch_size <= max_queue_size:
            raise ValueError(
                f"max_export_batch_size must be between 1 and max_queue_size ({max_queue_size}), "
                f"got {max_export_batch_size}."
            )
        self._exporter = exporter
        self._max_queue_size = max_queue_size
        self._max_export_batch_size = max_export_batch_size
        self._schedule_delay_s = schedule_delay_millis / 1000
        # A deque without maxlen: a full queue must reject the new span and count it, where a
        # maxlen deque would silently push out the oldest one.
        self._queue: collections.deque[ReadableSpan] = collections.deque()
        # `queued` is derived in `stats`, so that `on_end` takes no lock on the common path.
        self._counters = {"exported": 0, "dropped": 0, "failed": 0, "dropped_at_shutdown": 0}
        self._counter_lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._exporting = False
        self._in_flight = 0
        self._shutdown = False
        self._last_drop_log = 0.0
        self._worker = threading.Thread(target=self._run, name="slmshift-span-export", daemon=True)
        self._worker.start()

    # -- SpanProcessor -----------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._shutdown or len(self._queue) >= self._max_queue_size:
            self._count_drop()
            return
        self._queue.append(span)
        if len(self._queue) >= self._max_export_batch_size:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Wait until the queue is exported; return False when `timeout_millis` ran out first."""
        deadline = time.monotonic() + timeout_millis / 1000
        self._wake.set()
        with self._idle:
            while self._queue or self._exporting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def shutdown(self, timeout_millis: int = DEFAULT_SHUTDOWN_TIMEOUT_MILLIS) -> None:
        """Export the queued spans within `timeout_millis`, then stop; spans left are dropped.

        Returns within `timeout_millis` plus the exporter's own `shutdown` time (the OTLP
        exporter closes its HTTP session and returns at once).
        """
        if self._shutdown:
            return
        flushed = self.force_flush(max(timeout_millis - _WORKER_JOIN_MILLIS, 0))
        self._shutdown = True
        self._wake.set()
        self._worker.join(_WORKER_JOIN_MILLIS / 1000)
        left = len(self._queue)
        if left:
            self._queue.clear()
            self._add("dropped", left)
            self._add("dropped_at_shutdown", left)
        if not flushed:
            logger.warning(
                "Span export did not finish within %d ms at shutdown; %d spans dropped.",
                timeout_millis,
                left,
            )
        try:
            self._exporter.shutdown()
        except Exception:  # noqa: BLE001 - shutdown must not raise into the application
            logger.exception("Span exporter %r failed to shut down.", self._exporter)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: queued (accepted into the queue), exported, dropped and failed spans."""
        with self._counter_lock:
            counters = dict(self._counters)
        # Every accepted span is exported, failed, still queued, in the batch being exported,
        # or dropped at shutdown.
        at_shutdown = counters.pop("dropped_at_shutdown")
        in_queue = len(self._queue) + self._in_flight
        counters["queued"] = counters["exported"] + counters["failed"] + in_queue + at_shutdown
        return counters

    # -- worker ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._shutdown:
            self._wake.wait(self._schedule_delay_s)
            self._wake.clear()
            while self._queue and not self._shutdown:
                self._export_one_batch()
            with self._idle:
                self._idle.notify_all()

    def _export_one_batch(self) -> None:
        batch = []
        with self._idle:
            self._exporting = True
            while self._queue and len(batch) < self._max_export_batch_size:
                batch.append(self._queue.popleft())
            self._in_flight = len(batch)
        try:
            result = self._exporter.export(batch)
        except Exception:  # noqa: BLE001 - a failing exporter must not kill the worker
            logger.exception("Span exporter %r raised; %d spans lost.", self._exporter, len(batch))
            result = SpanExportResult.FAILURE
        with self._idle:
            self._add("exported" if result is SpanExportResult.SUCCESS else "failed", len(batch))
            self._in_flight = 0
            self._exporting = False
            self._idle.notify_all()

    def _count_drop(self) -> None:
        self._add("dropped", 1)
        now = time.monotonic()
        if now - self._last_drop_log >= DROP_LOG_INTERVAL_S:
            self._last_drop_log = now
            logger.warning(
                "Span queue full or shut down: %d spans dropped so far (max_queue_size=%d). "
                "The trace store still receives every record.",
                self.stats["dropped"],
                self._max_queue_size,
            )

    def _add(self, counter: str, amount: int) -> None:
        with self._counter_lock:
            self._counters[counter] += amount


def otlp_tracer_provider(
    endpoint: str,
    *,
    service_name: str = "slmshift",
    timeout_ms: int = DEFAULT_EXPORT_TIMEOUT_MILLIS,
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
    schedule_delay_ms: float = DEFAULT_SCHEDULE_DELAY_MILLIS,
    headers: dict[str, str] | None = None,
    resource_attributes: dict[str, Any] | None = None,
) -> TracerProvider:
    """Build a `TracerProvider` that sends spans over OTLP/HTTP without ever blocking the agent.

    Args:
        endpoint: The collector's traces URL, such as `http://127.0.0.1:4318/v1/traces`
            (a URL without a path gets `/v1/traces` appended).
        service_name: The `service.name` resource attribute that backends group spans by.
        timeout_ms: Deadline of one export request, retries included. A silent collector blocks
            the export worker this long per batch, never the agent.
        max_queue_size: Finished spans waiting for export; more are dropped and counted.
        max_export_batch_size: Spans per export request.
        schedule_delay_ms: Longest wait before a partial batch is sent.
        headers: Extra HTTP headers, such as an API key for a hosted backend.
        resource_attributes: More resource attributes (`deployment.environment`, ...).

    The provider's processor is a `QueueSpanProcessor`; read its drop counters through
    `span_export_stats(provider)`.
    """
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource

    exporter = OTLPSpanExporter(
        endpoint=_traces_url(endpoint), timeout=timeout_ms / 1000, headers=headers
    )
    processor = QueueSpanProcessor(
        exporter,
        max_queue_size=max_queue_size,
        max_export_batch_size=max_export_batch_size,
        schedule_delay_millis=schedule_delay_ms,
    )
    resource = Resource.create({"service.name": service_name, **(resource_attributes or {})})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    provider._slmshift_processor = processor  # type: ignore[attr-defined]
    return provider


def span_export_stats(provider: TracerProvider) -> dict[str, int]:
    """Return the export counters of a provider built by `otlp_tracer_provider`, else `{}`."""
    processor = getattr(provider, "_slmshift_processor", None)
    return processor.stats if processor is not None else {}


def _traces_url(endpoint: str) -> str:
    endpoint = endpoint.rstrip("/")
    if endpoint.endswith("/v1/traces"):
        return endpoint
    if endpoint.count("/") <= 2:
        return endpoint + "/v1/traces"
    return endpoint


def env_flag(name: str) -> bool | None:
    """Read a boolean environment variable; an invalid value is logged and read as unset."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    logger.warning("Ignoring %s=%r: use true or false.", name, raw)
    return None

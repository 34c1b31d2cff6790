"""A dead or silent OTLP collector never slows the agent, and span drops are counted.

The collectors are sockets on 127.0.0.1 set up by the tests: a closed port, and a listener
that accepts connections and never responds. The model is llama-index-core's MockLLM.
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time

import pytest
from llama_index.core.llms.mock import MockLLM
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from slmshift.callbacks.llama_index import LlamaIndexTraceHandler
from slmshift.integrations.opentelemetry import (
    QueueSpanProcessor,
    otlp_tracer_provider,
    span_export_stats,
)
from slmshift.store.base import MemoryTraceStore

CALLS = 300
EXPORT_TIMEOUT_MS = 800


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def silent_collector():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept_forever():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except OSError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(1)
    for connection in held:
        connection.close()
    listener.close()


def _median_call_ms(tracer_provider) -> tuple[float, MemoryTraceStore, LlamaIndexTraceHandler]:
    # The median, so that a burst of load from other processes on the machine does not count.
    store = MemoryTraceStore()
    llm = MockLLM()
    handler = LlamaIndexTraceHandler(store, agent="bot", tracer_provider=tracer_provider)
    durations = []
    with handler:
        llm.complete("warm up")
        for index in range(CALLS):
            started = time.perf_counter()
            llm.complete(f"call {index}")
            durations.append(time.perf_counter() - started)
    return statistics.median(durations) * 1000, store, handler


@pytest.mark.parametrize("collector", ["closed port", "silent socket"])
def test_dead_collector_adds_little_per_call(collector, request):
    port = _closed_port() if collector == "closed port" else request.getfixturevalue("silent_collector")
    baseline_ms, _, _ = _median_call_ms(None)
    provider = otlp_tracer_provider(
        f"http://127.0.0.1:{port}", timeout_ms=EXPORT_TIMEOUT_MS, schedule_delay_ms=50
    )
    with_spans_ms, store, handler = _median_call_ms(provider)

    assert with_spans_ms - baseline_ms < 1.0, (baseline_ms, with_spans_ms)
    assert store.count() == CALLS + 1
    assert handler.stats["errors"] == 0

    started = time.perf_counter()
    provider.shutdown()
    shutdown_s = time.perf_counter() - started
    assert shutdown_s < 5.5
    stats = span_export_stats(provider)
    assert stats["exported"] == 0
    assert stats["failed"] + stats["dropped"] >= CALLS


class _BlockedExporter(SpanExporter):
    """An exporter stuck until released, like an export to a silent backend."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.exported = 0

    def export(self, spans):
        self.release.wait(10)
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def _emit_spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("test")
    for index in range(count):
        tracer.start_span(f"span {index}").end()


def test_full_queue_drops_are_counted_and_logged(caplog):
    exporter = _BlockedExporter()
    processor = QueueSpanProcessor(exporter, max_queue_size=10, max_export_batch_size=5, schedule_delay_millis=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    with caplog.at_level(logging.WARNING, logger="slmshift.integrations._span_export"):
        _emit_spans(provider, 5)
        time.sleep(0.1)
        _emit_spans(provider, 30)
    stats = processor.stats
    assert stats["dropped"] >= 20
    assert stats["queued"] + stats["dropped"] == 35
    drop_logs = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(drop_logs) == 1
    exporter.release.set()
    assert processor.force_flush(2000)
    assert processor.stats["exported"] == stats["queued"]
    processor.shutdown()


def test_force_flush_and_shutdown_honour_timeouts():
    exporter = _BlockedExporter()
    processor = QueueSpanProcessor(exporter, schedule_delay_millis=10)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    _emit_spans(provider, 20)

    started = time.perf_counter()
    assert processor.force_flush(200) is False
    assert time.perf_counter() - started < 0.5

    started = time.perf_counter()
    processor.shutdown(timeout_millis=300)
    assert time.perf_counter() - started < 0.6


def test_spans_after_shutdown_are_dropped():
    exporter = _BlockedExporter()
    exporter.release.set()
    processor = QueueSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    processor.shutdown(timeout_millis=500)
    _emit_spans(provider, 3)
    assert processor.stats["dropped"] == 3


def test_invalid_queue_settings_raise():
    with pytest.raises(ValueError, match="max_export_batch_size must be between 1 and max_queue_size"):
        QueueSpanProcessor(_BlockedExporter(), max_queue_size=4, max_export_batch_size=8)

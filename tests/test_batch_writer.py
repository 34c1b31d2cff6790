"""The background batch writer: batching, flush, retry until a fault clears, drops and close."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from slmshift.store._writer import BatchWriter


class FlakyBackend:
    """Collect batches; raise for the first `failures` calls, or while `blocked` is set."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.batches: list[list[int]] = []
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def write_batch(self, records: list[int]) -> None:
        self.calls += 1
        self.entered.set()
        self.release.wait()
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("server went away")
        self.batches.append(list(records))

    @property
    def written(self) -> list[int]:
        return [record for batch in self.batches for record in batch]


def test_writer_batches_and_keeps_order() -> None:
    backend = FlakyBackend()
    writer = BatchWriter(backend.write_batch, max_batch_size=100, flush_interval_ms=50)

    for number in range(1000):
        assert writer.submit(number)
    assert writer.flush(timeout=5)

    assert backend.written == list(range(1000))
    assert max(len(batch) for batch in backend.batches) == 100
    assert len(backend.batches) < 100
    assert writer.stats == {"queued": 1000, "written": 1000, "dropped": 0, "failed": 0, "retries": 0}
    assert writer.close(timeout=5)


def test_writer_drains_backlog_without_waiting() -> None:
    backend = FlakyBackend()
    backend.release.clear()
    writer = BatchWriter(backend.write_batch, max_batch_size=10, flush_interval_ms=1_000)

    # The writer is held inside its first batch while a backlog of 20 batches builds up.
    writer.submit(0)
    assert backend.entered.wait(timeout=5)
    for number in range(1, 201):
        assert writer.submit(number)
    started = time.monotonic()
    backend.release.set()
    assert writer.flush(timeout=30)
    elapsed = time.monotonic() - started

    assert backend.written == list(range(201))
    # Waiting the flush interval per batch would take about 20 s here.
    assert elapsed < 3.0
    assert writer.close(timeout=5)


def test_writer_retries_until_fault_clears(caplog: pytest.LogCaptureFixture) -> None:
    backend = FlakyBackend(failures=3)
    writer = BatchWriter(backend.write_batch, flush_interval_ms=0, retry_initial_ms=5, retry_max_ms=20)

    with caplog.at_level(logging.ERROR, logger="slmshift.store._writer"):
        writer.submit(41)
        writer.submit(42)
        assert writer.flush(timeout=5)

    assert sorted(backend.written) == [41, 42]
    assert writer.stats["failed"] == 3
    assert writer.stats["retries"] == 3
    assert writer.stats["dropped"] == 0
    failure_logs = [r for r in caplog.records if "failed to write a batch" in r.getMessage()]
    assert len(failure_logs) == 1
    assert failure_logs[0].exc_info is not None
    assert "41" not in caplog.text
    writer.close(timeout=5)


def test_flush_times_out_while_writes_fail() -> None:
    backend = FlakyBackend(failures=10_000)
    writer = BatchWriter(backend.write_batch, flush_interval_ms=0, retry_initial_ms=5, retry_max_ms=10)
    writer.submit(1)

    assert writer.flush(timeout=0.2) is False

    backend.failures = 0
    assert writer.flush(timeout=5)
    assert backend.written == [1]
    writer.close(timeout=5)


def test_full_queue_drops_and_counts() -> None:
    backend = FlakyBackend()
    backend.release.clear()
    writer = BatchWriter(backend.write_batch, max_queue_size=10, flush_interval_ms=0, submit_timeout_ms=1)
    writer.submit(0)
    assert backend.entered.wait(5)

    accepted = [writer.submit(number) for number in range(1, 16)]

    assert accepted == [True] * 10 + [False] * 5
    assert writer.stats["dropped"] == 5
    backend.release.set()
    assert writer.flush(timeout=5)
    assert backend.written == list(range(11))
    writer.close(timeout=5)


def test_submit_on_full_queue_returns_quickly() -> None:
    backend = FlakyBackend()
    backend.release.clear()
    writer = BatchWriter(backend.write_batch, max_queue_size=1, flush_interval_ms=0, submit_timeout_ms=2)
    writer.submit(0)
    assert backend.entered.wait(5)
    writer.submit(1)

    started = time.perf_counter()
    results = [writer.submit(number) for number in range(100)]
    elapsed = time.perf_counter() - started

    assert not any(results)
    assert elapsed < 2.0
    backend.release.set()
    writer.close(timeout=5)


def test_max_retries_gives_up_and_counts() -> None:
    backend = FlakyBackend(failures=10_000)
    writer = BatchWriter(
        backend.write_batch, flush_interval_ms=0, retry_initial_ms=1, retry_max_ms=1, max_retries=2
    )
    writer.submit(1)

    assert writer.flush(timeout=5)

    assert writer.stats["failed"] == 3
    assert writer.stats["dropped"] == 1
    assert backend.written == []
    writer.close(timeout=1)


def test_close_writes_queue_and_rejects_later_records() -> None:
    backend = FlakyBackend()
    writer = BatchWriter(backend.write_batch, flush_interval_ms=1000)
    for number in range(5):
        writer.submit(number)

    assert writer.close(timeout=5)

    assert backend.written == [0, 1, 2, 3, 4]
    assert writer.submit(5) is False
    assert writer.stats["dropped"] == 1
    assert writer.close(timeout=1)


def test_close_gives_up_on_a_failing_batch() -> None:
    backend = FlakyBackend(failures=10_000)
    writer = BatchWriter(backend.write_batch, flush_interval_ms=0, retry_initial_ms=1000)
    writer.submit(1)
    writer.submit(2)

    started = time.perf_counter()
    writer.close(timeout=0.3)

    assert time.perf_counter() - started < 3
    assert writer.stats["dropped"] == 2
    assert writer.stats["written"] == 0


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_queue_size", 0), ("max_batch_size", -1), ("flush_interval_ms", -5), ("max_retries", -1)],
)
def test_invalid_writer_option_raises(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"Invalid {option} {value}"):
        BatchWriter(lambda records: None, **{option: value})

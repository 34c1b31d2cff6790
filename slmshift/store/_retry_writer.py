"""A background writer that keeps a bounded buffer and retries a failed batch until it commits.

Used by stores whose database can go away for a while (a PostgreSQL restart, a full disk, a
lock held by another process): records wait in memory, at most `max_buffered` of them, and the
batch that failed is retried with backoff until the fault clears. Records that arrive while
the buffer is full are dropped and counted in `stats["dropped"]`, never raised to the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

Item = TypeVar("Item")

DEFAULT_MAX_BUFFERED = 10_000
DEFAULT_BATCH_SIZE = 200
DEFAULT_LINGER_S = 0.05
MAX_BACKOFF_S = 2.0


class PermanentWriteError(Exception):
    """A batch that can never be written (retrying will not help); it is dropped and counted."""


class RetryingBatchWriter(Generic[Item]):
    """One writer thread that calls `write_batch(items)` and retries it until it returns.

    Thread contract: `submit` may be called from any thread and never blocks on I/O or raises.
    `write_batch` runs only on the writer thread; it must be idempotent (the same batch may be
    written twice when a commit succeeded but its answer was lost), and may raise
    `PermanentWriteError` to drop a batch that retrying cannot fix.
    """

    def __init__(
        self,
        write_batch: Callable[[list[Item]], None],
        *,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        linger_s: float = DEFAULT_LINGER_S,
        name: str = "slmshift-writer",
    ) -> None:
        self._write_batch = write_batch
        self._max_buffered = max_buffered
        self._batch_size = batch_size
        self._linger_s = linger_s
        self._buffer: deque[Item] = deque()
        self._in_flight = 0
        self._condition = threading.Condition()
        self._closed = False
        self._counters = {"queued": 0, "written": 0, "dropped": 0, "failed": 0, "retries": 0}
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> bool:
        """Buffer `item`; return False when it was dropped (buffer full or writer closed)."""
        with self._condition:
            if self._closed or len(self._buffer) + self._in_flight >= self._max_buffered:
                self._counters["dropped"] += 1
                return False
            self._buffer.append(item)
            self._counters["queued"] += 1
            if len(self._buffer) >= self._batch_size:
                self._condition.notify_all()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every buffered item is written or dropped; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            self._condition.notify_all()
            while self._buffer or self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining if remaining is not None else 0.5)
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, then stop the thread; items still unwritten at the timeout count as dropped."""
        flushed = self.flush(timeout)
        with self._condition:
            self._closed = True
            self._counters["dropped"] += len(self._buffer)
            self._buffer.clear()
            self._condition.notify_all()
        self._thread.join(timeout=1.0 if not flushed else None)
        return flushed

    @property
    def pending(self) -> int:
        with self._condition:
            return len(self._buffer) + self._in_flight

    @property
    def stats(self) -> dict[str, int]:
        with self._condition:
            return {**self._counters, "buffered": len(self._buffer) + self._in_flight}

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._write_until_done(batch)

    def _next_batch(self) -> list[Item] | None:
        with self._condition:
            while not self._buffer and not self._closed:
                self._condition.wait()
            if not self._buffer:
                return None
            if len(self._buffer) < self._batch_size and not self._closed:
                # Linger briefly so that calls arriving together share one commit.
                self._condition.wait(self._linger_s)
            count = min(self._batch_size, len(self._buffer))
            batch = [self._buffer.popleft() for _ in range(count)]
            self._in_flight = count
            return batch

    def _write_until_done(self, batch: list[Item]) -> None:
        backoff_s = 0.05
        while True:
            try:
                self._write_batch(batch)
            except PermanentWriteError:
                logger.exception("Dropping %d records that cannot be written", len(batch))
                self._finish(batch, written=False)
                return
            except Exception:  # noqa: BLE001 - intended: a failing store never reaches the agent
                with self._condition:
                    self._counters["failed"] += 1
                    self._counters["retries"] += 1
                    closed = self._closed
                if self._counters["failed"] == 1 or self._counters["failed"] % 50 == 0:
                    logger.warning(
                        "Trace store write failed (%d failures so far); retrying in %.2fs",
                        self._counters["failed"], backoff_s, exc_info=True,
                    )
                if closed:
                    self._finish(batch, written=False)
                    return
                time.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                continue
            self._finish(batch, written=True)
            return

    def _finish(self, batch: list[Item], *, written: bool) -> None:
        with self._condition:
            self._in_flight = 0
            self._counters["written" if written else "dropped"] += len(batch)
            self._condition.notify_all()

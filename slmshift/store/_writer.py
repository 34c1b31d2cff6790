"""A background batch writer shared by the SQL trace stores.

`BatchWriter` moves records off the caller's thread. `submit` puts a record on a bounded queue
and returns at once. One writer thread takes records off the queue in batches and passes each
batch to the backend's `write_batch`, which writes it in one transaction. A batch whose write
raises is retried with exponential backoff until the fault clears, while new records wait in
the queue. Once the queue is full, `submit` drops records and counts them.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_QUEUE_SIZE = 100_000
DEFAULT_MAX_BATCH_SIZE = 512
# How long the writer waits for a batch to fill before it writes what it has.
DEFAULT_FLUSH_INTERVAL_MS = 100
# How long `submit` may wait for room on a full queue before it drops the record.
DEFAULT_SUBMIT_TIMEOUT_MS = 2
DEFAULT_RETRY_INITIAL_MS = 100
DEFAULT_RETRY_MAX_MS = 5_000
DEFAULT_CLOSE_TIMEOUT_S = 10.0
# Repeated warnings (drops, retries) are logged at most once per this many seconds.
WARNING_INTERVAL_S = 10.0

COUNTER_NAMES = ("queued", "written", "dropped", "failed", "retries")


class _Control:
    """A queue item that is not a record: a flush marker or the stop signal."""

    def __init__(self, stop: bool = False) -> None:
        self.stop = stop
        self.done = threading.Event()


class RateLimitedLog:
    """Log one message at most once per `interval_s`, reporting how many were suppressed."""

    def __init__(self, log: logging.Logger, level: int, *, interval_s: float = WARNING_INTERVAL_S) -> None:
        self._log = log
        self._level = level
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last_logged = float("-inf")
        self._suppressed = 0

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last_logged < self._interval_s:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_logged = now
        if suppressed:
            message += f" ({suppressed} similar messages suppressed)"
        self._log.log(self._level, message, *args, exc_info=exc_info)


class BatchWriter(Generic[T]):
    """Write records in batches on one background thread.

    Args:
        write_batch: Called on the writer thread with a non-empty list of records; it must
            write them all in one transaction and return, or raise and write nothing. A raise
            means "try again later": the same batch is retried with backoff, so `write_batch`
            must be idempotent (the SQL stores insert with "ignore on duplicate id") and must
            only raise for faults a retry can clear. Records that can never be written must be
            rejected before `submit`.
        name: Name of the writer thread, shown in logs and thread dumps.
        max_queue_size: Records that may wait for the writer; more are dropped and counted.
        max_batch_size: Most records passed to one `write_batch` call.
        flush_interval_ms: How long the writer waits for a batch to fill before writing it.
        submit_timeout_ms: How long `submit` waits for room on a full queue.
        retry_initial_ms: Backoff before the first retry of a failed batch; it doubles on each
            further failure up to `retry_max_ms`.
        retry_max_ms: Longest backoff between retries.
        max_retries: Retries of one batch before it is dropped; None retries until the fault
            clears or `close` gives up.

    Thread contract: `submit`, `flush`, `close` and `stats` may be called from any thread, but
    never from inside `write_batch`. `submit` never raises and never waits longer than
    `submit_timeout_ms`. `write_batch` runs only on the writer thread, one call at a time, so
    a backend may keep its connection in the writer thread without locking. The thread is a
    daemon: call `close` (the stores also flush at interpreter exit) so queued records are
    not lost. A writer inherited by a forked child process has no thread there, so it drops
    and counts what the child submits; open a new store in each process instead.

    Counters in `stats`: `queued` records accepted by `submit`, `written` records in committed
    batches (duplicates the backend ignored included), `dropped` records given up (queue full,
    writer closed, or retries exhausted), `failed` `write_batch` calls that raised, and
    `retries` of failed batches.
    """

    def __init__(
        self,
        write_batch: Callable[[list[T]], None],
        *,
        name: str = "slmshift-batch-writer",
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        flush_interval_ms: float = DEFAULT_FLUSH_INTERVAL_MS,
        submit_timeout_ms: float = DEFAULT_SUBMIT_TIMEOUT_MS,
        retry_initial_ms: float = DEFAULT_RETRY_INITIAL_MS,
        retry_max_ms: float = DEFAULT_RETRY_MAX_MS,
        max_retries: int | None = None,
    ) -> None:
        _check_positive("max_queue_size", max_queue_size)
        _check_positive("max_batch_size", max_batch_size)
        _check_positive("retry_initial_ms", retry_initial_ms)
        _check_positive("retry_max_ms", retry_max_ms)
        _check_not_negative("flush_interval_ms", flush_interval_ms)
        _check_not_negative("submit_timeout_ms", submit_timeout_ms)
        if max_retries is not None:
            _check_not_negative("max_retries", max_retries)

        self._write_batch = write_batch
        self._max_batch_size = max_batch_size
        self._flush_interval_s = flush_interval_ms / 1000
        self._submit_timeout_s = submit_timeout_ms / 1000
        self._retry_initial_s = retry_initial_ms / 1000
        self._retry_max_s = retry_max_ms / 1000
        self._max_retries = max_retries

        self._queue: queue.Queue[T | _Control] = queue.Queue(maxsize=max_queue_size)
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._counter_lock = threading.Lock()
        self._closed = False
        self._close_deadline: float | None = None
        self._wakeup = threading.Event()
        self._batch_ready = threading.Event()
        # Flush and close requests queued but not yet served; while any is, the writer does not
        # wait for batches to fill.
        self._controls_pending = 0
        self._pid = os.getpid()
        self._warn_dropped = RateLimitedLog(logger, logging.WARNING)
        self._warn_retry = RateLimitedLog(logger, logging.WARNING)

        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    # -- caller side -----------------------------------------------------------------------

    def submit(self, record: T) -> bool:
        """Queue `record` for writing; return False when it was dropped (and counted).

        Never raises. Waits at most `submit_timeout_ms` when the queue is full.
        """
        if self._closed or os.getpid() != self._pid:
            self._drop(1, "the writer is closed or belongs to another process")
            return False
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            try:
                self._queue.put(record, timeout=self._submit_timeout_s)
            except queue.Full:
                self._drop(1, "the write queue is full")
                return False
        self._count("queued", 1)
        if self._queue.qsize() >= self._max_batch_size:
            self._batch_ready.set()
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record submitted before this call is committed or given up.

        Records are given up only when `max_retries` is set or `close` times out; they are
        counted in `dropped`. Returns False when `timeout` seconds pass first (for example while
        a failing batch is being retried) or when the writer has stopped with records queued.
        """
        if not self._thread.is_alive():
            return self._queue.empty()
        marker = _Control()
        self._change_controls_pending(1)
        try:
            self._queue.put(marker, timeout=timeout)
        except queue.Full:
            self._change_controls_pending(-1)
            return False
        self._batch_ready.set()
        return marker.done.wait(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> bool:
        """Write what is queued, then stop the writer thread; later `submit` calls drop.

        A failing batch whose next retry would end after `timeout` seconds is given up: its
        records, and those queued behind it that fail too, are counted as dropped and logged. Returns True when the writer
        stopped with nothing left unwritten. Calling `close` again is harmless.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        self._closed = True
        self._close_deadline = deadline
        self._wakeup.set()
        self._batch_ready.set()
        if not self._thread.is_alive():
            return self._queue.empty()
        self._change_controls_pending(1)
        try:
            self._queue.put(_Control(stop=True), timeout=timeout)
        except queue.Full:
            self._change_controls_pending(-1)
            logger.error("Trace writer %s did not stop: its queue stayed full.", self._thread.name)
            return False
        self._thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            logger.error(
                "Trace writer %s did not stop within %.1f s; queued records may be lost.",
                self._thread.name,
                timeout,
            )
            return False
        return True

    def _change_controls_pending(self, delta: int) -> None:
        with self._counter_lock:
            self._controls_pending += delta

    @property
    def stats(self) -> dict[str, int]:
        """A snapshot of the counters: queued, written, dropped, failed and retries."""
        with self._counter_lock:
            return dict(self._counters)

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            batch, control = self._next_batch()
            if batch:
                self._write_with_retry(batch)
            if control is None:
                continue
            self._change_controls_pending(-1)
            if control.stop:
                self._write_remaining()
                control.done.set()
                return
            control.done.set()

    def _next_batch(self) -> tuple[list[T], _Control | None]:
        """Take up to `max_batch_size` records, waiting at most the flush interval after the first.

        The writer waits on `_batch_ready`, not on the queue: a thread woken by every `put`
        takes the GIL from the agent's thread once per record, which added milliseconds to
        each agent run. `submit` sets the event only when a batch is full; `flush` and `close`
        set it to be served at once.
        """
        first = self._queue.get()
        if isinstance(first, _Control):
            return [], first
        # A backlog of a full batch or more, or a pending flush, is written without waiting:
        # waiting the interval per batch would cap the rate at one batch per interval.
        backlog = self._queue.qsize() + 1
        if backlog < self._max_batch_size and not self._controls_pending:
            self._batch_ready.wait(self._flush_interval_s)
        self._batch_ready.clear()
        batch = [first]
        while len(batch) < self._max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Control):
                return batch, item
            batch.append(item)
        return batch, None

    def _write_remaining(self) -> None:
        """Write records that raced past `close` into the queue behind the stop signal."""
        batch: list[T] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Control):
                self._change_controls_pending(-1)
                item.done.set()
                continue
            batch.append(item)
            if len(batch) >= self._max_batch_size:
                self._write_with_retry(batch)
                batch = []
        if batch:
            self._write_with_retry(batch)

    def _write_with_retry(self, batch: list[T]) -> None:
        failures = 0
        while True:
            try:
                self._write_batch(batch)
            except Exception:  # noqa: BLE001 - a backend fault must never kill the writer thread
                failures += 1
                self._count("failed", 1)
                self._log_failure(len(batch), failures)
                delay = self._backoff_s(failures)
                if self._should_give_up(failures, delay):
                    self._give_up(batch, failures)
                    return
                self._count("retries", 1)
                self._sleep_before_retry(delay)
                continue
            self._count("written", len(batch))
            if failures:
                logger.warning(
                    "Trace writer %s wrote a batch of %d records after %d failed attempts.",
                    self._thread.name,
                    len(batch),
                    failures,
                )
            return

    def _log_failure(self, batch_size: int, failures: int) -> None:
        # The traceback names the fault; record contents are never logged, they may be private.
        if failures == 1:
            logger.error(
                "Trace writer %s failed to write a batch of %d records; retrying with backoff.",
                self._thread.name,
                batch_size,
                exc_info=True,
            )
        else:
            self._warn_retry(
                "Trace writer %s: attempt %d to write a batch of %d records failed.",
                self._thread.name,
                failures,
                batch_size,
                exc_info=True,
            )

    def _backoff_s(self, failures: int) -> float:
        # The exponent is capped: 2.0 ** 1100 overflows a float after a long outage.
        return min(self._retry_initial_s * 2.0 ** min(failures - 1, 60), self._retry_max_s)

    def _should_give_up(self, failures: int, delay: float) -> bool:
        """Return True when retries are exhausted or the next one would end after `close`'s timeout."""
        if self._max_retries is not None and failures > self._max_retries:
            return True
        deadline = self._close_deadline
        return self._closed and deadline is not None and time.monotonic() + delay >= deadline

    def _give_up(self, batch: Sequence[T], failures: int) -> None:
        logger.error(
            "Trace writer %s gave up on a batch of %d records after %d failed attempts; "
            "they are counted as dropped.",
            self._thread.name,
            len(batch),
            failures,
        )
        self._count("dropped", len(batch))

    def _sleep_before_retry(self, delay: float) -> None:
        if self._closed:
            # `_should_give_up` has checked that this sleep ends before the close timeout.
            time.sleep(delay)
            return
        # `close` sets the event, so that a long backoff does not outlast its timeout.
        self._wakeup.wait(delay)
        self._wakeup.clear()

    # -- counters --------------------------------------------------------------------------

    def _count(self, name: str, amount: int) -> None:
        with self._counter_lock:
            self._counters[name] += amount

    def _drop(self, amount: int, reason: str) -> None:
        self._count("dropped", amount)
        self._warn_dropped("Trace writer %s dropped a record: %s.", self._thread.name, reason)


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"Invalid {name} {value!r}: use a number greater than 0.")


def _check_not_negative(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"Invalid {name} {value!r}: use a number of 0 or more.")

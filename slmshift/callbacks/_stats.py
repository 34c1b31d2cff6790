"""Counters and failure logging shared by the capture handlers.

Capture must never raise into the agent, so every internal failure is caught, counted and
logged. The first failure of each kind is logged with its traceback; repeats are logged once
per `LOG_EVERY` occurrences, so a failure on every call cannot flood the log.

Exception messages in capture code often quote the record (a redactor error, the model's
own error text with a key or URL in it), so failure logs use `traceback_without_messages`:
exception types and code locations only, never messages or local values.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import traceback
from dataclasses import dataclass

logger = logging.getLogger(__name__)

LOG_EVERY = 1000


@dataclass(frozen=True)
class CaptureStats:
    """A snapshot of a capture handler's counters.

    Attributes:
        records: Records accepted by the store.
        failed_calls: Model calls that ended in an error (recorded with `error` set).
        dropped: Records that did not reach the store: the store rejected or failed to take
            them, or the redactor failed.
        redaction_failures: Records dropped because the redactor raised or returned a non-record.
        internal_errors: Failures inside the handler itself, caught and logged.
        listener_errors: Exceptions raised by run listeners, caught and logged.
        unmatched_events: End events whose start the handler never saw or already freed.
    """

    records: int = 0
    failed_calls: int = 0
    dropped: int = 0
    redaction_failures: int = 0
    internal_errors: int = 0
    listener_errors: int = 0
    unmatched_events: int = 0

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class StatsCounter:
    """Thread-safe counters behind `CaptureStats`, with rate-limited failure logging."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {field.name: 0 for field in dataclasses.fields(CaptureStats)}
        self._failures_by_kind: dict[tuple[str, str], int] = {}

    def increment(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> CaptureStats:
        with self._lock:
            return CaptureStats(**self._counts)

    def failure(self, counter: str, where: str, exc: BaseException, *, log: logging.Logger) -> None:
        """Count a caught exception under `counter` and log it, rate-limited per (where, type)."""
        kind = (where, type(exc).__name__)
        with self._lock:
            self._counts[counter] += 1
            seen = self._failures_by_kind.get(kind, 0) + 1
            self._failures_by_kind[kind] = seen
        if seen == 1:
            log.error(
                "slmshift capture failed in %s; the agent continues. %s",
                where,
                traceback_without_messages(exc),
            )
        elif seen % LOG_EVERY == 0:
            log.error(
                "slmshift capture failed in %s %d times (%s); the agent continues",
                where,
                seen,
                type(exc).__name__,
            )

    def __repr__(self) -> str:
        return f"StatsCounter({self.snapshot()!r})"


def traceback_without_messages(exc: BaseException) -> str:
    """Render the traceback of `exc` and its chained exceptions with no exception messages.

    Each exception in the `__cause__`/`__context__` chain shows its type and its frames (file,
    line, function, source line), oldest first as Python prints them. Messages and local values
    are left out because they may quote record content or secrets.
    NOTE: the members of an `ExceptionGroup` are not listed, only the group's own type.
    """
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)

    lines = ["Traceback without messages (they may contain record content):"]
    for index, error in enumerate(reversed(chain)):
        if index:
            lines.append("During its handling, or caused by it:")
        for frame in traceback.extract_tb(error.__traceback__):
            lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {frame.line}")
        error_type = type(error)
        lines.append(f"{error_type.__module__}.{error_type.__qualname__} (message withheld)")
    return "\n".join(lines)


def describe_error(error: BaseException, *, max_chars: int) -> str:
    """Return `Type: message` for a failed call, cut to `max_chars` characters."""
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    if len(text) > max_chars:
        return text[:max_chars] + "…"
    return text

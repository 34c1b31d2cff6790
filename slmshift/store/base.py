"""The trace store interface, its URL dispatch and the in-memory twin used by tests.

`TraceStore(url)` returns the backend for the URL: SQLite (the default, a file under
`./.slmshift/`), PostgreSQL for `postgresql://...`, or the in-memory store for `memory://`.
Every backend accepts records through `add`, which never blocks the caller for long and never
raises into it, and writes them in batches off the caller's thread.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from slmshift.records import CallRecord, RecordError

logger = logging.getLogger(__name__)

DEFAULT_STORE_PATH = Path(".slmshift") / "traces.db"
# Query parameters of a store URL whose values are secrets: libpq's `password` and
# `sslpassword`, and the spellings other drivers use.
SECRET_QUERY_PARAMS = frozenset({"password", "sslpassword", "pass", "passwd", "pwd", "secret", "token"})
# For URLs urlsplit rejects: the password of `user:password@`, and secret query values.
_USERINFO_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")
_SECRET_QUERY_VALUE = re.compile(
    r"([?&](?:%s)=)[^&#]*" % "|".join(sorted(SECRET_QUERY_PARAMS)), re.IGNORECASE
)


class StoreError(RuntimeError):
    """The trace store cannot be opened, read or written."""


@dataclass(frozen=True)
class RecordQuery:
    """Filters for `TraceStore.records`; a `None` field matches everything.

    `since` and `until` without a timezone are taken as UTC. `newest_first` reverses the
    `started_at` order, so that `limit` keeps the latest records.
    """

    agent: str | None = None
    node: str | None = None
    model: str | None = None
    trace_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int | None = None
    newest_first: bool = False

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, datetime):
                raise StoreError(f"Invalid {name} {value!r}: pass a datetime.")
            if value.tzinfo is None:
                object.__setattr__(self, name, value.replace(tzinfo=timezone.utc))
        if self.limit is not None and (isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0):
            raise StoreError(f"Invalid limit {self.limit!r}: use a whole number of 0 or more, or None.")

    def matches(self, record: CallRecord) -> bool:
        """Whether `record` passes every filter; `since` is inclusive and `until` exclusive."""
        if self.agent is not None and record.agent != self.agent:
            return False
        if self.node is not None and record.node != self.node:
            return False
        if self.model is not None and record.model != self.model:
            return False
        if self.trace_id is not None and record.trace_id != self.trace_id:
            return False
        if self.since is not None and record.started_at < self.since:
            return False
        if self.until is not None and record.started_at >= self.until:
            return False
        return True


@dataclass(frozen=True)
class NodeSummary:
    """Calls of one (agent, node, model) group; token sums cover the calls that reported usage."""

    agent: str | None
    node: str | None
    model: str | None
    calls: int
    errors: int
    input_tokens: int | None
    output_tokens: int | None
    calls_without_usage: int
    mean_latency_ms: float | None


class TraceStore:
    """A place that keeps call records.

    `TraceStore()` opens the SQLite store at `./.slmshift/traces.db`; `TraceStore(url)` opens
    `sqlite:///path`, a plain file path, `postgresql://...` or `memory://`.

    Thread contract: `add` may be called from any thread and returns quickly; records become
    visible to `records` after the background writer commits them, which `flush` waits for.
    """

    def __new__(cls, url: str | Path | None = None, **options: Any) -> TraceStore:
        if cls is not TraceStore:
            return super().__new__(cls)
        backend = _backend_for(url)
        return super().__new__(backend)

    # -- writing ---------------------------------------------------------------------------

    def add(self, record: CallRecord) -> bool:
        """Queue `record` for writing; return False when it was dropped (counted in `stats`)."""
        raise NotImplementedError

    def add_many(self, records: Iterable[CallRecord]) -> int:
        """Write `records` now, in the caller's thread; return how many were new."""
        raise NotImplementedError

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every queued record is committed; return False on timeout."""
        return True

    def close(self) -> None:
        """Flush and release the store; later `add` calls are dropped and counted."""

    # -- reading ---------------------------------------------------------------------------

    def records(self, **filters: Any) -> Iterator[CallRecord]:
        """Yield records in `started_at` order, filtered by `RecordQuery` fields."""
        raise NotImplementedError

    def get(self, record_id: str) -> CallRecord | None:
        """Return the record with `record_id`, or None."""
        for record in self.records():
            if record.id == record_id:
                return record
        return None

    def count(self, **filters: Any) -> int:
        """Count records matching `RecordQuery` fields."""
        return sum(1 for _ in self.records(**filters))

    def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        """Return up to `limit` record ids that start with `prefix`, sorted."""
        return sorted(record.id for record in self.records() if record.id.startswith(prefix))[:limit]

    def nodes(self, **filters: Any) -> list[NodeSummary]:
        """Summarise calls per (agent, node, model), filtered by `RecordQuery` fields."""
        groups: dict[tuple[str | None, str | None, str | None], list[CallRecord]] = {}
        for record in self.records(**filters):
            groups.setdefault((record.agent, record.node, record.model), []).append(record)
        return [_summarise(key, records) for key, records in sorted(groups.items(), key=_group_order)]

    @property
    def stats(self) -> dict[str, int]:
        """Counters: queued, written, dropped and failed writes."""
        return {}

    # -- JSONL -----------------------------------------------------------------------------

    def export_jsonl(self, destination: str | Path | IO[str], **filters: Any) -> int:
        """Write matching records as JSON Lines (one `CallRecord.to_json` per line); return the count."""
        if hasattr(destination, "write"):
            return _write_jsonl(destination, self.records(**filters))
        with open_private(destination) as handle:
            return _write_jsonl(handle, self.records(**filters))

    def import_jsonl(self, source: str | Path | IO[str]) -> int:
        """Read JSON Lines records and write them; return how many were new.

        The whole file is validated before anything is written, so a bad line leaves the
        store unchanged.

        Raises:
            RecordError: a line is not a valid record; the message names the line number.
        """
        if hasattr(source, "read"):
            records = read_jsonl(source, getattr(source, "name", "<stream>"))
        else:
            with open(source, encoding="utf-8-sig") as handle:
                records = read_jsonl(handle, str(source))
        return self.add_many(records)

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class MemoryTraceStore(TraceStore):
    """A trace store in a Python list, for tests and short scripts; writes are synchronous."""

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self._records: dict[str, CallRecord] = {}
        self._lock = threading.Lock()
        self._counters = {"queued": 0, "written": 0, "dropped": 0, "failed": 0}

    def add(self, record: CallRecord) -> bool:
        with self._lock:
            self._counters["queued"] += 1
            if record.id not in self._records:
                self._records[record.id] = record
                self._counters["written"] += 1
        return True

    def add_many(self, records: Iterable[CallRecord]) -> int:
        added = 0
        with self._lock:
            for record in records:
                if record.id not in self._records:
                    self._records[record.id] = record
                    self._counters["written"] += 1
                    added += 1
        return added

    def records(self, **filters: Any) -> Iterator[CallRecord]:
        query = RecordQuery(**filters)
        with self._lock:
            snapshot = list(self._records.values())
        # Stable sorts: insertion order breaks ties, reversed for newest_first.
        if query.newest_first:
            snapshot.reverse()
        snapshot.sort(key=lambda record: record.started_at, reverse=query.newest_first)
        matching = (record for record in snapshot if query.matches(record))
        for index, record in enumerate(matching):
            if query.limit is not None and index >= query.limit:
                return
            yield record

    def get(self, record_id: str) -> CallRecord | None:
        with self._lock:
            return self._records.get(record_id)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)


def _backend_for(url: str | Path | None) -> type[TraceStore]:
    text = str(url) if url is not None else ""
    if text.startswith("memory:"):
        return MemoryTraceStore
    if text.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from slmshift.store.postgres import PostgresTraceStore

        return PostgresTraceStore
    if "://" in text and not text.startswith("sqlite://"):
        raise StoreError(
            f"Unsupported trace store URL {redact_url(text)!r}: use a file path, sqlite:///path, "
            "postgresql://user@host/db or memory://."
        )
    from slmshift.store.sqlite import SQLiteTraceStore

    return SQLiteTraceStore


def redact_url(url: str | Path) -> str:
    """The store URL with its secrets replaced by `***`, for messages and logs.

    Masks the password in `user:password@` and the values of the query parameters in
    `SECRET_QUERY_PARAMS` (`?password=...`, `?sslpassword=...`). A plain path comes back as is.
    """
    from urllib.parse import urlsplit, urlunsplit

    text = str(url)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        password = parts.password
    except ValueError:
        masked = _USERINFO_PASSWORD.sub(r"\1***@", text)
        return _SECRET_QUERY_VALUE.sub(r"\1***", masked)

    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    query = "&".join(_redact_query_item(item) for item in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        # Nothing to mask: return the text as given, because urlunsplit normalises some URLs
        # (`a://` comes back as `a:`), and an error message must quote what the user typed.
        return text
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redact_secrets(text: str, url: str | Path) -> str:
    """Return `text` with every secret of the store `url` replaced by `***`.

    For driver messages that quote part of the URL, such as libpq's "invalid percent-encoded
    token". Both the raw and the percent-decoded form of each secret are masked, wherever
    they occur: a one-character password masks that character throughout `text`.
    """
    for secret in _url_secrets(str(url)):
        text = text.replace(secret, "***")
    return text


def _url_secrets(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url)
        raw = [parts.netloc.rpartition("@")[0].partition(":")[2]] if parts.password is not None else []
    except ValueError:
        raw = []
        parts = None
    if parts is not None and parts.query:
        for item in parts.query.split("&"):
            name, separator, value = item.partition("=")
            if separator and unquote(name).strip().lower() in SECRET_QUERY_PARAMS:
                raw.append(value)
    secrets = {form for value in raw if value for form in (value, unquote(value))}
    # Longest first, so that a secret containing another is masked whole.
    return sorted((secret for secret in secrets if secret), key=len, reverse=True)


def _redact_query_item(item: str) -> str:
    from urllib.parse import unquote

    name, separator, _value = item.partition("=")
    if separator and unquote(name).strip().lower() in SECRET_QUERY_PARAMS:
        return f"{name}=***"
    return item


def open_private(path: str | Path) -> IO[str]:
    """Open `path` for writing text; a new file gets mode 0600 because traces are private.

    An existing file is truncated and keeps its mode.
    """
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    return os.fdopen(descriptor, "w", encoding="utf-8")


def _summarise(key: tuple[str | None, str | None, str | None], records: list[CallRecord]) -> NodeSummary:
    latencies = [record.latency_ms for record in records if record.latency_ms is not None]
    inputs = [r.usage.input_tokens for r in records if r.usage.input_tokens is not None]
    outputs = [r.usage.output_tokens for r in records if r.usage.output_tokens is not None]
    without_usage = sum(1 for r in records if r.usage.input_tokens is None or r.usage.output_tokens is None)
    return NodeSummary(
        agent=key[0],
        node=key[1],
        model=key[2],
        calls=len(records),
        errors=sum(1 for record in records if record.error is not None),
        input_tokens=sum(inputs) if inputs else None,
        output_tokens=sum(outputs) if outputs else None,
        calls_without_usage=without_usage,
        mean_latency_ms=sum(latencies) / len(latencies) if latencies else None,
    )


def _group_order(item: tuple[tuple[str | None, ...], list[CallRecord]]) -> tuple[str, ...]:
    return tuple(value or "" for value in item[0])


def _write_jsonl(handle: IO[str], records: Iterable[CallRecord]) -> int:
    count = 0
    for record in records:
        handle.write(record.to_json())
        handle.write("\n")
        count += 1
    return count


def read_jsonl(handle: IO[str], name: str) -> list[CallRecord]:
    """Read and validate every line of a JSON Lines export before returning any record.

    Raises:
        RecordError: a line is not a valid record, or the file is not UTF-8 text; the message
            names the line.
    """
    records = []
    line_number = 0
    try:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            records.append(_parse_line(line, line_number, name))
    except UnicodeDecodeError as exc:
        raise RecordError(
            f"{name}: not UTF-8 text after line {line_number} ({exc.reason}). Export the records "
            "as UTF-8 JSON Lines; nothing was imported."
        ) from exc
    return records


def _parse_line(line: str, line_number: int, name: str) -> CallRecord:
    try:
        return CallRecord.from_dict(json.loads(line))
    except (json.JSONDecodeError, RecordError) as exc:
        raise RecordError(
            f"{name}, line {line_number}: not a valid call record ({exc}). "
            "Each line must be one JSON object as written by `slmshift traces export`; "
            "nothing was imported."
        ) from exc

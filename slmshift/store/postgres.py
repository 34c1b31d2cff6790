"""The PostgreSQL trace store, for many agent processes on many machines sharing one store.

`TraceStore("postgresql://user@host:5432/db")` opens it. The schema is created and migrated on
open, under a PostgreSQL advisory lock so that processes starting together migrate once. Rows
have the SQLite store's layout (`slmshift.store._rows`): queryable columns in clear and one
payload column, sealed with AES-GCM when the store is encrypted.

`add` queues records for a `BatchWriter`, whose thread inserts them in batches with
`ON CONFLICT DO NOTHING`, so a record written twice (a retried batch, a re-imported file) is
kept once. When the server goes away the writer retries the failed batch with backoff until
the server is back; records arriving while the bounded queue is full are dropped and counted,
never raised into the agent.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from slmshift.records import CallRecord, RecordError
from slmshift.store._rows import COLUMNS, record_to_row, row_to_record
from slmshift.store._writer import DEFAULT_CLOSE_TIMEOUT_S, BatchWriter, RateLimitedLog
from slmshift.store.base import (
    NodeSummary,
    RecordQuery,
    StoreError,
    TraceStore,
    redact_secrets,
    redact_url,
)
from slmshift.store.encryption import (
    ENCRYPTION_META_KEY,
    EncryptionError,
    PayloadCipher,
    PayloadCodec,
    StoreKey,
    resolve_keys,
    resolve_mode,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
# How long an interpreter exit waits for queued records to be written.
EXIT_FLUSH_TIMEOUT_S = 10.0
# Any constant works; it only has to be the same in every slmshift process.
MIGRATION_LOCK_ID = 0x736C6D73
ROW_COLUMNS = (*COLUMNS, "key_id")
_SELECT_COLUMNS = ", ".join(ROW_COLUMNS)
_INSERT_SQL = (
    f"INSERT INTO records ({_SELECT_COLUMNS}) VALUES ({', '.join(['%s'] * len(ROW_COLUMNS))}) "
    "ON CONFLICT (id) DO NOTHING"
)

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            "CREATE TABLE store_meta (key text PRIMARY KEY, value text NOT NULL)",
            """CREATE TABLE records (
                seq bigint GENERATED ALWAYS AS IDENTITY,
                id text PRIMARY KEY,
                trace_id text,
                parent_id text,
                agent text,
                node text,
                model text,
                provider text,
                output_kind text,
                started_at timestamptz NOT NULL,
                latency_ms double precision,
                input_tokens integer,
                output_tokens integer,
                is_error integer NOT NULL DEFAULT 0,
                finish_reason text,
                step integer,
                schema_version integer NOT NULL,
                -- UTF-8 JSON of the content fields, or its AES-GCM ciphertext when key_id is set.
                payload bytea NOT NULL,
                key_id text
            )""",
            "CREATE INDEX records_started_at ON records (started_at, seq)",
            "CREATE INDEX records_trace_id ON records (trace_id, started_at)",
            "CREATE INDEX records_agent_node ON records (agent, node, started_at)",
            "CREATE INDEX records_model ON records (model, started_at)",
        ),
    ),
)
LATEST_VERSION = MIGRATIONS[-1][0]


class PostgresTraceStore(TraceStore):
    """A trace store in a PostgreSQL database (psycopg 3).

    Args:
        url: A libpq URL, `postgresql://user:password@host:port/database`.
        keys: Encryption keys, active first; by default read from `SLMSHIFT_STORE_KEY`,
            `SLMSHIFT_STORE_KEY_FILE` and `SLMSHIFT_STORE_OLD_KEYS`. `[]` opens without a key.
        **writer_options: Passed to `BatchWriter` (`max_queue_size`, `max_batch_size`, ...).

    Raises:
        StoreError: the server cannot be reached or the schema is newer than this slmshift.
        MissingKeyError: the store is encrypted and no key was given.
    """

    def __init__(
        self, url: str, *, keys: Sequence[StoreKey] | None = None, **writer_options: Any
    ) -> None:
        self.url = _normalise_url(url)
        self._location = redact_url(self.url)
        self._keys = resolve_keys(keys)
        self._closed = False
        self._rejected = 0
        self._rejected_lock = threading.Lock()
        self._warn_rejected = RateLimitedLog(logger, logging.WARNING)
        self._read_lock = threading.Lock()
        self._read_connection = self._connect()
        self._codec = self._migrate_and_resolve_mode()
        self._write_connection: Any = None
        self._writer: BatchWriter[tuple[Any, ...]] = BatchWriter(
            self._write_rows, name="slmshift-postgres-writer", **writer_options
        )
        self._pid = os.getpid()
        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"PostgresTraceStore({self._location!r})"

    # -- opening ---------------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            error = StoreError(
                f"Failed to connect to the PostgreSQL trace store {self._location}: "
                f"{redact_secrets(detail, self.url)} Check the host, port, database and user in the URL."
            )
        except ValueError as exc:
            # psycopg raises UnicodeDecodeError for a percent-escape that is not UTF-8.
            error = StoreError(
                f"Invalid PostgreSQL URL {self._location}: {redact_secrets(str(exc), self.url)}. "
                "Percent-escapes in the URL must encode UTF-8 text, for example %C3%A9 for é."
            )
        # The driver's exception may quote the password, so it is not chained as the cause.
        raise error from None

    def _migrate_and_resolve_mode(self) -> PayloadCodec:
        import psycopg

        connection = self._read_connection
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
                self._migrate_locked(connection)
                return self._resolve_mode_locked(connection)
        except psycopg.Error as exc:
            raise StoreError(f"Failed to prepare the trace store {self._location}: {exc}") from exc

    def _migrate_locked(self, connection: Any) -> None:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS store_schema "
            "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = connection.execute("SELECT max(version) FROM store_schema").fetchone()[0] or 0
        if current > LATEST_VERSION:
            raise StoreError(
                f"The trace store {self._location} has schema version {current}, newer than this "
                f"slmshift supports ({LATEST_VERSION}): upgrade slmshift to open it."
            )
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO store_schema (version) VALUES (%s)", (version,))
            logger.info("Migrated %s to schema version %d.", self._location, version)

    def _resolve_mode_locked(self, connection: Any) -> PayloadCodec:
        row = connection.execute(
            "SELECT value FROM store_meta WHERE key = %s", (ENCRYPTION_META_KEY,)
        ).fetchone()
        has_records = connection.execute("SELECT EXISTS (SELECT 1 FROM records)").fetchone()[0]
        codec = resolve_mode(
            row[0] if row else None, has_records=has_records, keys=self._keys, location=self._location
        )
        connection.execute(
            "INSERT INTO store_meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (ENCRYPTION_META_KEY, codec.mode),
        )
        return codec

    # -- writing ---------------------------------------------------------------------------

    def add(self, record: CallRecord) -> bool:
        """Queue `record` for the writer thread; return False when it was dropped. Never raises.

        The row is built here, so a record that cannot be stored is rejected at once and
        counted, instead of failing a whole batch later. The writer thread seals it.
        """
        try:
            row = record_to_row(record)
        except Exception as exc:  # noqa: BLE001 - tracing must never raise into the agent
            with self._rejected_lock:
                self._rejected += 1
            self._warn_rejected("Dropped a call record that cannot be stored (%s).", type(exc).__name__)
            return False
        return self._writer.submit(row)

    def add_many(self, records: Iterable[CallRecord]) -> int:
        """Insert `records` now in one transaction; return how many were new.

        Raises:
            RecordError: a record cannot be written as JSON; nothing was written.
            StoreError: the insert failed; nothing was written.
        """
        rows = [self._row_or_raise(record) for record in records]
        if not rows:
            return 0
        with self._reading() as connection, connection.transaction():
            self._check_mode(connection)
            with connection.cursor() as cursor:
                cursor.executemany(_INSERT_SQL, rows)
                return max(cursor.rowcount, 0)

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record added before the call is committed; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write the queued records (waiting up to `timeout` seconds) and disconnect."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._close_at_exit)
        self._writer.close(timeout)
        for connection in (self._write_connection, self._read_connection):
            if connection is not None and not connection.closed:
                connection.close()

    def _close_at_exit(self) -> None:
        # A forked child inherits the hook but neither the writer thread nor the connections.
        if os.getpid() == self._pid:
            self.close(EXIT_FLUSH_TIMEOUT_S)

    @property
    def stats(self) -> dict[str, int]:
        """Counters: `queued`, `written`, `dropped` (rejected records included), `failed`, `retries`."""
        counters = self._writer.stats
        counters["dropped"] += self._rejected
        return counters

    def _row(self, record: CallRecord) -> tuple[Any, ...]:
        return self._seal(record_to_row(record))

    def _seal(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        row = self._codec.seal(row)
        payload = row[-2]
        if isinstance(payload, str):
            row = (*row[:-2], payload.encode("utf-8"), row[-1])
        return row

    def _row_or_raise(self, record: CallRecord) -> tuple[Any, ...]:
        try:
            return self._row(record)
        except (TypeError, ValueError) as exc:
            raise RecordError(f"Record {record.id} cannot be stored: {exc}") from exc

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Insert one batch in one transaction; called by the `BatchWriter` thread only.

        Payloads are sealed here, not in `add`: AES-GCM nonces come from os.urandom, which
        releases the GIL, and getting it back on a busy interpreter took milliseconds from
        the agent's thread.
        """
        rows = [self._seal(row) for row in rows]
        if self._write_connection is None or self._write_connection.closed:
            self._write_connection = self._connect()
        connection = self._write_connection
        try:
            with connection.transaction():
                self._check_mode(connection)
                with connection.cursor() as cursor:
                    cursor.executemany(_INSERT_SQL, rows)
        except BaseException:
            # A fresh connection on the next attempt also recovers from a server restart.
            self._write_connection = None
            connection.close()
            raise

    def _check_mode(self, connection: Any) -> None:
        # FOR SHARE makes a concurrent `rotate_key` wait until this batch has committed.
        row = connection.execute(
            "SELECT value FROM store_meta WHERE key = %s FOR SHARE", (ENCRYPTION_META_KEY,)
        ).fetchone()
        if row is None or row[0] != self._codec.mode:
            raise EncryptionError(
                f"The trace store {self._location} now has encryption mode "
                f"{row[0] if row else None!r}, but this process writes {self._codec.mode!r}: "
                "reopen the store with the current key."
            )

    # -- reading ---------------------------------------------------------------------------

    @contextmanager
    def _reading(self) -> Iterator[Any]:
        """The shared reading connection, reopened when the server dropped it."""
        import psycopg

        with self._read_lock:
            if self._closed:
                raise StoreError(f"The trace store {self._location} is closed: open a new TraceStore.")
            if self._read_connection.closed:
                self._read_connection = self._connect()
            try:
                yield self._read_connection
            except psycopg.OperationalError as exc:
                self._read_connection.close()
                raise StoreError(f"Lost the connection to the trace store {self._location}: {exc}") from exc
            except psycopg.Error as exc:
                raise StoreError(f"The trace store {self._location} failed: {exc}") from exc

    def _query(self, sql: str, parameters: Sequence[Any]) -> list[tuple[Any, ...]]:
        # One retry: the first query after a server restart finds the old connection closed.
        try:
            with self._reading() as connection:
                return connection.execute(sql, parameters).fetchall()
        except StoreError:
            if self._closed:
                raise
            with self._reading() as connection:
                return connection.execute(sql, parameters).fetchall()

    def records(self, **filters: Any) -> Iterator[CallRecord]:
        """Records in `started_at` order (ties in insertion order), filtered in SQL.

        With `newest_first=True` the order is reversed, so that `limit` keeps the latest records.

        Raises:
            MissingKeyError: a record is encrypted with a key this store was not given.
            StoreError: the server failed or a stored row is invalid.
        """
        query = RecordQuery(**filters)
        where, parameters = _where_clause(query)
        order = "started_at DESC, seq DESC" if query.newest_first else "started_at, seq"
        sql = f"SELECT {_SELECT_COLUMNS} FROM records{where} ORDER BY {order}"
        if query.limit is not None:
            sql += " LIMIT %s"
            parameters.append(query.limit)
        for row in self._query(sql, parameters):
            yield self._to_record(row)

    def get(self, record_id: str) -> CallRecord | None:
        rows = self._query(f"SELECT {_SELECT_COLUMNS} FROM records WHERE id = %s", (record_id,))
        return self._to_record(rows[0]) if rows else None

    def count(self, **filters: Any) -> int:
        query = RecordQuery(**filters)
        where, parameters = _where_clause(query)
        sql = f"SELECT count(*) FROM (SELECT 1 FROM records{where}"
        if query.limit is not None:
            sql += " LIMIT %s"
            parameters.append(query.limit)
        return int(self._query(sql + ") AS matching", parameters)[0][0])

    def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "SELECT id FROM records WHERE id LIKE %s ORDER BY id LIMIT %s", (escaped + "%", limit)
        )
        return [row[0] for row in rows]

    def nodes(self, **filters: Any) -> list[NodeSummary]:
        where, parameters = _where_clause(RecordQuery(**filters))
        sql = f"""
            SELECT agent, node, model, count(*), sum(is_error), sum(input_tokens),
                   sum(output_tokens), count(*) FILTER (WHERE input_tokens IS NULL OR output_tokens IS NULL),
                   avg(latency_ms)
            FROM records{where}
            GROUP BY agent, node, model
            ORDER BY coalesce(agent, ''), coalesce(node, ''), coalesce(model, '')
        """
        return [
            NodeSummary(
                agent=row[0], node=row[1], model=row[2], calls=row[3], errors=int(row[4]),
                input_tokens=None if row[5] is None else int(row[5]),
                output_tokens=None if row[6] is None else int(row[6]),
                calls_without_usage=row[7],
                mean_latency_ms=None if row[8] is None else float(row[8]),
            )
            for row in self._query(sql, parameters)
        ]

    def _to_record(self, row: Sequence[Any], codec: PayloadCodec | None = None) -> CallRecord:
        columns = list((codec or self._codec).open(row))
        started_at = columns[COLUMNS.index("started_at")]
        if isinstance(started_at, datetime):
            columns[COLUMNS.index("started_at")] = started_at.isoformat()
        try:
            return row_to_record(columns)
        except (RecordError, ValueError) as exc:
            raise StoreError(f"Record {row[0]!r} in {self._location} is invalid: {exc}") from exc

    # -- encryption ------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self._codec.cipher is not None

    def rotate_key(self, new_key: StoreKey) -> int:
        """Re-encrypt every record with `new_key` (encrypting a plaintext store); return the count.

        One transaction holds the mode row, so other processes' writers wait, then fail their
        mode check and retry until they are reopened with the new key.

        Raises:
            MissingKeyError: a record is sealed with a key this store was not opened with.
        """
        self.flush()
        new_codec = PayloadCodec(PayloadCipher([new_key, *self._keys]))
        with self._reading() as connection, connection.transaction():
            connection.execute(
                "SELECT value FROM store_meta WHERE key = %s FOR UPDATE", (ENCRYPTION_META_KEY,)
            )
            rotated = self._reencrypt(connection, new_codec)
            connection.execute(
                "UPDATE store_meta SET value = %s WHERE key = %s", (new_codec.mode, ENCRYPTION_META_KEY)
            )
        self._keys = [new_key, *self._keys]
        self._codec = new_codec
        # UPDATE leaves the old row versions, readable with the old key (or in clear), in the
        # table files until they are rewritten. NOTE: the server's WAL and backups keep them.
        with self._reading() as connection:
            connection.execute("VACUUM FULL records")
        return rotated

    def _reencrypt(self, connection: Any, new_codec: PayloadCodec) -> int:
        rows = connection.execute(f"SELECT {_SELECT_COLUMNS} FROM records").fetchall()
        updates = []
        for row in rows:
            sealed = new_codec.seal(self._codec.open(row))
            updates.append((sealed[-2], sealed[-1], row[0]))
        with connection.cursor() as cursor:
            cursor.executemany("UPDATE records SET payload = %s, key_id = %s WHERE id = %s", updates)
        return len(updates)


def _where_clause(query: RecordQuery) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    parameters: list[Any] = []
    for column in ("agent", "node", "model", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            conditions.append(f"{column} = %s")
            parameters.append(value)
    if query.since is not None:
        conditions.append("started_at >= %s")
        parameters.append(query.since)
    if query.until is not None:
        conditions.append("started_at < %s")
        parameters.append(query.until)
    return (f" WHERE {' AND '.join(conditions)}" if conditions else ""), parameters


def _normalise_url(url: str) -> str:
    text = str(url)
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql://" + text[len(prefix) :]
    return text

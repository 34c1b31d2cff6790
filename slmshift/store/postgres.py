"""The PostgreSQL trace store, for many agent processes on many machines sharing one store.

`TraceStore("postgresql://user@host:5432/db")` opens it. The schema is created and migrated on
open, under a PostgreSQL advisory lock so that processes starting together migrate once.
`add` buffers records in memory (bounded) and one writer thread per store inserts them in
batches with `ON CONFLICT DO NOTHING`, so a record written twice (a retried batch, a
re-imported file) is kept once. When the server goes away the writer keeps the failed batch
and retries with backoff until the server is back; records arriving while the buffer is full
are dropped and counted, never raised into the agent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from slmshift.records import CallRecord
from slmshift.store._retry_writer import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BUFFERED,
    PermanentWriteError,
    RetryingBatchWriter,
)
from slmshift.store.base import RecordQuery, StoreError, TraceStore
from slmshift.store.encryption import (
    CIPHER_NAME,
    EncryptionError,
    PayloadCipher,
    StoreKey,
    keys_from_env,
)
from slmshift.store.payload import (
    ENCRYPTION_META_KEY,
    METADATA_COLUMNS,
    PLAINTEXT,
    decode_record,
    encode_record,
    resolve_mode,
)

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5
# Any constant works; it only has to be the same in every slmshift process.
MIGRATION_LOCK_ID = 0x736C6D73
ROW_COLUMNS = (*METADATA_COLUMNS, "key_id", "payload")

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """CREATE TABLE slmshift_meta (key text PRIMARY KEY, value text NOT NULL)""",
            """CREATE TABLE call_records (
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
                finish_reason text,
                step integer,
                schema_version integer NOT NULL,
                key_id text,
                payload bytea NOT NULL,
                inserted_at timestamptz NOT NULL DEFAULT now()
            )""",
            "CREATE INDEX call_records_agent_node ON call_records (agent, node, started_at)",
            "CREATE INDEX call_records_started ON call_records (started_at)",
            "CREATE INDEX call_records_trace ON call_records (trace_id)",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]


class PostgresTraceStore(TraceStore):
    """A trace store in a PostgreSQL database (psycopg 3).

    Args:
        url: A libpq URL, `postgresql://user:password@host:port/database`.
        keys: Encryption keys, active first; default from `SLMSHIFT_STORE_KEY` and friends.
        max_buffered: Most records held in memory while the server is unreachable.
        batch_size: Most records per insert.

    Raises:
        StoreError: the server cannot be reached or the schema is newer than this slmshift.
        MissingKeyError: the store is encrypted and no key was given.
    """

    def __init__(
        self,
        url: str,
        *,
        keys: Sequence[StoreKey] | None = None,
        max_buffered: int = DEFAULT_MAX_BUFFERED,
        batch_size: int = DEFAULT_BATCH_SIZE,
        **options: Any,
    ) -> None:
        self.url = _normalise_url(url)
        self._location = _redact(self.url)
        self._keys = list(keys_from_env() if keys is None else keys)
        self._read_lock = threading.Lock()
        self._read_connection = self._connect()
        self._mode, self._cipher = self._migrate_and_resolve_mode()
        self._write_connection: Any = None
        self._writer: RetryingBatchWriter[CallRecord] = RetryingBatchWriter(
            self._write_batch, max_buffered=max_buffered, batch_size=batch_size,
            name="slmshift-postgres-writer",
        )

    # -- opening ---------------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(
                f"Cannot connect to the PostgreSQL trace store {self._location}: "
                f"{' '.join(str(exc).split())} Check the host, port, database and user in the URL."
            ) from exc

    def _migrate_and_resolve_mode(self) -> tuple[str, PayloadCipher | None]:
        connection = self._read_connection
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
            connection.execute(
                "CREATE TABLE IF NOT EXISTS slmshift_schema "
                "(version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = connection.execute("SELECT max(version) FROM slmshift_schema").fetchone()[0] or 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"Trace store {self._location} has schema version {current}, newer than this "
                    f"slmshift understands ({SCHEMA_VERSION}): upgrade slmshift."
                )
            for version, statements in MIGRATIONS:
                if version > current:
                    for statement in statements:
                        connection.execute(statement)
                    connection.execute("INSERT INTO slmshift_schema (version) VALUES (%s)", (version,))
                    logger.info("Migrated %s to schema version %d", self._location, version)
            return self._resolve_mode_locked(connection)

    def _resolve_mode_locked(self, connection: Any) -> tuple[str, PayloadCipher | None]:
        row = connection.execute(
            "SELECT value FROM slmshift_meta WHERE key = %s", (ENCRYPTION_META_KEY,)
        ).fetchone()
        has_records = connection.execute("SELECT EXISTS (SELECT 1 FROM call_records)").fetchone()[0]
        mode, cipher = resolve_mode(
            row[0] if row else None, has_records=has_records, keys=self._keys,
            location=self._location,
        )
        connection.execute(
            "INSERT INTO slmshift_meta (key, value) VALUES (%s, %s) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (ENCRYPTION_META_KEY, mode),
        )
        return mode, cipher

    # -- writing ---------------------------------------------------------------------------

    def add(self, record: CallRecord) -> bool:
        return self._writer.submit(record)

    def add_many(self, records: Iterable[CallRecord]) -> int:
        """Insert `records` now in one transaction; return how many were new.

        Raises:
            StoreError: the insert failed; nothing of this call was written.
        """
        import psycopg

        rows = [self._row(record) for record in records]
        try:
            with self._read_lock, self._read_connection.transaction():
                self._check_mode(self._read_connection)
                return _insert_rows(self._read_connection, rows)
        except psycopg.Error as exc:
            raise StoreError(f"Cannot write to the trace store {self._location}: {exc}") from exc

    def flush(self, timeout: float | None = None) -> bool:
        return self._writer.flush(timeout)

    def close(self) -> None:
        self._writer.close(timeout=30)
        for connection in (self._write_connection, self._read_connection):
            if connection is not None and not connection.closed:
                connection.close()

    @property
    def stats(self) -> dict[str, int]:
        return self._writer.stats

    def _row(self, record: CallRecord) -> tuple[Any, ...]:
        encoded = encode_record(record, self._cipher)
        return (*(encoded.columns.get(name) for name in METADATA_COLUMNS), encoded.key_id, encoded.payload)

    def _write_batch(self, records: list[CallRecord]) -> None:
        """Writer thread only: insert one batch, reconnecting when the last connection broke."""
        if self._write_connection is None or self._write_connection.closed or self._write_connection.broken:
            self._write_connection = self._connect()
        connection = self._write_connection
        rows = [self._row(record) for record in records]
        try:
            with connection.transaction():
                self._check_mode(connection)
                _insert_rows(connection, rows)
        except EncryptionError as exc:
            raise PermanentWriteError(str(exc)) from exc
        except Exception:
            connection.close()
            raise

    def _check_mode(self, connection: Any) -> None:
        # FOR SHARE holds off a concurrent `rotate_key` until this batch commits.
        row = connection.execute(
            "SELECT value FROM slmshift_meta WHERE key = %s FOR SHARE", (ENCRYPTION_META_KEY,)
        ).fetchone()
        if row is None or row[0] != self._mode:
            raise EncryptionError(
                f"Trace store {self._location} switched encryption mode to "
                f"{row[0] if row else None!r} while this process writes {self._mode!r}: "
                "reopen the store with the current key."
            )

    # -- reading ---------------------------------------------------------------------------

    def records(self, **filters: Any) -> Iterator[CallRecord]:
        query = RecordQuery(**filters)
        where, params = _where(query)
        sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM call_records{where} ORDER BY started_at, id"
        if query.limit is not None:
            sql += " LIMIT %s"
            params.append(query.limit)
        with self._read_lock:
            rows = self._read_connection.execute(sql, params).fetchall()
        for row in rows:
            yield self._decode(row)

    def get(self, record_id: str) -> CallRecord | None:
        sql = f"SELECT {', '.join(ROW_COLUMNS)} FROM call_records WHERE id = %s"
        with self._read_lock:
            row = self._read_connection.execute(sql, (record_id,)).fetchone()
        return None if row is None else self._decode(row)

    def count(self, **filters: Any) -> int:
        where, params = _where(RecordQuery(**filters))
        with self._read_lock:
            return self._read_connection.execute(
                f"SELECT count(*) FROM call_records{where}", params
            ).fetchone()[0]

    def nodes(self, *, agent: str | None = None) -> list[tuple[str | None, str | None, int]]:
        """Return (agent, node, record count) for every node, most records first."""
        where, params = _where(RecordQuery(agent=agent))
        with self._read_lock:
            rows = self._read_connection.execute(
                f"SELECT agent, node, count(*) FROM call_records{where} "
                "GROUP BY agent, node ORDER BY count(*) DESC, agent, node",
                params,
            ).fetchall()
        return [tuple(row) for row in rows]

    def _decode(self, row: Sequence[Any]) -> CallRecord:
        columns = dict(zip(METADATA_COLUMNS, row[: len(METADATA_COLUMNS)]))
        return decode_record(columns, row[-1], row[-2], self._cipher)

    # -- encryption ------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        return self._mode != PLAINTEXT

    def rotate_key(self, new_key: StoreKey, *, batch_size: int = 500) -> int:
        """Re-encrypt every record with `new_key` (encrypting a plaintext store); return the count.

        Runs in one transaction holding the meta row lock, so writers in other processes wait
        and then fail their mode check until they reopen with the new key; their buffered
        records stay in memory and are counted as dropped if they never do.

        Raises:
            MissingKeyError: a record is sealed with a key this store was not opened with.
        """
        self.flush()
        new_cipher = PayloadCipher([new_key, *self._keys])
        with self._read_lock, self._read_connection.transaction():
            connection = self._read_connection
            connection.execute(
                "SELECT value FROM slmshift_meta WHERE key = %s FOR UPDATE", (ENCRYPTION_META_KEY,)
            )
            rotated = self._reencrypt(connection, new_cipher, batch_size)
            connection.execute(
                "UPDATE slmshift_meta SET value = %s WHERE key = %s",
                (CIPHER_NAME, ENCRYPTION_META_KEY),
            )
        self._keys = [new_key, *self._keys]
        self._cipher, self._mode = new_cipher, CIPHER_NAME
        return rotated

    def _reencrypt(self, connection: Any, new_cipher: PayloadCipher, batch_size: int) -> int:
        rotated = 0
        select = f"SELECT {', '.join(ROW_COLUMNS)} FROM call_records ORDER BY id"
        rows = connection.execute(select).fetchall()
        for start in range(0, len(rows), batch_size):
            updates = []
            for row in rows[start : start + batch_size]:
                encoded = encode_record(self._decode(row), new_cipher)
                updates.append((encoded.key_id, encoded.payload, encoded.columns["id"]))
            with connection.cursor() as cursor:
                cursor.executemany(
                    "UPDATE call_records SET key_id = %s, payload = %s WHERE id = %s", updates
                )
            rotated += len(updates)
        return rotated


def _insert_rows(connection: Any, rows: list[tuple[Any, ...]]) -> int:
    if not rows:
        return 0
    placeholders = ", ".join(["%s"] * len(ROW_COLUMNS))
    sql = (
        f"INSERT INTO call_records ({', '.join(ROW_COLUMNS)}) VALUES ({placeholders}) "
        "ON CONFLICT (id) DO NOTHING"
    )
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return max(cursor.rowcount, 0)


def _where(query: RecordQuery) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for name in ("agent", "node", "model", "trace_id"):
        value = getattr(query, name)
        if value is not None:
            clauses.append(f"{name} = %s")
            params.append(value)
    if query.since is not None:
        clauses.append("started_at >= %s")
        params.append(query.since)
    if query.until is not None:
        clauses.append("started_at < %s")
        params.append(query.until)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _normalise_url(url: str) -> str:
    text = str(url)
    for prefix in ("postgresql+psycopg://", "postgres://"):
        if text.startswith(prefix):
            return "postgresql://" + text[len(prefix) :]
    return text


def _redact(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))

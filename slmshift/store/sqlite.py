"""The embedded trace store: one SQLite file in WAL mode, written by a background batch writer.

Several threads and several processes may write to one file. Each store object has its own
writer thread and connections, and SQLite's file locks serialise the write transactions. The
busy timeout makes a writer wait for the lock, and a batch that still finds the file locked is
retried by the `BatchWriter`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord, RecordError
from slmshift.store import _migrations
from slmshift.store._rows import COLUMNS, format_time, record_to_row, row_to_record
from slmshift.store._writer import DEFAULT_CLOSE_TIMEOUT_S, BatchWriter, RateLimitedLog
from slmshift.store.base import DEFAULT_STORE_PATH, NodeSummary, RecordQuery, StoreError, TraceStore
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

DEFAULT_BUSY_TIMEOUT_MS = 10_000
# How long an interpreter exit waits for queued records to be written.
EXIT_FLUSH_TIMEOUT_S = 10.0
# Attempts at switching a new file to WAL while other processes create it too.
WAL_SWITCH_ATTEMPTS = 20

# Rows as sealed by `PayloadCodec`: the `_rows.COLUMNS` values, then the payload's key id.
ROW_COLUMNS = (*COLUMNS, "key_id")
_INSERT_SQL = (
    f"INSERT OR IGNORE INTO records ({', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
)
_SELECT_COLUMNS = ", ".join(ROW_COLUMNS)


class SQLiteTraceStore(TraceStore):
    """A trace store in one SQLite file, `./.slmshift/traces.db` by default.

    Args:
        url: A file path, `sqlite:///relative/path`, `sqlite:////absolute/path`, or None for
            the default path.
        busy_timeout_ms: How long a connection waits for another writer's lock.
        keys: Encryption keys, active first; by default read from `SLMSHIFT_STORE_KEY`,
            `SLMSHIFT_STORE_KEY_FILE` and `SLMSHIFT_STORE_OLD_KEYS`. `[]` opens without a key.
        **writer_options: Passed to `BatchWriter` (`max_queue_size`, `max_batch_size`,
            `flush_interval_ms`, ...).

    The folder is created with mode 0700 and the file with mode 0600 before SQLite opens it;
    SQLite gives its `-wal` and `-shm` files the mode of the database file.

    Raises:
        StoreError: the file is not a slmshift store, has a newer schema, or cannot be opened.
    """

    def __init__(
        self,
        url: str | Path | None = None,
        *,
        busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
        keys: Sequence[StoreKey] | None = None,
        **writer_options: Any,
    ) -> None:
        # Absolute, so that connections opened after a change of working folder open this file.
        self.path = resolve_path(url).absolute()
        self._pid = os.getpid()
        self._keys = resolve_keys(keys)
        self._codec = PayloadCodec(None)
        self._busy_timeout_s = busy_timeout_ms / 1000
        self._closing = False
        self._closed = False
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._writer_connection: sqlite3.Connection | None = None
        self._rejected = 0
        self._rejected_lock = threading.Lock()
        self._warn_rejected = RateLimitedLog(logger, logging.WARNING)

        _create_files(self.path)
        try:
            self._open_schema()
        except BaseException:
            self._close_connections()
            raise
        # Tightened only once the file is known to be a store: a foreign file is left as it was.
        for candidate in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            _make_private(candidate)
        self._writer: BatchWriter[tuple[Any, ...]] = BatchWriter(
            self._write_rows, name=f"slmshift-sqlite-writer:{self.path.name}", **writer_options
        )
        atexit.register(self._close_at_exit)

    def __repr__(self) -> str:
        return f"SQLiteTraceStore({str(self.path)!r})"

    # -- writing ---------------------------------------------------------------------------

    def add(self, record: CallRecord) -> bool:
        """Queue `record` for the writer thread; return False when it was dropped.

        The record is turned into a row here, on the caller's thread, so later changes to its
        metadata dict do not reach the store. A record that cannot be written as JSON is
        rejected at once (counted in `dropped`) instead of failing a whole batch. Never raises.
        """
        try:
            row = record_to_row(record)
        except Exception as exc:  # noqa: BLE001 - tracing must never raise into the agent
            with self._rejected_lock:
                self._rejected += 1
            self._warn_rejected(
                "Dropped a call record that cannot be stored (%s: %s).",
                type(exc).__name__,
                _first_line(exc),
            )
            return False
        return self._writer.submit(row)

    def add_many(self, records: Iterable[CallRecord]) -> int:
        """Write `records` in one transaction on the caller's thread; return how many were new.

        Records whose id is already stored are skipped, so importing a file twice adds nothing.

        Raises:
            RecordError: a record cannot be written as JSON; nothing was written.
            StoreError: the transaction failed (for example the file stayed locked); nothing
                was written.
        """
        rows = [self._codec.seal(_row_or_raise(record)) for record in records]
        if not rows:
            return 0
        connection = self._connection()
        before = connection.total_changes
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._check_mode(connection)
            connection.executemany(_INSERT_SQL, rows)
            connection.execute("COMMIT")
        except (sqlite3.Error, EncryptionError) as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise StoreError(f"Failed to write {len(rows)} records to {self.path}: {exc}.") from exc
        return connection.total_changes - before

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record added before the call is committed; False on timeout."""
        return self._writer.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Write the queued records (waiting up to `timeout` seconds) and close the file."""
        with self._connections_lock:
            if self._closing:
                return
            self._closing = True
        atexit.unregister(self._close_at_exit)
        self._writer.close(timeout)
        # Only now: the writer thread opens its connection while writing the last batches.
        self._closed = True
        self._close_connections()

    @property
    def stats(self) -> dict[str, int]:
        """Counters: `queued`, `written`, `dropped` (rejected records included), `failed`, `retries`."""
        counters = self._writer.stats
        counters["dropped"] += self._rejected
        return counters

    # -- reading ---------------------------------------------------------------------------

    def records(self, **filters: Any) -> Iterator[CallRecord]:
        """Stream records in `started_at` order (ties in insertion order), filtered in SQL.

        With `newest_first=True` the order is reversed, so that `limit` keeps the latest records.

        Raises:
            StoreError: a stored row is not a valid record.
        """
        query = RecordQuery(**filters)
        where, parameters = _where_clause(query)
        order = "started_at DESC, rowid DESC" if query.newest_first else "started_at, rowid"
        sql = f"SELECT {_SELECT_COLUMNS} FROM records{where} ORDER BY {order}"
        if query.limit is not None:
            sql += " LIMIT ?"
            parameters.append(query.limit)
        cursor = self._connection().execute(sql, parameters)
        try:
            for row in cursor:
                yield self._to_record(row)
        finally:
            cursor.close()

    def get(self, record_id: str) -> CallRecord | None:
        row = self._connection().execute(
            f"SELECT {_SELECT_COLUMNS} FROM records WHERE id = ?", (record_id,)
        ).fetchone()
        return None if row is None else self._to_record(row)

    def count(self, **filters: Any) -> int:
        query = RecordQuery(**filters)
        where, parameters = _where_clause(query)
        sql = f"SELECT COUNT(*) FROM (SELECT 1 FROM records{where}"
        if query.limit is not None:
            sql += " LIMIT ?"
            parameters.append(query.limit)
        return int(self._connection().execute(sql + ")", parameters).fetchone()[0])

    def match_ids(self, prefix: str, *, limit: int = 10) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._connection().execute(
            "SELECT id FROM records WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT ?",
            (escaped + "%", limit),
        )
        return [row[0] for row in rows]

    def nodes(self, **filters: Any) -> list[NodeSummary]:
        query = RecordQuery(**filters)
        where, parameters = _where_clause(query)
        sql = f"""
            SELECT agent, node, model, COUNT(*), SUM(is_error),
                   SUM(input_tokens), SUM(output_tokens),
                   SUM(input_tokens IS NULL OR output_tokens IS NULL), AVG(latency_ms)
            FROM records{where}
            GROUP BY agent, node, model
            ORDER BY COALESCE(agent, ''), COALESCE(node, ''), COALESCE(model, '')
        """
        return [
            NodeSummary(
                agent=row[0],
                node=row[1],
                model=row[2],
                calls=row[3],
                errors=row[4],
                input_tokens=row[5],
                output_tokens=row[6],
                calls_without_usage=row[7],
                mean_latency_ms=row[8],
            )
            for row in self._connection().execute(sql, parameters)
        ]

    # -- connections -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"The trace store {self.path} is closed: open a new TraceStore.")
        try:
            connection = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            # In WAL mode, NORMAL syncs the WAL to disk at checkpoints rather than at every
            # commit: a committed transaction survives the crash or kill of any process, but
            # the last commits can be lost if the machine loses power (the file stays
            # consistent). "Committed" in this store means committed to the WAL.
            connection.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"Failed to open the trace store {self.path}: {exc}.") from exc
        except sqlite3.DatabaseError as exc:
            raise _not_a_store(self.path, exc) from exc
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _connection(self) -> sqlite3.Connection:
        """Return this thread's reading (and `add_many`) connection.

        NOTE: connections of threads that have ended stay open until `close`; a program that
        reads from many short-lived threads should reuse threads (a pool) or reopen the store.
        """
        connection = getattr(self._local, "connection", None)
        if self._closed:
            raise StoreError(f"The trace store {self.path} is closed: open a new TraceStore.")
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    def _close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def _open_schema(self) -> None:
        connection = self._connect()
        try:
            self._check_file(connection)
            _switch_to_wal(connection, self.path)
            _migrations.apply_migrations(connection)
            self._codec = self._resolve_mode(connection)
        except sqlite3.OperationalError as exc:
            raise StoreError(f"Failed to open the trace store {self.path}: {exc}.") from exc
        except sqlite3.DatabaseError as exc:
            raise _not_a_store(self.path, exc) from exc
        self._local.connection = connection

    def _check_file(self, connection: sqlite3.Connection) -> None:
        version = _migrations.read_version(connection)
        application_id = _migrations.read_application_id(connection)
        is_ours = application_id == _migrations.APPLICATION_ID
        if version > _migrations.LATEST_VERSION and is_ours:
            raise StoreError(
                f"The trace store {self.path} has schema version {version}, newer than this "
                f"slmshift supports ({_migrations.LATEST_VERSION}): upgrade slmshift to open it."
            )
        has_tables = connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] > 0
        if not is_ours and (version > 0 or application_id != 0 or has_tables):
            raise StoreError(
                f"{self.path} is an SQLite file but not a slmshift trace store: pass another "
                "--store path, or move the file away."
            )

    # -- writer thread ---------------------------------------------------------------------

    def _write_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Write one batch in one transaction; called by the `BatchWriter` thread only.

        Payloads are sealed here, not in `add`: AES-GCM nonces come from os.urandom, which
        releases the GIL, and getting it back on a busy interpreter took milliseconds from
        the agent's thread.
        """
        rows = [self._codec.seal(row) for row in rows]
        if self._writer_connection is None:
            self._writer_connection = self._connect()
        connection = self._writer_connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._check_mode(connection)
            connection.executemany(_INSERT_SQL, rows)
            connection.execute("COMMIT")
        except BaseException:
            self._reset_writer_connection()
            raise

    def _reset_writer_connection(self) -> None:
        # A fresh connection on the next attempt also recovers from a connection SQLite broke.
        connection, self._writer_connection = self._writer_connection, None
        if connection is None:
            return
        try:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()
        except sqlite3.Error:
            logger.debug("Closing a failed writer connection to %s raised.", self.path, exc_info=True)

    def _close_at_exit(self) -> None:
        # A forked child inherits the hook but not the writer thread; its connections are the parent's.
        if os.getpid() == self._pid:
            self.close(EXIT_FLUSH_TIMEOUT_S)

    # -- encryption ------------------------------------------------------------------------

    @property
    def encrypted(self) -> bool:
        """Whether payloads are sealed with AES-GCM."""
        return self._codec.cipher is not None

    def rotate_key(self, new_key: StoreKey) -> int:
        """Re-encrypt every record with `new_key` (encrypting a plaintext store); return the count.

        One `BEGIN IMMEDIATE` transaction: other processes' writers wait for it, then fail
        their mode check and retry until they are reopened with the new key.

        Raises:
            MissingKeyError: a record is sealed with a key this store was not opened with.
        """
        self.flush()
        new_codec = PayloadCodec(PayloadCipher([new_key, *self._keys]))
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            rows = connection.execute(f"SELECT {_SELECT_COLUMNS} FROM records").fetchall()
            updates = []
            for row in rows:
                sealed = new_codec.seal(self._codec.open(row))
                updates.append((sealed[-2], sealed[-1], row[0]))
            connection.executemany("UPDATE records SET payload = ?, key_id = ? WHERE id = ?", updates)
            _write_mode(connection, new_codec.mode)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        self._keys = [new_key, *self._keys]
        self._codec = new_codec
        # Old payloads stay in freed pages until overwritten; VACUUM rewrites the whole file.
        connection.execute("VACUUM")
        return len(updates)

    def _resolve_mode(self, connection: sqlite3.Connection) -> PayloadCodec:
        codec = self._read_mode(connection)
        if codec is not None:
            return codec
        # A new store, or one whose mode this open changes: decide again under the write lock.
        connection.execute("BEGIN IMMEDIATE")
        try:
            codec = self._read_mode(connection, record=True)
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return codec

    def _read_mode(self, connection: sqlite3.Connection, *, record: bool = False) -> PayloadCodec | None:
        """Resolve the mode; return None when it must be recorded and `record` is False."""
        row = connection.execute(
            "SELECT value FROM store_meta WHERE key = ?", (ENCRYPTION_META_KEY,)
        ).fetchone()
        has_records = connection.execute("SELECT EXISTS (SELECT 1 FROM records)").fetchone()[0]
        codec = resolve_mode(
            row[0] if row else None, has_records=bool(has_records), keys=self._keys,
            location=str(self.path),
        )
        if row is not None and row[0] == codec.mode:
            return codec
        if not record:
            return None
        _write_mode(connection, codec.mode)
        return codec

    def _check_mode(self, connection: sqlite3.Connection) -> None:
        """Refuse to write when another process changed the store's encryption mode."""
        row = connection.execute(
            "SELECT value FROM store_meta WHERE key = ?", (ENCRYPTION_META_KEY,)
        ).fetchone()
        if row is None or row[0] != self._codec.mode:
            raise EncryptionError(
                f"The trace store {self.path} now has encryption mode {row[0] if row else None!r}, "
                f"but this process writes {self._codec.mode!r}: reopen it with the current key."
            )

    def _to_record(self, row: tuple[Any, ...]) -> CallRecord:
        try:
            return row_to_record(self._codec.open(row))
        except (RecordError, ValueError) as exc:
            raise StoreError(f"Record {row[0]!r} in {self.path} is invalid: {exc}") from exc


def _write_mode(connection: sqlite3.Connection, mode: str) -> None:
    connection.execute(
        "INSERT INTO store_meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (ENCRYPTION_META_KEY, mode),
    )


def resolve_path(url: str | Path | None) -> Path:
    """Return the file path of a SQLite store URL: a path, `sqlite:///path` or None (the default)."""
    if url is None:
        return DEFAULT_STORE_PATH
    text = str(url)
    if text.startswith("sqlite://"):
        text = text.removeprefix("sqlite://")
        if not text.startswith("/") or text == "/":
            raise StoreError(
                f"Invalid SQLite URL {str(url)!r}: use sqlite:///relative/path.db or "
                "sqlite:////absolute/path.db (an in-memory store is memory://)."
            )
        text = text[1:]
    if not text:
        raise StoreError("Empty trace store path: pass a file path such as .slmshift/traces.db.")
    return Path(text).expanduser()


def _create_files(path: Path) -> None:
    """Create the folder (0700) and the file (0600) before SQLite does."""
    folder = path.parent
    if not folder.exists():
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"Failed to create the trace store folder {folder}: {exc}.") from exc
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise StoreError(f"Failed to open the trace store {path}: {exc}.") from exc
    os.close(descriptor)


def _make_private(path: Path) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        logger.warning("Trace store file %s had mode %o; setting it to 0600.", path, mode)
        try:
            path.chmod(0o600)
        except OSError as exc:
            logger.warning("Failed to set mode 0600 on %s: %s.", path, exc)


def _switch_to_wal(connection: sqlite3.Connection, path: Path) -> None:
    # Switching needs an exclusive lock, and processes opening a new file together contend for it.
    for attempt in range(WAL_SWITCH_ATTEMPTS):
        try:
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_SWITCH_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
            continue
        if mode.lower() != "wal":
            raise StoreError(
                f"Failed to switch {path} to WAL mode (got {mode!r}): keep the store on a local "
                "file system."
            )
        return


def _where_clause(query: RecordQuery) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    parameters: list[Any] = []
    for column in ("agent", "node", "model", "trace_id"):
        value = getattr(query, column)
        if value is not None:
            conditions.append(f"{column} = ?")
            parameters.append(value)
    if query.since is not None:
        conditions.append("started_at >= ?")
        parameters.append(format_time(query.since))
    if query.until is not None:
        conditions.append("started_at < ?")
        parameters.append(format_time(query.until))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return where, parameters


def _row_or_raise(record: CallRecord) -> tuple[Any, ...]:
    try:
        return record_to_row(record)
    except (TypeError, ValueError, RecursionError) as exc:
        raise RecordError(f"Record {record.id} cannot be stored as JSON: {exc}. Nothing was written.") from exc


def _not_a_store(path: Path, exc: sqlite3.DatabaseError) -> StoreError:
    return StoreError(
        f"{path} is not a slmshift trace store ({exc}): pass another --store path, or move the "
        "file away."
    )


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else ""

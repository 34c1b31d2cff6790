"""Schema migrations of the SQLite trace store, applied in order inside one transaction each.

`PRAGMA user_version` contains the number of the last migration applied, and `PRAGMA
application_id` marks the file as a slmshift store, so that a foreign SQLite file is rejected
instead of being written into. Add a migration by appending a `Migration` with the next
version; never edit one that has shipped.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# "slms" in ASCII; stored in the SQLite header by the first migration.
APPLICATION_ID = 0x736C6D73


@dataclass(frozen=True)
class Migration:
    """One schema step: the version it leads to, what it does, and its SQL statements."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="Create the records table",
        statements=(
            f"PRAGMA application_id = {APPLICATION_ID}",
            """
            CREATE TABLE records (
                id TEXT PRIMARY KEY NOT NULL,
                trace_id TEXT,
                parent_id TEXT,
                agent TEXT,
                node TEXT,
                model TEXT,
                provider TEXT,
                output_kind TEXT,
                -- UTC ISO 8601 with microseconds: fixed width, so text order is time order.
                started_at TEXT NOT NULL,
                latency_ms REAL,
                input_tokens INTEGER,
                output_tokens INTEGER,
                is_error INTEGER NOT NULL DEFAULT 0,
                finish_reason TEXT,
                step INTEGER,
                schema_version INTEGER NOT NULL,
                -- JSON of the content fields (messages, response, tools, error, metadata).
                payload TEXT NOT NULL
            )
            """,
            "CREATE INDEX records_started_at ON records (started_at)",
            "CREATE INDEX records_trace_id ON records (trace_id, started_at)",
        ),
    ),
    Migration(
        version=2,
        description="Index records by agent and node for node filters and summaries",
        # NOTE: no index on model alone; each index slows inserts by about a quarter, and a
        # model filter usually comes with an agent or node filter.
        statements=("CREATE INDEX records_agent_node ON records (agent, node, started_at)",),
    ),
    Migration(
        version=3,
        description="Add the key id of encrypted payloads and the store settings table",
        statements=(
            # NULL for a plaintext payload; the id of the AES-GCM key that sealed it otherwise.
            "ALTER TABLE records ADD COLUMN key_id TEXT",
            "CREATE TABLE store_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def pending_migrations(current_version: int, target_version: int = LATEST_VERSION) -> list[Migration]:
    """Return the migrations that lead from `current_version` to `target_version`, in order."""
    return [m for m in MIGRATIONS if current_version < m.version <= target_version]


def apply_migrations(connection: sqlite3.Connection, target_version: int = LATEST_VERSION) -> int:
    """Bring the schema up to `target_version`, one transaction per migration; return the version.

    The connection must be in autocommit mode (`isolation_level=None`). Each step starts with
    `BEGIN IMMEDIATE` and re-reads the version inside the transaction, so several processes
    opening a new store at once apply each step exactly once.
    """
    version = read_version(connection)
    for migration in pending_migrations(version, target_version):
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = read_version(connection)
            if version >= migration.version:
                connection.execute("ROLLBACK")
                continue
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {migration.version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        version = migration.version
        logger.info("Migrated trace store to schema version %d: %s.", version, migration.description)
    return max(version, read_version(connection))


def read_version(connection: sqlite3.Connection) -> int:
    """Return the schema version stored in the file (0 for a new, empty file)."""
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def read_application_id(connection: sqlite3.Connection) -> int:
    """Return the application id in the SQLite header (0 when none was set)."""
    return int(connection.execute("PRAGMA application_id").fetchone()[0])

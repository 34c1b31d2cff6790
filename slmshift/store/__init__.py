"""Trace stores: SQLite (embedded default), PostgreSQL (scale-out) and in-memory (tests)."""

from slmshift.store.base import (
    DEFAULT_STORE_PATH,
    MemoryTraceStore,
    NodeSummary,
    RecordQuery,
    StoreError,
    TraceStore,
)

__all__ = ["DEFAULT_STORE_PATH", "MemoryTraceStore", "NodeSummary", "RecordQuery", "StoreError", "TraceStore"]

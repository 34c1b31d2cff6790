"""Shared fixtures: an in-memory trace store and a capture handler on it."""

from __future__ import annotations

import pytest

from slmshift.store import TraceStore

# A throwaway PostgreSQL server on 127.0.0.1 for the PostgreSQL store tests.
pytest_plugins = ["tests.postgres_server"]


@pytest.fixture
def memory_store() -> TraceStore:
    store = TraceStore("memory://")
    yield store
    store.close()

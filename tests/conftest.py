"""Shared fixtures: an in-memory trace store, a throwaway PostgreSQL server on 127.0.0.1 for the
PostgreSQL store tests, and the tiny local SLMs the swap and fallback tests serve."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slmshift.store import TraceStore

pytest_plugins = ["tests.postgres_server", "conftest_swap_models"]


@pytest.fixture
def memory_store() -> Iterator[TraceStore]:
    store = TraceStore("memory://")
    yield store
    store.close()

"""Shared fixtures: an in-memory trace store and a capture handler on it."""

from __future__ import annotations

import pytest

from slmshift.store import TraceStore


@pytest.fixture
def memory_store() -> TraceStore:
    store = TraceStore("memory://")
    yield store
    store.close()

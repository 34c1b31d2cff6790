"""Shared fixtures: an in-memory trace store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from slmshift.store import TraceStore


@pytest.fixture
def memory_store() -> Iterator[TraceStore]:
    store = TraceStore("memory://")
    yield store
    store.close()

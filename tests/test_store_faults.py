"""Faults under a running agent: a full disk, a locked or read-only database, a PostgreSQL
server restarted mid-run, and a writer process killed with SIGKILL.

Each test checks the same promises: `add` keeps returning at once, failures are counted, no
committed record is lost, nothing is corrupted, and writes resume when the fault clears. The
full disk and the read-only file are real: a small tmpfs mounted in a temporary folder (the
tests must run as root, as CI does; they fail, not skip, otherwise).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from slmshift.store import StoreError, TraceStore
from tests.store_records import make_record

# A fault must never make `add` wait; the writer's submit timeout is 2 ms.
MAX_ADD_SECONDS = 0.1
FAST_RETRY = {"retry_initial_ms": 20, "retry_max_ms": 100, "flush_interval_ms": 10}


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
        capture_output=True, text=True,
    )
    if mounted.returncode != 0:
        pytest.fail(
            f"Cannot mount a tmpfs at {path} ({mounted.stderr.strip()}): the disk fault tests "
            "need root, as in CI (.ci/run).", pytrace=False,
        )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def add_all(store: TraceStore, first: int, count: int) -> tuple[int, float]:
    """Add records `first..first+count`; return how many were accepted and the slowest add."""
    accepted, slowest = 0, 0.0
    for index in range(first, first + count):
        started = time.perf_counter()
        accepted += store.add(make_record(index))
        slowest = max(slowest, time.perf_counter() - started)
    return accepted, slowest


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def test_full_disk_buffers_counts_overflow_and_resumes(tmp_path):
    with tmpfs(tmp_path / "disk", "1m") as disk:
        store = TraceStore(str(disk / "traces.db"), keys=[], max_queue_size=200, max_batch_size=50, **FAST_RETRY)
        add_all(store, 0, 50)
        assert store.flush(timeout=10)
        ballast = disk / "ballast"
        with open(ballast, "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass  # ENOSPC: the disk is full now

        accepted, slowest = add_all(store, 50, 600)
        assert wait_for(lambda: store.stats["failed"] > 0)
        assert slowest < MAX_ADD_SECONDS
        assert 0 < accepted < 600
        assert store.stats["dropped"] == 600 - accepted

        ballast.unlink()
        assert store.flush(timeout=30)
        assert store.count() == 50 + accepted
        store.close()
        assert integrity(disk / "traces.db") == "ok"


def test_locked_database_delays_writes_until_the_lock_is_released(tmp_path):
    path = tmp_path / "traces.db"
    store = TraceStore(str(path), keys=[], busy_timeout_ms=50, **FAST_RETRY)
    add_all(store, 0, 10)
    assert store.flush(timeout=10)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        accepted, slowest = add_all(store, 10, 300)
        assert wait_for(lambda: store.stats["failed"] > 0)
        assert not store.flush(timeout=0.3)
        assert slowest < MAX_ADD_SECONDS and accepted == 300
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert store.flush(timeout=30)
    assert store.count() == 310
    store.close()
    assert integrity(path) == "ok"


def test_read_only_file_system_refuses_to_open_with_the_path_then_recovers(tmp_path):
    with tmpfs(tmp_path / "disk", "4m") as disk:
        path = disk / "traces.db"
        with TraceStore(str(path), keys=[]) as store:
            store.add_many([make_record(index) for index in range(20)])
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        try:
            with pytest.raises(StoreError, match=str(path)):
                TraceStore(str(path), keys=[])
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(disk)], check=True)
        with TraceStore(str(path), keys=[]) as store:
            assert store.count() == 20
            store.add_many([make_record(20)])
            assert store.count() == 21
        assert integrity(path) == "ok"


@pytest.mark.postgres
def test_postgres_restart_mid_run_loses_no_committed_record(postgres_server, postgres_url):
    store = TraceStore(postgres_url, keys=[], max_queue_size=300, max_batch_size=50, **FAST_RETRY)
    add_all(store, 0, 100)
    assert store.flush(timeout=10)
    postgres_server.stop()
    try:
        accepted, slowest = add_all(store, 100, 1000)
        assert wait_for(lambda: store.stats["failed"] > 0)
        assert slowest < MAX_ADD_SECONDS
        assert 0 < accepted < 1000 and store.stats["dropped"] == 1000 - accepted
    finally:
        postgres_server.start()
    assert store.flush(timeout=30)
    assert store.count() == 100 + accepted
    assert store.stats["written"] == 100 + accepted
    store.close()


@pytest.mark.postgres
def test_postgres_read_only_database_delays_writes_until_writable(postgres_url):
    store = TraceStore(postgres_url, keys=[], **FAST_RETRY)
    database = postgres_url.rsplit("/", 1)[1]
    admin = psycopg.connect(postgres_url.rsplit("/", 1)[0] + "/postgres", autocommit=True)
    try:
        admin.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        # Sessions keep their settings; the store's writer picks this up when it reconnects.
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        )
        accepted, slowest = add_all(store, 0, 200)
        assert wait_for(lambda: store.stats["failed"] > 1)
        assert slowest < MAX_ADD_SECONDS and accepted == 200
        assert not store.flush(timeout=0.3)
    finally:
        admin.execute(f'ALTER DATABASE "{database}" RESET default_transaction_read_only')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)
        )
        admin.close()
    assert store.flush(timeout=30)
    assert store.count() == 200
    store.close()


KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from slmshift.store import TraceStore
    from tests.store_records import make_record

    store = TraceStore(sys.argv[1], keys=[], flush_interval_ms=5)
    index = 0
    while True:
        store.add(make_record(index))
        index += 1
        if index % 100 == 0:
            store.flush()
            print(index, flush=True)
    """
)


def run_and_kill(url: str, committed_before_kill: int) -> int:
    """Start a writer process, SIGKILL it mid-run; return the count it reported committed."""
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, url],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
    )
    committed = 0
    try:
        for line in child.stdout:
            committed = int(line)
            if committed >= committed_before_kill:
                # Let it keep writing for a moment, so the kill lands inside a batch.
                time.sleep(0.05)
                os.kill(child.pid, signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    return committed


def test_sqlite_writer_killed_mid_run_keeps_every_committed_record(tmp_path):
    path = tmp_path / "traces.db"
    committed = run_and_kill(str(path), 1000)
    assert integrity(path) == "ok"
    with TraceStore(str(path), keys=[]) as store:
        assert store.count() >= committed
        assert all(store.get(make_record(index).id) for index in range(committed))
        store.add_many([make_record(10**6)])


@pytest.mark.postgres
def test_postgres_writer_killed_mid_run_keeps_every_committed_record(postgres_url):
    committed = run_and_kill(postgres_url, 1000)
    with TraceStore(postgres_url, keys=[]) as store:
        assert store.count() >= committed
        stored = {record.id for record in store.records()}
        assert {make_record(index).id for index in range(committed)} <= stored
        store.add_many([make_record(10**6)])

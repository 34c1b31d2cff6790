"""The PostgreSQL trace store against a real server started by the `postgres_server` fixture."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from slmshift.store import StoreError, TraceStore
from slmshift.store.encryption import MissingKeyError, StoreKey
from slmshift.store.postgres import PostgresTraceStore
from tests.store_records import PLANTED_SECRET, make_record

pytestmark = pytest.mark.postgres


def test_url_opens_the_postgres_backend(postgres_url):
    with TraceStore(postgres_url, keys=[]) as store:
        assert isinstance(store, PostgresTraceStore)


def test_records_round_trip_and_filter(postgres_url):
    records = [make_record(index) for index in range(20)]
    with TraceStore(postgres_url, keys=[]) as store:
        assert store.add_many(records) == 20
        assert store.add_many(records[:5]) == 0
        assert list(store.records()) == records
        assert store.count(node="classify") == 10
        assert store.get(records[3].id) == records[3]
        assert [r.id for r in store.records(node="lookup", limit=2)] == [records[1].id, records[3].id]
        assert [r.id for r in store.records(limit=2, newest_first=True)] == [records[19].id, records[18].id]
        assert store.match_ids(records[5].id[:8]) == [records[5].id]
        assert [(n.node, n.calls, n.input_tokens) for n in store.nodes()] == [("classify", 10, 420), ("lookup", 10, 800)]


def test_add_is_batched_and_visible_after_flush(postgres_url):
    with TraceStore(postgres_url, keys=[]) as store:
        for index in range(300):
            assert store.add(make_record(index))
        assert store.flush(timeout=30)
        assert store.count() == 300
        assert store.stats["written"] == 300


def _write_from_process(url: str, offset: int, count: int) -> None:
    with TraceStore(url, keys=[]) as store:
        for index in range(offset, offset + count):
            store.add(make_record(index))
            store.add(make_record(index))  # duplicates from one writer are kept once
        store.flush(timeout=60)


def test_concurrent_processes_migrate_once_and_lose_nothing(postgres_url):
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write_from_process, args=(postgres_url, n * 250, 250)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    with psycopg.connect(postgres_url) as connection:
        assert connection.execute("SELECT count(*) FROM store_schema").fetchone()[0] == 1
        assert connection.execute("SELECT count(*) FROM records").fetchone()[0] == 1000


def test_encrypted_store_holds_no_planted_secret(postgres_url):
    key = StoreKey.generate()
    with TraceStore(postgres_url, keys=[key]) as store:
        store.add_many([make_record(index) for index in range(10)])
        assert store.count(agent="support-bot", node="classify") == 5
        assert PLANTED_SECRET in store.get(make_record(0).id).messages[1].content
    with psycopg.connect(postgres_url) as connection:
        dump = connection.execute("SELECT string_agg(t::text, '') FROM records t").fetchone()[0]
    assert "support-bot" in dump
    assert PLANTED_SECRET not in dump and "Ada" not in dump


def test_encrypted_store_without_key_names_the_env_var(postgres_url):
    TraceStore(postgres_url, keys=[StoreKey.generate()]).close()
    with pytest.raises(MissingKeyError, match="SLMSHIFT_STORE_KEY"):
        TraceStore(postgres_url, keys=[])


def test_rotate_key_reencrypts_every_record(postgres_url):
    old, new = StoreKey.generate(), StoreKey.generate()
    with TraceStore(postgres_url, keys=[old]) as store:
        store.add_many([make_record(index) for index in range(30)])
        assert store.rotate_key(new) == 30
    with TraceStore(postgres_url, keys=[new]) as store:
        assert store.count() == 30
        assert len(list(store.records())) == 30
    with psycopg.connect(postgres_url) as connection:
        key_ids = connection.execute("SELECT DISTINCT key_id FROM records").fetchall()
    assert key_ids == [(new.key_id,)]


def test_unreachable_server_error_names_the_url_without_password():
    with pytest.raises(StoreError, match=r"127\.0\.0\.1:1/x.*Check the host") as caught:
        TraceStore("postgresql://me:hunter2@127.0.0.1:1/x", keys=[])
    assert "hunter2" not in str(caught.value)


def test_interpreter_exit_writes_queued_records(postgres_url):
    script = (
        "import sys\n"
        "from slmshift.store import TraceStore\n"
        "from tests.store_records import make_record\n"
        "store = TraceStore(sys.argv[1], keys=[], flush_interval_ms=60000)\n"
        "for index in range(50):\n"
        "    store.add(make_record(index))\n"
    )
    subprocess.run([sys.executable, "-c", script, postgres_url], check=True, cwd=Path(__file__).parent.parent)
    with TraceStore(postgres_url, keys=[]) as store:
        assert store.count() == 50

"""Encryption at rest, on the SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from slmshift.store import TraceStore
from slmshift.store.encryption import KEY_ENV, EncryptionError, MissingKeyError, StoreKey
from tests.store_records import PLANTED_SECRET, make_record


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "traces.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture()
def raw_bytes(request):
    """Read every byte the backend keeps on disk for the store's database."""

    def read(url: str) -> bytes:
        if url.startswith("postgresql://"):
            return _postgres_files(request.getfixturevalue("postgres_server"), url)
        with sqlite3.connect(url) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return b"".join(path.read_bytes() for path in Path(url).parent.glob(Path(url).name + "*"))

    return read


def _postgres_files(server, url: str) -> bytes:
    # The database's own folder only: the shared WAL also holds other tests' plaintext rows.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CHECKPOINT")
        oid = connection.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()[0]
    folder = server.data_dir / "base" / str(oid)
    return b"".join(path.read_bytes() for path in folder.iterdir() if path.is_file())


def test_encrypted_store_never_holds_the_planted_secret(store_url, raw_bytes):
    key = StoreKey.generate()
    with TraceStore(store_url, keys=[key]) as store:
        store.add_many([make_record(index) for index in range(10)])
        for index in range(10, 20):
            store.add(make_record(index))
        store.flush(timeout=30)
        assert store.count(node="classify") == 10
        assert PLANTED_SECRET in store.get(make_record(0).id).metadata["customer"]
    raw = raw_bytes(store_url)
    assert b"support-bot" in raw and b"gpt-4o-mini" in raw
    assert PLANTED_SECRET.encode() not in raw and b"Lovelace" not in raw and b"Label the ticket" not in raw


def test_plaintext_store_holds_the_secret_so_the_check_above_can_fail(store_url, raw_bytes):
    with TraceStore(store_url, keys=[]) as store:
        store.add_many([make_record(0)])
    assert PLANTED_SECRET.encode() in raw_bytes(store_url)


def test_opening_without_the_key_names_the_env_var(store_url):
    TraceStore(store_url, keys=[StoreKey.generate()]).close()
    with pytest.raises(MissingKeyError, match=KEY_ENV):
        TraceStore(store_url, keys=[])


def test_key_env_var_is_read_when_no_keys_are_passed(store_url, monkeypatch):
    key = StoreKey.generate()
    monkeypatch.setenv(KEY_ENV, key.to_base64())
    with TraceStore(store_url) as store:
        assert store.encrypted
        store.add_many([make_record(0)])
    with TraceStore(store_url, keys=[key]) as store:
        assert store.get(make_record(0).id) == make_record(0)


def test_wrong_key_names_the_stored_key_id(store_url):
    with TraceStore(store_url, keys=[StoreKey.generate()]) as store:
        store.add_many([make_record(0)])
    with TraceStore(store_url, keys=[StoreKey.generate()]) as store:
        with pytest.raises(MissingKeyError, match="SLMSHIFT_STORE_OLD_KEYS"):
            list(store.records())


def test_key_given_for_a_plaintext_store_refuses_to_mix(store_url):
    with TraceStore(store_url, keys=[]) as store:
        store.add_many([make_record(0)])
    with pytest.raises(EncryptionError, match=r"plaintext records.*rotate_key"):
        TraceStore(store_url, keys=[StoreKey.generate()])


def test_rotate_key_encrypts_a_plaintext_store_then_rotates(store_url, raw_bytes):
    first, second = StoreKey.generate(), StoreKey.generate()
    records = [make_record(index) for index in range(12)]
    with TraceStore(store_url, keys=[]) as store:
        store.add_many(records)
        assert store.rotate_key(first) == 12
    with TraceStore(store_url, keys=[first]) as store:
        assert store.rotate_key(second) == 12
    with pytest.raises(MissingKeyError):
        list(TraceStore(store_url, keys=[first]).records())
    with TraceStore(store_url, keys=[second]) as store:
        assert list(store.records()) == records
    assert PLANTED_SECRET.encode() not in raw_bytes(store_url)


def test_payload_moved_to_another_row_fails_authentication(tmp_path):
    url = str(tmp_path / "traces.db")
    key = StoreKey.generate()
    with TraceStore(url, keys=[key]) as store:
        store.add_many([make_record(0), make_record(2)])
    with sqlite3.connect(url) as connection:
        payload = connection.execute("SELECT payload FROM records WHERE id = ?", (make_record(0).id,)).fetchone()[0]
        connection.execute("UPDATE records SET payload = ? WHERE id = ?", (payload, make_record(2).id))
    with TraceStore(url, keys=[key]) as store:
        with pytest.raises(EncryptionError, match="failed authentication"):
            store.get(make_record(2).id)

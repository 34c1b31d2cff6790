"""`slmshift traces rotate-key` on a SQLite store."""

from __future__ import annotations

import stat

import pytest

from slmshift.cli import main
from slmshift.store import TraceStore
from slmshift.store.encryption import KEY_ENV, KEY_FILE_ENV, MissingKeyError, read_key_file
from tests.store_records import PLANTED_SECRET, make_record


def test_rotate_key_encrypts_a_plaintext_store_with_a_generated_key(tmp_path, monkeypatch, capsys):
    for name in (KEY_ENV, KEY_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    store_path, key_path = tmp_path / "traces.db", tmp_path / "store.key"
    with TraceStore(str(store_path)) as store:
        store.add_many([make_record(index) for index in range(6)])

    assert main(["traces", "rotate-key", "--store", str(store_path), "--new-key-file", str(key_path), "--generate"]) == 0

    assert "Re-encrypted 6 calls" in capsys.readouterr().out
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert PLANTED_SECRET.encode() not in store_path.read_bytes()
    with pytest.raises(MissingKeyError):
        TraceStore(str(store_path))
    monkeypatch.setenv(KEY_FILE_ENV, str(key_path))
    with TraceStore(str(store_path)) as store:
        assert store.get(make_record(4).id) == make_record(4)
    assert read_key_file(key_path).key_id in store_path.read_bytes().decode("latin-1")


def test_rotate_key_without_the_current_key_names_the_env_var(tmp_path, monkeypatch, capsys):
    store_path, old_key, new_key = tmp_path / "traces.db", tmp_path / "old.key", tmp_path / "new.key"
    monkeypatch.delenv(KEY_ENV, raising=False)
    assert main(["traces", "rotate-key", "--store", str(store_path), "--new-key-file", str(old_key), "--generate"]) == 0
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)

    assert main(["traces", "rotate-key", "--store", str(store_path), "--new-key-file", str(new_key), "--generate"]) == 2
    assert KEY_ENV in capsys.readouterr().err

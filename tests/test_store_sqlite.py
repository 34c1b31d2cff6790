"""The SQLite trace store on real files: queries, import and export, modes, migrations,
concurrent threads and processes, a writer killed with SIGKILL, flush and drop counting."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmshift.records import CallRecord, Message, RecordError, ToolCall, Usage
from slmshift.store import StoreError, TraceStore
from slmshift.store import _migrations
from slmshift.store._rows import COLUMNS, record_to_row
from slmshift.store.sqlite import SQLiteTraceStore

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def make_record(number: int, **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "id": f"r-{number:06d}",
        "trace_id": f"trace-{number // 10}",
        "agent": "support-bot",
        "node": "classify" if number % 2 else "route",
        "model": "gpt-4o-mini",
        "provider": "openai",
        "messages": (Message("system", "Classify the request."), Message("user", f"Anfrage {number} 🙂")),
        "response": Message("assistant", "card_arrival"),
        "usage": Usage(input_tokens=40, output_tokens=2),
        "latency_ms": 250.0 + number,
        "started_at": T0 + timedelta(seconds=number),
        "metadata": {"thread_id": f"t-{number % 3}"},
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "traces.db"


@pytest.fixture
def store(store_path: Path):
    opened = TraceStore(store_path, flush_interval_ms=5)
    yield opened
    opened.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- opening ---------------------------------------------------------------------------------


def test_default_store_is_private_sqlite_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    with TraceStore() as store:
        store.add(make_record(1))
        assert store.flush(timeout=5)
        assert isinstance(store, SQLiteTraceStore)

    folder = tmp_path / ".slmshift"
    assert _mode(folder) == 0o700
    assert _mode(folder / "traces.db") == 0o600
    for suffix in ("-wal", "-shm"):
        extra = folder / f"traces.db{suffix}"
        if extra.exists():
            assert _mode(extra) == 0o600


def test_wal_files_are_private_while_open(store: TraceStore, store_path: Path) -> None:
    store.add(make_record(1))
    assert store.flush(timeout=5)

    assert _mode(store_path) == 0o600
    assert _mode(Path(f"{store_path}-wal")) == 0o600
    assert _mode(Path(f"{store_path}-shm")) == 0o600


def test_loose_file_mode_is_tightened(store_path: Path) -> None:
    store_path.parent.mkdir()
    store_path.touch(mode=0o644)
    store_path.chmod(0o644)

    TraceStore(store_path).close()

    assert _mode(store_path) == 0o600


def test_sqlite_url_opens_the_path(tmp_path: Path) -> None:
    path = tmp_path / "by-url.db"

    with TraceStore(f"sqlite:///{path}") as store:
        store.add_many([make_record(1)])
        assert store.path == path

    with TraceStore(path) as reopened:
        assert reopened.count() == 1


def test_store_is_in_wal_mode(store: TraceStore, store_path: Path) -> None:
    connection = sqlite3.connect(store_path)
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("PRAGMA user_version").fetchone()[0] == _migrations.LATEST_VERSION
    finally:
        connection.close()


def test_foreign_sqlite_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (name TEXT)")
    connection.commit()
    connection.close()

    with pytest.raises(StoreError, match=rf"{path} is an SQLite file but not a slmshift trace store.*--store"):
        TraceStore(path)

    connection = sqlite3.connect(path)
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    connection.close()
    assert tables == {"users"}


def test_non_sqlite_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("these are my notes, not a database\n" * 20)
    path.chmod(0o644)

    with pytest.raises(StoreError, match=rf"{path} is not a slmshift trace store.*move the file away"):
        TraceStore(path)

    assert path.read_text().startswith("these are my notes")
    assert _mode(path) == 0o644


def test_newer_schema_version_is_rejected(store_path: Path) -> None:
    TraceStore(store_path).close()
    connection = sqlite3.connect(store_path)
    connection.execute(f"PRAGMA user_version = {_migrations.LATEST_VERSION + 1}")
    connection.close()

    with pytest.raises(StoreError, match=rf"{store_path} has schema version .*upgrade slmshift"):
        TraceStore(store_path)


def test_older_schema_version_is_migrated(store_path: Path) -> None:
    store_path.parent.mkdir()
    connection = sqlite3.connect(store_path, isolation_level=None)
    _migrations.apply_migrations(connection, target_version=1)
    placeholders = ", ".join("?" for _ in COLUMNS)
    connection.execute(f"INSERT INTO records ({', '.join(COLUMNS)}) VALUES ({placeholders})", record_to_row(make_record(7)))
    connection.close()

    with TraceStore(store_path) as store:
        assert store.get("r-000007") == make_record(7)

    connection = sqlite3.connect(store_path)
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    connection.close()
    assert version == _migrations.LATEST_VERSION
    assert "records_agent_node" in indexes


def test_invalid_sqlite_url_raises() -> None:
    with pytest.raises(StoreError, match="Invalid SQLite URL 'sqlite://'"):
        TraceStore("sqlite://")


# -- queries ---------------------------------------------------------------------------------


def test_records_round_trip_exactly(store: TraceStore) -> None:
    original = make_record(
        3,
        response=Message("assistant", None, tool_calls=(ToolCall("refund", {"amount": 12.5}, id="c1"),)),
        usage=Usage(input_tokens=None, output_tokens=None),
        error=None,
        metadata={"nested": {"emoji": "🚀", "list": [1, None, "x"]}},
    )
    store.add(original)
    assert store.flush(timeout=5)

    stored = store.get(original.id)

    assert stored == original
    assert stored is not None
    assert stored.to_json() == original.to_json()
    assert stored.output_kind == "tool_call"
    assert stored.usage.input_tokens is None


def test_query_filters(store: TraceStore) -> None:
    store.add_many([make_record(n) for n in range(20)])
    store.add_many([make_record(100, agent="billing-bot", model="llama-3.2-1b")])

    assert store.count() == 21
    assert store.count(agent="billing-bot") == 1
    assert store.count(agent="support-bot", node="classify") == 10
    assert [r.id for r in store.records(model="llama-3.2-1b")] == ["r-000100"]
    assert [r.id for r in store.records(trace_id="trace-1")] == [f"r-{n:06d}" for n in range(10, 20)]
    assert store.count(agent="nobody") == 0
    assert store.get("missing") is None


def test_time_range_since_inclusive_until_exclusive(store: TraceStore) -> None:
    store.add_many([make_record(n) for n in range(10)])

    selected = store.records(since=T0 + timedelta(seconds=3), until=T0 + timedelta(seconds=6))
    naive = store.count(since=datetime(2026, 1, 31, 12, 0, 8))

    assert [r.id for r in selected] == ["r-000003", "r-000004", "r-000005"]
    assert naive == 2


def test_records_are_ordered_by_start_time(store: TraceStore) -> None:
    shuffled = [make_record(n) for n in (5, 1, 9, 3, 7)]
    store.add_many(shuffled)
    store.add_many([make_record(50, started_at=T0 + timedelta(seconds=1), id="r-tie")])

    ids = [r.id for r in store.records()]

    assert ids == ["r-000001", "r-tie", "r-000003", "r-000005", "r-000007", "r-000009"]
    assert [r.id for r in store.records(limit=2)] == ["r-000001", "r-tie"]
    assert [r.id for r in store.records(limit=2, newest_first=True)] == ["r-000009", "r-000007"]


def test_nodes_summary(store: TraceStore) -> None:
    store.add_many([make_record(n) for n in range(6)])
    store.add_many([make_record(6, error="timeout", response=None, usage=Usage())])

    summaries = {(s.agent, s.node, s.model): s for s in store.nodes()}
    route = summaries[("support-bot", "route", "gpt-4o-mini")]
    classify = summaries[("support-bot", "classify", "gpt-4o-mini")]

    assert route.calls == 4
    assert route.errors == 1
    assert route.input_tokens == 120
    assert route.calls_without_usage == 1
    assert classify.calls == 3
    assert classify.errors == 0
    assert classify.output_tokens == 6
    assert classify.mean_latency_ms == pytest.approx(253.0)


def test_match_ids_treats_wildcards_literally(store: TraceStore) -> None:
    store.add_many([make_record(1, id="ab_1"), make_record(2, id="abc2"), make_record(3, id="ab%3")])

    assert store.match_ids("ab_") == ["ab_1"]
    assert store.match_ids("ab") == ["ab%3", "ab_1", "abc2"]


# -- import and export -----------------------------------------------------------------------


def test_add_many_is_idempotent(store: TraceStore) -> None:
    records = [make_record(n) for n in range(10)]

    assert store.add_many(records) == 10
    assert store.add_many(records) == 0
    assert store.count() == 10


def test_export_import_round_trip(store: TraceStore, tmp_path: Path) -> None:
    records = [make_record(n) for n in range(12)]
    store.add_many(records)
    export = tmp_path / "export.jsonl"

    assert store.export_jsonl(export, agent="support-bot") == 12
    with TraceStore(tmp_path / "other.db") as other:
        assert other.import_jsonl(export) == 12
        assert other.import_jsonl(export) == 0
        assert list(other.records()) == records
        assert [r.to_json() for r in other.records()] == [r.to_json() for r in records]

    assert _mode(export) == 0o600
    assert export.read_text(encoding="utf-8").count("\n") == 12


def test_bad_import_line_leaves_store_unchanged(store: TraceStore, tmp_path: Path) -> None:
    lines = [make_record(n).to_json() for n in range(3)]
    lines.insert(2, '{"messages": [{"role": "robot"}]}')
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(RecordError, match=r"bad.jsonl, line 3: .*Invalid message role 'robot'.*nothing was imported"):
        store.import_jsonl(source)

    assert store.count() == 0


def test_add_many_with_unstorable_record_writes_nothing(store: TraceStore) -> None:
    records = [make_record(1), make_record(2, metadata={"handle": object()})]

    with pytest.raises(RecordError, match="Record r-000002 cannot be stored as JSON"):
        store.add_many(records)

    assert store.count() == 0


# -- writer ----------------------------------------------------------------------------------


def test_add_never_raises_on_unstorable_record(store: TraceStore) -> None:
    assert store.add(make_record(1, metadata={"handle": object()})) is False
    assert store.add("not a record") is False  # type: ignore[arg-type]
    assert store.add(make_record(2)) is True
    assert store.flush(timeout=5)

    assert store.count() == 1
    assert store.stats["dropped"] == 2


@pytest.mark.parametrize(
    "changes",
    [
        {"messages": (Message("user", "half an emoji \ud83d"),)},
        {"node": "route\udc80"},
        {"usage": Usage(input_tokens=2**64)},
    ],
)
def test_unstorable_value_is_rejected_alone(store: TraceStore, changes: dict[str, object]) -> None:
    assert store.add(make_record(1, **changes)) is False
    assert store.add(make_record(2)) is True
    assert store.flush(timeout=5)

    assert [r.id for r in store.records()] == ["r-000002"]
    assert store.stats["failed"] == 0
    assert store.stats["dropped"] == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.text(st.characters(blacklist_categories=("Cs",))),
    name=st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)),
)
def test_any_text_round_trips(store: TraceStore, text: str, name: str | None) -> None:
    record = make_record(0, id=f"h-{store.count()}", node=name, messages=(Message("user", text),))

    assert store.add_many([record]) == 1

    assert store.get(record.id) == record


def test_flush_waits_for_commit(store_path: Path) -> None:
    with TraceStore(store_path, flush_interval_ms=10_000) as store:
        for number in range(50):
            store.add(make_record(number))

        assert store.flush(timeout=5)

        reader = sqlite3.connect(store_path)
        assert reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 50
        reader.close()


def test_flush_times_out_while_file_is_locked(store_path: Path) -> None:
    store = TraceStore(store_path, busy_timeout_ms=20, flush_interval_ms=0, retry_initial_ms=10)
    locker = sqlite3.connect(store_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        store.add(make_record(1))
        assert store.flush(timeout=0.3) is False
        assert store.stats["failed"] >= 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert store.flush(timeout=5)
    assert store.count() == 1
    assert store.stats["retries"] >= 1
    store.close()


def test_full_queue_drops_are_counted(store_path: Path) -> None:
    store = TraceStore(
        store_path,
        busy_timeout_ms=10,
        max_queue_size=10,
        max_batch_size=5,
        flush_interval_ms=0,
        submit_timeout_ms=1,
        retry_initial_ms=10,
    )
    locker = sqlite3.connect(store_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        accepted = sum(store.add(make_record(n)) for n in range(100))
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    assert store.flush(timeout=5)
    stats = store.stats
    assert accepted <= 15
    assert stats["dropped"] == 100 - accepted
    assert stats["queued"] == accepted
    assert store.count() == accepted
    store.close()


def test_close_flushes_queued_records(store_path: Path) -> None:
    store = TraceStore(store_path, flush_interval_ms=10_000)
    for number in range(30):
        store.add(make_record(number))

    store.close()

    with TraceStore(store_path) as reopened:
        assert reopened.count() == 30
    assert store.add(make_record(99)) is False


def test_interpreter_exit_flushes_queued_records(store_path: Path) -> None:
    script = (
        "import sys\n"
        "from test_store_sqlite import make_record\n"
        "from slmshift.store import TraceStore\n"
        f"store = TraceStore({str(store_path)!r}, flush_interval_ms=60_000)\n"
        "for n in range(40):\n"
        "    store.add(make_record(n))\n"
    )
    _run_python(script)

    with TraceStore(store_path) as store:
        assert store.count() == 40


def test_eight_threads_lose_nothing(store: TraceStore) -> None:
    per_thread = 500

    def write(worker: int) -> None:
        for number in range(per_thread):
            store.add(make_record(worker * per_thread + number))

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert store.flush(timeout=10)
    assert store.count() == 8 * per_thread
    assert store.stats["dropped"] == 0


def _write_from_process(path: str, worker: int, count: int) -> None:
    store = TraceStore(path, flush_interval_ms=2, max_batch_size=50)
    for number in range(count):
        store.add(make_record(worker * count + number))
    store.close()
    if store.stats["written"] != count:
        raise SystemExit(f"worker {worker} wrote {store.stats}")


def test_four_processes_lose_nothing(store_path: Path) -> None:
    # The processes create the file together, so the schema set-up races too.
    store_path.parent.mkdir()
    context = multiprocessing.get_context("spawn")
    per_process = 1000
    processes = [
        context.Process(target=_write_from_process, args=(str(store_path), worker, per_process))
        for worker in range(4)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(60)

    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    with TraceStore(store_path) as store:
        assert store.count() == 4 * per_process
        assert len({r.id for r in store.records()}) == 4 * per_process


def test_sigkill_mid_batch_keeps_committed_records(store_path: Path) -> None:
    script = (
        "from test_store_sqlite import make_record\n"
        "from slmshift.store import TraceStore\n"
        f"store = TraceStore({str(store_path)!r}, flush_interval_ms=1, max_batch_size=64)\n"
        "number = 0\n"
        "while True:\n"
        "    store.add(make_record(number))\n"
        "    number += 1\n"
        "    if number % 500 == 0:\n"
        "        store.flush()\n"
        "        print(number, flush=True)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_child_env(), cwd=REPO_ROOT
    )
    assert child.stdout is not None
    committed = 0
    try:
        while committed < 3000:
            line = child.stdout.readline()
            assert line, "the writer process exited early"
            committed = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()

    assert child.returncode == -signal.SIGKILL
    connection = sqlite3.connect(store_path)
    assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = connection.execute("SELECT COUNT(*) FROM records WHERE id < ?", (f"r-{committed:06d}",)).fetchone()[0]
    connection.close()
    assert kept == committed
    with TraceStore(store_path) as store:
        records = list(store.records())
    assert len(records) >= committed
    assert records[committed - 1] == make_record(committed - 1)


def _child_env() -> dict[str, str]:
    paths = [str(REPO_ROOT), str(REPO_ROOT / "tests"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}


def _run_python(script: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", script], env=_child_env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr

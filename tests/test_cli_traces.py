"""`slmshift traces`: list, show, export, import and nodes on real SQLite files."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from slmshift.cli import main
from slmshift.commands.traces import detect_import_format, parse_time
from slmshift.records import CallRecord, Message, ToolCall, ToolDefinition, Usage
from slmshift.store import TraceStore

T0 = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)


def make_record(number: int, **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "id": f"rec-{number:04d}",
        "trace_id": f"trace-{number // 3}",
        "agent": "support-bot",
        "node": "classify" if number % 2 else "route",
        "model": "gpt-4o-mini",
        "messages": (Message("user", f"Where is my card [b]{number}[/b]? 📦"),),
        "response": Message("assistant", "card_arrival"),
        "usage": Usage(input_tokens=30 + number, output_tokens=2),
        "latency_ms": 400.0,
        "started_at": T0 + timedelta(minutes=number),
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("COLUMNS", "160")
    path = tmp_path / "traces.db"
    with TraceStore(path) as store:
        store.add_many([make_record(n) for n in range(6)])
        store.add_many(
            [
                make_record(
                    6,
                    agent="billing-bot",
                    node="refund",
                    usage=Usage(),
                    tools=(ToolDefinition("refund", "Refund an order.", {"type": "object", "properties": {"order_id": {}}}),),
                    response=Message("assistant", None, tool_calls=(ToolCall("refund", {"order_id": "A-17"}, id="call_9"),)),
                ),
                make_record(7, agent="billing-bot", node="refund", error="RateLimitError: slow down", response=None),
            ]
        )
    return path


def run(*argv: str) -> int:
    return main(list(argv))


def test_list_shows_calls_in_time_order(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "list", "--store", str(store_path)) == 0

    output = capsys.readouterr().out
    lines = output.splitlines()
    assert "tokens in/out" in lines[0]
    assert "latency ms" in lines[0]
    assert output.index("rec-0000") < output.index("rec-0005") < output.index("rec-0007")
    assert "30/2" in output
    assert "?/?" in output
    assert "tool_call" in output
    assert "error" in output
    assert f"8 of 8 matching calls, from {store_path}." in output


def test_list_filters_and_limit_keep_latest(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "list", "--store", str(store_path), "--agent", "support-bot", "--node", "route", "--limit", "2") == 0

    output = capsys.readouterr().out
    assert "rec-0002" in output
    assert "rec-0004" in output
    assert "rec-0000" not in output
    assert "rec-0001" not in output
    assert "2 of 3 matching calls" in output


def test_list_time_range(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = (T0 + timedelta(minutes=2)).isoformat()
    until = (T0 + timedelta(minutes=4)).isoformat()

    assert run("traces", "list", "--store", str(store_path), "--since", since, "--until", until) == 0

    output = capsys.readouterr().out
    assert "rec-0002" in output
    assert "rec-0003" in output
    assert "rec-0004" not in output
    assert "2 of 2 matching calls" in output


def test_show_prints_messages_and_tool_calls(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "show", "rec-0006", "--store", str(store_path)) == 0

    output = capsys.readouterr().out
    assert "Where is my card [b]6[/b]? 📦" in output
    assert "tool call refund (id call_9)" in output
    assert '"order_id": "A-17"' in output
    assert "tools offered (1)" in output
    assert "tokens in/out  ? / ?" in output


def test_show_accepts_unique_prefix(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "show", "rec-0007", "--store", str(store_path)) == 0
    full = capsys.readouterr().out

    assert run("traces", "show", "rec-000", "--store", str(store_path)) == 2
    assert "matches several calls" in capsys.readouterr().err
    assert "RateLimitError: slow down" in full


def test_list_ids_stay_unique_for_shared_prefixes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "160")
    path = tmp_path / "traces.db"
    # Time-ordered run ids: the first 12 characters are the same for calls of one run.
    ids = [f"01936f2a-7c3e-7{number:03x}-8a1b-5c2d3e4f5a6b" for number in range(3)]
    with TraceStore(path) as store:
        store.add_many([make_record(number, id=record_id) for number, record_id in enumerate(ids)])

    assert run("traces", "list", "--store", str(path)) == 0
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[2:5]]

    assert rows == [record_id[:18] for record_id in ids]
    for shown, record_id in zip(rows, ids):
        assert run("traces", "show", shown, "--store", str(path)) == 0
        assert record_id in capsys.readouterr().out


def test_show_unknown_id_fails(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "show", "nope", "--store", str(store_path)) == 2

    assert "No call with id 'nope'" in capsys.readouterr().err


def test_export_to_file_and_import_round_trip(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "calls.jsonl"
    copy = tmp_path / "copy.db"

    assert run("traces", "export", str(export), "--store", str(store_path), "--agent", "billing-bot") == 0
    assert f"Exported 2 calls from {store_path} to {export}" in capsys.readouterr().out
    assert run("traces", "import", str(export), "--store", str(copy)) == 0
    assert f"Imported 2 new calls from {export} into {copy} (0 already stored)." in capsys.readouterr().out
    assert run("traces", "import", str(export), "--store", str(copy)) == 0
    assert "Imported 0 new calls" in capsys.readouterr().out

    with TraceStore(store_path) as original, TraceStore(copy) as imported:
        assert list(imported.records()) == list(original.records(agent="billing-bot"))


def test_export_to_stdout(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "export", "-", "--store", str(store_path), "--trace", "trace-0") == 0

    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert [json.loads(line)["id"] for line in lines] == ["rec-0000", "rec-0001", "rec-0002"]
    assert "Exported 3 calls" in captured.err


def test_import_from_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(make_record(1).to_json() + "\n"))
    target = tmp_path / "new" / "traces.db"

    assert run("traces", "import", "-", "--store", str(target)) == 0

    assert "Imported 1 new calls from stdin" in capsys.readouterr().out
    with TraceStore(target) as store:
        assert store.get("rec-0001") == make_record(1)


def test_bad_import_file_leaves_store_unchanged(
    store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(make_record(20).to_json() + "\n" + '{"messages": [], "started_at": "soon"}\n', encoding="utf-8")

    assert run("traces", "import", str(bad), "--store", str(store_path)) == 2

    error = capsys.readouterr().err
    assert f"{bad}, line 2" in error
    assert "Invalid started_at 'soon'" in error
    assert "nothing was imported" in error
    with TraceStore(store_path) as store:
        assert store.count() == 8
        assert store.get("rec-0020") is None


def test_import_of_empty_otlp_file(store_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    otlp = tmp_path / "spans.json"
    otlp.write_text(json.dumps({"resourceSpans": []}), encoding="utf-8")

    assert run("traces", "import", str(otlp), "--store", str(store_path)) == 0

    assert "Imported 0 new calls" in capsys.readouterr().out


def test_import_missing_file_fails(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "import", "missing.jsonl", "--store", str(store_path)) == 2

    assert "Import file missing.jsonl not found" in capsys.readouterr().err


def test_nodes_summary(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "nodes", "--store", str(store_path)) == 0

    rows = {tuple(line.split()[:3]): line.split()[3:] for line in capsys.readouterr().out.splitlines()[2:-1]}
    assert rows[("billing-bot", "refund", "gpt-4o-mini")] == ["2", "1", "37+?", "2+?", "400"]
    assert rows[("support-bot", "classify", "gpt-4o-mini")] == ["3", "0", "99", "6", "400"]
    assert rows[("support-bot", "route", "gpt-4o-mini")] == ["3", "0", "96", "6", "400"]


def test_read_commands_need_an_existing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"

    assert run("traces", "list", "--store", str(missing)) == 2

    assert f"No trace store at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_invalid_since_fails(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("traces", "list", "--store", str(store_path), "--since", "last tuesday") == 2

    assert "Invalid --since 'last tuesday'" in capsys.readouterr().err


def test_foreign_store_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database at all, just some notes\n" * 10)

    assert run("traces", "list", "--store", str(foreign)) == 2

    assert "is not a slmshift trace store" in capsys.readouterr().err


def test_relative_and_naive_times_parse() -> None:
    now = datetime(2026, 2, 1, tzinfo=timezone.utc)

    assert parse_time("2h", "--since", now=now) == now - timedelta(hours=2)
    assert parse_time("7d", "--since", now=now) == now - timedelta(days=7)
    assert parse_time("2026-01-31", "--since") == datetime(2026, 1, 31, tzinfo=timezone.utc)


def test_format_detection() -> None:
    assert detect_import_format('{"resourceSpans": [{"resource": {}}]}') == "otlp-json"
    assert detect_import_format(make_record(1).to_json()) == "jsonl"


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("traces", "--help")

    output = capsys.readouterr().out
    for name in ("list", "show", "export", "import", "nodes"):
        assert name in output

"""`slmshift traces`: list, show, export and import captured model calls, and summarise nodes.

Import formats are found by content: `IMPORT_FORMATS` maps a format name to a reader that
returns validated records, and `detect_import_format` picks the name from the first bytes of
the file. A new format plugs in by adding a reader there and a rule to the detector.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from slmshift.cli import CommandError, add_common_options, non_negative_int
from slmshift.store.base import redact_url

logger = logging.getLogger(__name__)

DEFAULT_LIST_LIMIT = 50
# How much of an import file `detect_import_format` reads.
FORMAT_SNIFF_CHARS = 64 * 1024
# Relative times for --since and --until: a number and a unit, such as 30m or 7d.
_RELATIVE_TIME = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `slmshift traces` and its subcommands."""
    parser = subparsers.add_parser("traces", help="list, show, export and import captured calls")
    commands = parser.add_subparsers(dest="traces_command", metavar="SUBCOMMAND")
    parser.set_defaults(handler=lambda args: _print_help(parser))

    list_parser = commands.add_parser("list", help="show captured calls as a table, latest last")
    _add_filters(list_parser, default_limit=DEFAULT_LIST_LIMIT)
    list_parser.set_defaults(handler=run_list)

    show_parser = commands.add_parser("show", help="show one call in full: messages, tools, response")
    show_parser.add_argument("id", metavar="ID", help="record id, or a unique prefix of one")
    add_common_options(show_parser)
    show_parser.set_defaults(handler=run_show)

    export_parser = commands.add_parser("export", help="write calls as JSON Lines")
    export_parser.add_argument(
        "file", nargs="?", default="-", metavar="FILE", help="output file, or - for stdout (default)"
    )
    _add_filters(export_parser, default_limit=None)
    export_parser.set_defaults(handler=run_export)

    import_parser = commands.add_parser(
        "import", help="add calls from a JSON Lines export or an OTLP JSON trace file"
    )
    import_parser.add_argument("file", metavar="FILE", help="input file, or - for stdin")
    import_parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", *sorted(IMPORT_FORMATS)],
        help="input format (default: found from the content)",
    )
    add_common_options(import_parser)
    import_parser.set_defaults(handler=run_import)

    nodes_parser = commands.add_parser("nodes", help="summarise calls per agent, node and model")
    _add_filters(nodes_parser, default_limit=None, with_limit=False)
    nodes_parser.set_defaults(handler=run_nodes)

    from slmshift.commands import _traces_rotate

    _traces_rotate.register(commands)


def _add_filters(parser: argparse.ArgumentParser, *, default_limit: int | None, with_limit: bool = True) -> None:
    parser.add_argument("--agent", help="only calls of this agent")
    parser.add_argument("--node", help="only calls made by this node")
    parser.add_argument("--model", help="only calls to this model")
    parser.add_argument("--trace", metavar="TRACE_ID", help="only calls of this agent run")
    parser.add_argument(
        "--since", metavar="TIME", help="only calls started at or after TIME (ISO 8601 in UTC, or 30m, 2h, 7d ago)"
    )
    parser.add_argument("--until", metavar="TIME", help="only calls started before TIME (same forms as --since)")
    if with_limit:
        if default_limit:
            limit_help = f"maximum number of calls to show, the latest ones (default: {default_limit})"
        else:
            limit_help = "maximum number of calls to include, the oldest ones (default: all)"
        parser.add_argument("--limit", type=non_negative_int, default=default_limit, metavar="N", help=limit_help)
    add_common_options(parser)


# -- subcommands ---------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    from slmshift.commands._traces_view import records_table, stdout_console

    filters = _filters(args)
    with _open_store(args.store) as store:
        total = store.count(**{**filters, "limit": None})
        records = list(store.records(**filters, newest_first=True))
        records.reverse()
    console = stdout_console()
    if records:
        console.print(records_table(records))
    console.print(f"{len(records)} of {total} matching calls, from {redact_url(args.store)}.", markup=False, highlight=False)
    return 0


def run_show(args: argparse.Namespace) -> int:
    from slmshift.commands._traces_view import print_record, stdout_console

    with _open_store(args.store) as store:
        record = store.get(args.id)
        if record is None:
            record = store.get(_resolve_prefix(store, args.id, args.store))
    print_record(stdout_console(), record)
    return 0


def run_export(args: argparse.Namespace) -> int:
    filters = _filters(args)
    with _open_store(args.store) as store:
        if args.file == "-":
            return _export_to_stdout(store, args.store, filters)
        try:
            count = store.export_jsonl(args.file, **filters)
        except OSError as exc:
            raise CommandError(f"Failed to write {args.file}: {exc.strerror or exc}.") from exc
    print(f"Exported {count} calls from {redact_url(args.store)} to {args.file} (JSON Lines).")
    return 0


def _export_to_stdout(store: Any, url: str, filters: dict[str, Any]) -> int:
    try:
        count = store.export_jsonl(sys.stdout, **filters)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (`head`, for example) has gone: stop quietly, as shell tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    print(f"Exported {count} calls from {redact_url(url)} to stdout.", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from slmshift.records import RecordError
    from slmshift.store import StoreError

    records = _read_import(args.file, args.format)
    try:
        with _open_store(args.store, create=True) as store:
            added = store.add_many(records)
    except (RecordError, StoreError) as exc:
        raise CommandError(str(exc)) from exc
    source = "stdin" if args.file == "-" else args.file
    print(
        f"Imported {added} new calls from {source} into {redact_url(args.store)} "
        f"({len(records) - added} already stored)."
    )
    return 0


def run_nodes(args: argparse.Namespace) -> int:
    from slmshift.commands._traces_view import nodes_table, stdout_console

    with _open_store(args.store) as store:
        summaries = store.nodes(**_filters(args))
    console = stdout_console()
    if summaries:
        console.print(nodes_table(summaries))
    calls = sum(summary.calls for summary in summaries)
    console.print(
        f"{len(summaries)} agent, node and model groups, {calls} calls, from {redact_url(args.store)}.",
        markup=False,
        highlight=False,
    )
    return 0


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# -- import formats ------------------------------------------------------------------------


def _read_jsonl_text(text: str, name: str) -> list[Any]:
    import io

    from slmshift.store.base import read_jsonl

    return read_jsonl(io.StringIO(text), name)


def _read_otlp_json_text(text: str, name: str) -> list[Any]:
    try:
        from slmshift.integrations.otlp_json import read_otlp_json
    except ImportError as exc:
        raise CommandError(
            f"Importing OTLP JSON ({name}) needs the OpenTelemetry SDK: install slmshift[otel]."
        ) from exc
    return read_otlp_json(text, name)


# Format name -> reader of the whole text; each reader validates everything before returning.
IMPORT_FORMATS: dict[str, Callable[[str, str], list[Any]]] = {
    "jsonl": _read_jsonl_text,
    "otlp-json": _read_otlp_json_text,
}


def detect_import_format(head: str) -> str:
    """Name the format of an import file from its first characters.

    An OTLP JSON export (an object with `resourceSpans`) is `otlp-json`; anything else is
    read as slmshift JSON Lines, whose reader reports the first bad line.
    """
    if '"resourceSpans"' in head[:FORMAT_SNIFF_CHARS]:
        return "otlp-json"
    return "jsonl"


def _read_import(file: str, format_name: str) -> list[Any]:
    from slmshift.records import RecordError

    name = "stdin" if file == "-" else file
    text = _read_text(file)
    if format_name == "auto":
        format_name = detect_import_format(text)
    reader = IMPORT_FORMATS.get(format_name)
    if reader is None:
        raise CommandError(
            f"{name} looks like {format_name}, which this slmshift cannot import yet: "
            "export the calls as slmshift JSON Lines, or pass --format jsonl."
        )
    try:
        return reader(text, name)
    except RecordError as exc:
        raise CommandError(str(exc)) from exc


def _read_text(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise CommandError(f"Import file {file} not found: pass the path of a JSON Lines export.") from exc
    except UnicodeDecodeError as exc:
        raise CommandError(
            f"{file} is not UTF-8 text ({exc.reason} at byte {exc.start}): pass a JSON Lines "
            "export; nothing was imported."
        ) from exc
    except OSError as exc:
        raise CommandError(f"Failed to read {file}: {exc.strerror or exc}.") from exc


# -- helpers -------------------------------------------------------------------------------


def _open_store(url: str, *, create: bool = False) -> Any:
    """Open the store at `url`; a read command on a missing SQLite file is an error, not a new file."""
    from slmshift.store import StoreError, TraceStore
    from slmshift.store.sqlite import resolve_path

    is_sqlite = "://" not in url or url.startswith("sqlite://")
    try:
        if is_sqlite and not create and not resolve_path(url).exists():
            raise CommandError(
                f"No trace store at {redact_url(url)}: capture calls first, or pass --store with the path "
                "of an existing store."
            )
        return TraceStore(url)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc


def _resolve_prefix(store: Any, prefix: str, url: str) -> str:
    matches = store.match_ids(prefix, limit=6)
    if not matches:
        raise CommandError(f"No call with id {prefix!r} in {redact_url(url)}: run `slmshift traces list` to see ids.")
    if len(matches) > 1:
        shown = ", ".join(matches[:5])
        raise CommandError(f"Id prefix {prefix!r} matches several calls ({shown}, ...): give more characters.")
    return matches[0]


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    limit = getattr(args, "limit", None)
    if limit is not None and limit < 0:
        raise CommandError(f"Invalid --limit {limit}: use 0 or more.")
    filters = {
        "agent": args.agent,
        "node": args.node,
        "model": args.model,
        "trace_id": args.trace,
        "since": parse_time(args.since, "--since"),
        "until": parse_time(args.until, "--until"),
        "limit": limit,
    }
    return {name: value for name, value in filters.items() if value is not None}


def parse_time(text: str | None, option: str, *, now: datetime | None = None) -> datetime | None:
    """Parse an ISO 8601 date or time (UTC when no offset is given) or a relative `30m`/`2h`/`7d`."""
    if text is None:
        return None
    relative = _RELATIVE_TIME.match(text.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return (now or datetime.now(timezone.utc)) - timedelta(seconds=amount * _UNIT_SECONDS[unit])
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise CommandError(
            f"Invalid {option} {text!r}: use an ISO 8601 time such as 2026-01-31 or "
            "2026-01-31T12:00:00+00:00, or a relative time such as 30m, 2h or 7d."
        ) from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)

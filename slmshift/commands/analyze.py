"""`slmshift analyze`: curate the captured calls, cluster them into tasks and write the report.

Outputs under `--out`: `curated.jsonl` (redacted, filtered copies; the store is not changed),
`tasks.json` (the task analysis, read by `slmshift train`) and `report.html`.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from slmshift.cli import CommandError, add_common_options, int_at_least, positive_float
from slmshift.store.base import redact_url

logger = logging.getLogger(__name__)

# Tasks listed in the terminal summary.
SUMMARY_ROWS = 12


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `slmshift analyze`."""
    parser = subparsers.add_parser("analyze", help="curate and cluster calls into tasks; write the HTML report")
    add_common_options(parser)
    parser.add_argument("--agent", help="analyse only this agent's calls")
    parser.add_argument("--node", action="append", default=[], metavar="NODE",
                        help="analyse only this node's calls (repeatable)")
    parser.add_argument("--exclude-node", action="append", default=[], metavar="NODE",
                        help="drop this node's calls during curation (repeatable)")
    parser.add_argument("--exclude-agent", action="append", default=[], metavar="AGENT",
                        help="drop this agent's calls during curation (repeatable)")
    parser.add_argument("--no-redact", action="store_true",
                        help="skip redaction of personal data and secrets (only for data already redacted)")
    parser.add_argument("--embedder", choices=["auto", "minilm", "tfidf"], default="auto",
                        help="text embeddings: the packaged MiniLM model, TF-IDF, or auto (MiniLM if it loads)")
    parser.add_argument("--min-cluster-size", type=int_at_least(2), metavar="N",
                        help="smallest group of calls that makes a task (default: 1%% of a node's calls, at least 4)")
    parser.add_argument("--prices", metavar="FILE",
                        help='JSON price table: {"models": {"name": [in, out]}, "default": [in, out], "slm": [in, out]}, USD per 1M tokens')
    parser.add_argument("--traffic-days", type=positive_float, metavar="DAYS",
                        help="days of traffic the calls represent, for monthly projections (default: their time span, at least 1)")
    parser.set_defaults(handler=run_analyze)


def run_analyze(args: argparse.Namespace) -> int:
    from rich.console import Console

    from slmshift.clustering import ClusterConfig, PriceTable, cluster_records
    from slmshift.clustering.embeddings import embedder_by_name
    from slmshift.clustering.tasks import CURATED_FILE
    from slmshift.curation import CurationConfig, curate
    from slmshift.report import projection_for, render_report
    from slmshift.store import TraceStore

    _validate(args)
    console = Console(stderr=False)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    prices = PriceTable.from_file(args.prices) if args.prices else PriceTable.defaults()

    with _progress(console) as progress:
        step = progress.add_task("reading calls", total=None)
        records = _read_records(TraceStore(args.store), args)
        if not records:
            raise CommandError(f"No calls to analyse in {redact_url(args.store)} with the filters given: capture some first.")

        progress.update(step, description=f"curating {len(records):,} calls", total=len(records), completed=0)
        config = CurationConfig(redact=not args.no_redact, exclude_nodes=tuple(args.exclude_node),
                                exclude_agents=tuple(args.exclude_agent))
        curated, curation = curate(records, config, progress=lambda done: progress.update(step, completed=done))
        progress.update(step, completed=len(records))
        if not curated:
            raise CommandError(f"Curation removed all {len(records)} calls:\n{curation.summary()}")
        curated_path = _write_curated(out / CURATED_FILE, curated)

        progress.update(step, description="clustering calls into tasks", total=None, completed=0)
        analysis = cluster_records(
            curated,
            embedder=embedder_by_name(args.embedder),
            config=ClusterConfig(min_cluster_size=args.min_cluster_size),
            prices=prices,
            progress=lambda name, done, total: progress.update(step, description=name, total=total, completed=done),
        )
        analysis.curated_path = str(curated_path.resolve())
        analysis.settings["curation"] = curation.to_dict()
        tasks_path = analysis.save(out)

        progress.update(step, description="writing the report", total=None)
        projection = projection_for(analysis, args.traffic_days)
        report_path = render_report(analysis, out, curation=curation.to_dict(), projection=projection)

    console.print(curation.summary())
    _print_summary(console, analysis, projection)
    console.print(f"Report: {report_path}\nTasks: {tasks_path}\nCurated calls: {curated_path}")
    return 0


def _validate(args: argparse.Namespace) -> None:
    if args.min_cluster_size is not None and args.min_cluster_size < 2:
        raise CommandError(f"Invalid --min-cluster-size {args.min_cluster_size}: use 2 or more.")
    if args.traffic_days is not None and args.traffic_days <= 0:
        raise CommandError(f"Invalid --traffic-days {args.traffic_days}: use a positive number of days.")
    if args.prices and not Path(args.prices).is_file():
        raise CommandError(f"Price table {args.prices} not found: pass the path of a JSON file.")


def _read_records(store: Any, args: argparse.Namespace) -> list[Any]:
    filters = {"agent": args.agent} if args.agent else {}
    nodes = set(args.node)
    records = [record for record in store.records(**filters) if not nodes or record.node in nodes]
    store.close()
    return records


def _write_curated(path: Path, records: list[Any]) -> Path:
    # Created 0600 before any record is written: curated records still hold user text.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json())
            handle.write("\n")
    os.chmod(path, 0o600)
    return path


def _progress(console: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True)


def _print_summary(console: Any, analysis: Any, projection: Any) -> None:
    from rich.table import Table

    from slmshift.report import monthly_savings

    table = Table(title=f"Tasks ({len(analysis.tasks)}), most suitable first")
    for column in ("task", "name", "output", "calls", "cost USD", "suitability", "USD/month saved"):
        table.add_column(column, justify="right" if column in ("calls", "cost USD", "suitability", "USD/month saved") else "left")
    ranked = sorted(analysis.tasks, key=lambda task: (-task.suitability, -task.call_count))
    for task in ranked[:SUMMARY_ROWS]:
        table.add_row(task.id, task.name[:40], task.output_kind, f"{task.call_count:,}", f"{task.cost_usd:.4f}",
                      f"{task.suitability:.2f}", f"{monthly_savings(task, projection):.2f}")
    console.print(table)
    if len(ranked) > SUMMARY_ROWS:
        console.print(f"... and {len(ranked) - SUMMARY_ROWS} more tasks in the report.")

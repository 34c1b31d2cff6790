"""`slmshift eval`: compare the trained SLM with the teacher on the held-out split, apply the
promotion gate, and write a report (JSON and Markdown) with quality, latency and cost figures.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from slmshift.cli import (
    CommandError,
    add_common_options,
    non_negative_float,
    positive_fraction,
    positive_int,
)

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("eval", help="compare the trained small model with the teacher")
    add_common_options(parser)
    parser.add_argument("--task", help="task id or node (default: the largest task)")
    parser.add_argument("--model", help="model folder to evaluate (default: the one `slmshift train` selected)")
    parser.add_argument("--all", action="store_true", help="also evaluate every other candidate")
    parser.add_argument("--target-agreement", type=positive_fraction, default=0.97)
    parser.add_argument("--min-ratio", type=positive_fraction, default=0.95, help="gate: agreement of at least this share of the teacher's")
    parser.add_argument("--teacher-input-price", type=non_negative_float, default=0.15, help="USD per million input tokens")
    parser.add_argument("--teacher-output-price", type=non_negative_float, default=0.60, help="USD per million output tokens")
    parser.add_argument("--slm-hourly-price", type=non_negative_float, default=0.10, help="USD per hour of the SLM's machine")
    parser.add_argument("--latency-sample", type=positive_int, default=200, help="calls timed one by one")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from slmshift.training.tasks import find_tasks, load_records, pick_task, slug

    out = Path(args.out)
    try:
        records = load_records(args.store)
        task = pick_task(find_tasks(out, records), args.task)
    except (FileNotFoundError, ValueError, LookupError) as exc:
        raise CommandError(str(exc)) from exc
    directory = out / "models" / slug(task.id)
    selection_path = directory / "selected.json"
    if not selection_path.is_file():
        raise CommandError(f"No trained model for task {task.id} in {directory}: run `slmshift train` first.")
    selection = json.loads(selection_path.read_text(encoding="utf-8"))
    by_id = {record.id: record for record in records}
    test = [by_id[i] for i in selection["split"]["test"] if i in by_id]
    validation = [by_id[i] for i in selection["split"]["validation"] if i in by_id]

    report = evaluate_task(args, task, directory, selection, test, validation)
    paths = _write(out, slug(task.id), report)
    _print(report)
    print(f"Report written to {paths[0]} and {paths[1]}")
    return 0


def evaluate_task(args, task, directory: Path, selection: dict[str, Any], test, validation) -> dict[str, Any]:
    from slmshift.evaluation.compare import evaluate_slm, promotion_gate
    from slmshift.evaluation.runtime import Prices
    from slmshift.slm import load_slm

    prices = Prices(args.teacher_input_price, args.teacher_output_price, args.slm_hourly_price)
    chosen = Path(args.model) if args.model else directory / selection["model"]
    names = {str(chosen): chosen}
    floor_dir = directory / "candidates" / "classical"
    if task.output_kind == "label" and floor_dir.is_dir():
        names.setdefault(str(floor_dir), floor_dir)
    if args.all and (directory / "candidates").is_dir():
        names.setdefault(str(directory / "candidates"), directory / "candidates")
        for member in sorted((directory / "candidates").iterdir()):
            if (member / "manifest.json").is_file():
                names.setdefault(str(member), member)

    results = {}
    for key, path in names.items():
        slm = load_slm(path)
        results[key] = evaluate_slm(
            slm, test, validation=validation, output_kind=task.output_kind,
            target_agreement=args.target_agreement, prices=prices, latency_sample=args.latency_sample,
        ) | {"path": str(path)}
    floor = results.get(str(floor_dir))
    for result in results.values():
        result["gate"] = promotion_gate(result, floor=floor, min_ratio=args.min_ratio)
    return {
        "task": task.id,
        "output_kind": task.output_kind,
        "selected": str(chosen),
        "selection_reasons": selection.get("reasons", []),
        "train_seconds": selection.get("train_seconds", {}),
        "test_records": len(test),
        "validation_records": len(validation),
        "results": list(results.values()),
    }


def _write(out: Path, name: str, report: dict[str, Any]) -> tuple[Path, Path]:
    reports = out / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    json_path = reports / f"eval-{name}.json"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    markdown_path = reports / f"eval-{name}.md"
    markdown_path.write_text(to_markdown(report), encoding="utf-8")
    return json_path, markdown_path


def to_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per evaluated model."""
    lines = [
        f"# Evaluation of task {report['task']} ({report['output_kind']})",
        "",
        f"Test records: {report['test_records']}; validation records: {report['validation_records']}.",
        f"Selected: `{report['selected']}`.",
        "",
        "| model | kind | agreement | coverage at target | agreement when answered | p50 ms | p95 ms | cost/1k calls SLM | teacher | promote |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for result in report["results"]:
        quality, serving = result["quality"], result["serving"]
        cost = serving["cost_per_1000_calls_usd"]
        lines.append(
            f"| {result['model']} | {result['kind']} | {_pct(quality.get('agreement'))} | "
            f"{_pct(quality.get('coverage'))} | {_pct(quality.get('agreement_at_threshold'))} | "
            f"{_num(serving['slm_latency']['p50_ms'])} | {_num(serving['slm_latency']['p95_ms'])} | "
            f"${_num(cost['slm'], 5)} | ${_num(cost['teacher'], 4)} | {'yes' if result['gate']['promote'] else 'no'} |"
        )
    lines += ["", "Gate reasons:"]
    for result in report["results"]:
        lines.append(f"- {result['model']}: " + "; ".join(result["gate"]["reasons"]))
    return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print(report: dict[str, Any]) -> None:
    print(to_markdown(report))

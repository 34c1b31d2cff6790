"""`slmshift select`: rank SLM candidates for each task under constraints, with reasons."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from slmshift.cli import CommandError, add_common_options, positive_float, positive_int

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("select", help="rank small-model candidates per task")
    add_common_options(parser)
    parser.add_argument("--task", help="task id or node (default: every task)")
    parser.add_argument("--memory-gib", type=positive_float, help="memory budget per model, GiB")
    parser.add_argument("--licenses", help="comma-separated allowed licenses, e.g. apache-2.0,mit")
    parser.add_argument("--latency-ms", type=positive_float, help="latency budget per call (estimated, not measured)")
    parser.add_argument("--dtype", default="bf16", choices=("fp32", "bf16", "int8", "int4"))
    parser.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    parser.add_argument("--top", type=positive_int, default=5, help="kept candidates to print per task")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from slmshift.selection.rank import Constraints, TaskProfile, rank_candidates
    from slmshift.training.tasks import find_tasks, load_records

    out = Path(args.out)
    try:
        records = load_records(args.store)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    tasks = find_tasks(out, records)
    if args.task:
        tasks = [task for task in tasks if args.task in (task.id, task.node)]
    if not tasks:
        raise CommandError("No task to rank: capture traces first, or check --task.")
    constraints = Constraints(
        memory_budget_gib=args.memory_gib,
        allowed_licenses=tuple(args.licenses.split(",")) if args.licenses else None,
        latency_budget_ms=args.latency_ms,
        dtype=args.dtype,
        device=args.device,
    )
    report = {}
    for task in tasks:
        task_records = [record for record in records if task.matches(record)]
        profile = TaskProfile(task=task.id, output_kind=task.output_kind,
                              context_tokens=_context_tokens(task_records), records=len(task_records))
        ranked = rank_candidates(profile, constraints)
        report[task.id] = {"profile": profile.__dict__, "candidates": [item.to_dict() for item in ranked]}
        _print(task.id, profile, ranked, args.top)
    path = out / "selection.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"Selection written to {path}")
    return 0


def _context_tokens(records: list) -> int:
    """The 95th-percentile prompt plus answer length, estimated as 4 characters per token."""
    if not records:
        return 512
    lengths = sorted(
        (sum(len(message.text) for message in record.messages) + len(record.response.text)) // 4 + 16
        for record in records
    )
    return int(lengths[int(0.95 * (len(lengths) - 1))])


def _print(task_id: str, profile, ranked, top: int) -> None:
    print(f"Task {task_id} ({profile.output_kind}, {profile.records} records, ~{profile.context_tokens} tokens):")
    kept = [item for item in ranked if item.kept]
    for item in kept[:top]:
        print(f"  {item.score:6.2f}  {item.id:32s} {'; '.join(item.reasons)}")
    rejected = [item for item in ranked if not item.kept]
    if rejected:
        print(f"  rejected ({len(rejected)}):")
        for item in rejected:
            print(f"          {item.id:32s} {item.reasons[-1]}")

"""`slmshift refresh`: retrain on traces that arrived since the current plan; promote only gains.

Reads the plan history that `slmshift demo` started under `--out`, takes the teacher's answers
recorded since the current plan (fallbacks included), retrains candidates, compares them with
the serving models on the fixed held-out set, and writes the next plan only when a candidate is
better. Every round is appended to `plans/history.json`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from slmshift.cli import CommandError, add_common_options, non_negative_int

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refresh",
        help="retrain on new traces and promote only models that beat the serving ones",
        description=__doc__.splitlines()[0],
    )
    add_common_options(parser)
    parser.add_argument("--fast", action="store_true", help="smaller models and fewer epochs")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="training seed (default: 0)")
    parser.add_argument(
        "--teacher-base-url", metavar="URL",
        help="the OpenAI-compatible teacher the demo ran with, if any (its calls are labels)",
    )
    parser.add_argument("--teacher-model", metavar="NAME", help="model name of --teacher-base-url")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from slmshift.commands.demo import progress_display
    from slmshift.pipeline import DemoSettings, Pipeline, PipelineError
    from slmshift.plans import PlanHistoryError
    from slmshift.refresh import refresh
    from slmshift.store import TraceStore

    settings = DemoSettings(
        fast=args.fast, seed=args.seed,
        teacher_base_url=args.teacher_base_url, teacher_model=args.teacher_model,
    )
    console = Console()
    store = TraceStore(args.store)
    try:
        with progress_display(console) as (hook, say):
            pipeline = Pipeline(settings, store=store, out_dir=Path(args.out), progress=hook, say=say)
            result = refresh(pipeline)
    except (PipelineError, PlanHistoryError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        store.close()

    console.print(_decision_table(result.decisions))
    if result.plan_path:
        console.print(f"Promoted {', '.join(result.promoted)}: new plan [bold]{result.plan_path}[/bold]")
    else:
        console.print("Nothing promoted: the current plan stays.")
    console.print(f"History: [bold]{Path(args.out) / 'plans' / 'history.json'}[/bold]")
    return 0


def _decision_table(decisions: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Refresh: candidates against the serving models on the fixed held-out set")
    table.add_column("node")
    table.add_column("training pairs", justify="right")
    table.add_column("candidate agreement", justify="right")
    table.add_column("serving agreement", justify="right")
    table.add_column("promoted")
    table.add_column("reason")
    for node, decision in sorted(decisions.items()):
        serving = decision.get("serving")
        table.add_row(
            node,
            str(decision["training_pairs"]),
            f"{decision['candidate']['holdout']['agreement']:.1%}",
            f"{serving['holdout']['agreement']:.1%}" if serving else "-",
            "yes" if decision["promoted"] else "no",
            decision["reason"],
        )
    return table

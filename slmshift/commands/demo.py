"""`slmshift demo`: the whole conversion loop on the example support agent and real data.

Captures requests through the teacher, analyzes them (HTML report), selects, trains and
evaluates SLMs, writes a `ConversionPlan`, swaps the planned nodes and replays held-out
requests through the swapped graph with fallback, then prints the before/after table.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slmshift.cli import CommandError, add_common_options, int_at_least, non_negative_int
from slmshift.store.base import redact_url

logger = logging.getLogger(__name__)

# Fewest capture requests that give every node of the support agent some traffic.
MIN_REQUESTS = 50
# Fewest held-out requests replayed before and after the swap.
MIN_HOLDOUT_REQUESTS = 10


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the whole loop on the example support agent and real data",
        description=__doc__.splitlines()[0],
    )
    add_common_options(parser)
    add_run_options(parser)
    parser.add_argument(
        "--step",
        action="append",
        metavar="STEP",
        help="run only this step (repeatable): capture, analyze, select, train, evaluate, plan, "
        "serve; earlier steps' saved outputs are used",
    )
    parser.set_defaults(handler=run)


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options `demo` and `refresh` share."""
    parser.add_argument(
        "--requests", type=int_at_least(MIN_REQUESTS), metavar="N",
        help="requests to capture through the teacher (default: 6000; with --fast: 1200)",
    )
    parser.add_argument(
        "--holdout", type=int_at_least(MIN_HOLDOUT_REQUESTS), metavar="N",
        help="held-out requests replayed before and after the swap (default: 600; with --fast: 200)",
    )
    parser.add_argument(
        "--fast", action="store_true", help="smaller models and fewer epochs: for tests and quick looks"
    )
    parser.add_argument("--seed", type=non_negative_int, default=0, help="dataset shuffle and training seed (default: 0)")
    parser.add_argument(
        "--teacher-base-url", metavar="URL",
        help="OpenAI-compatible server to use as the teacher instead of the offline replay model",
    )
    parser.add_argument("--teacher-model", metavar="NAME", help="model name sent to --teacher-base-url")
    parser.add_argument(
        "--hub-model", metavar="ID_OR_PATH",
        help="base model (hub id or local path) to LoRA-tune; without it only compact and classical "
        "models are trained",
    )


def settings_from(args: argparse.Namespace) -> Any:
    """Build `DemoSettings` from parsed options.

    Raises:
        CommandError: an option value is invalid; the message names it.
    """
    from slmshift.pipeline import (
        DEFAULT_HOLDOUT_REQUESTS,
        DEFAULT_REQUESTS,
        FAST_HOLDOUT_REQUESTS,
        FAST_REQUESTS,
        DemoSettings,
    )

    requests = args.requests
    if requests is None:
        requests = FAST_REQUESTS if args.fast else DEFAULT_REQUESTS
    holdout = args.holdout
    if holdout is None:
        holdout = FAST_HOLDOUT_REQUESTS if args.fast else DEFAULT_HOLDOUT_REQUESTS
    if requests < MIN_REQUESTS:
        raise CommandError(f"Invalid --requests {requests}: use at least {MIN_REQUESTS}, so every node gets traffic.")
    if holdout < MIN_HOLDOUT_REQUESTS:
        raise CommandError(f"Invalid --holdout {holdout}: use at least {MIN_HOLDOUT_REQUESTS}.")
    if args.teacher_base_url and not args.teacher_model:
        raise CommandError("--teacher-base-url needs --teacher-model NAME, the model the server serves.")
    return DemoSettings(
        requests=requests,
        holdout_requests=holdout,
        fast=args.fast,
        seed=args.seed,
        teacher_base_url=args.teacher_base_url,
        teacher_model=args.teacher_model,
        hub_model=args.hub_model,
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from slmshift.demo.summary import render_summary
    from slmshift.pipeline import STEP_NAMES, Pipeline, PipelineError
    from slmshift.store import TraceStore

    settings = settings_from(args)
    console = Console()
    steps = args.step or list(STEP_NAMES)
    out_dir = Path(args.out)
    store = TraceStore(args.store)
    try:
        with progress_display(console) as (hook, say):
            pipeline = Pipeline(settings, store=store, out_dir=out_dir, progress=hook, say=say)
            results = pipeline.run(steps)
    except (PipelineError, ValueError, FileNotFoundError, ImportError) as exc:
        raise CommandError(str(exc)) from exc
    finally:
        store.close()

    if "serve" in results:
        render_summary(
            console,
            results["serve"].outputs,
            pipeline.outputs_of("plan"),
            artifact_paths(pipeline, args.store),
        )
    else:
        console.print(f"Ran {', '.join(results)}; outputs are under {out_dir}.")
    return 0


def artifact_paths(pipeline: Any, store_url: str) -> dict[str, str]:
    """Return where the demo's report and artifacts are, for the closing lines."""
    analyze = pipeline.outputs_of("analyze")
    plan = pipeline.outputs_of("plan")
    return {
        "report": analyze.get("report_path", "-"),
        "plan": plan.get("plan_path", "-"),
        "models": pipeline.outputs_of("train").get("models_dir", "-"),
        "plan history": plan.get("history_path", "-"),
        "held-out set": plan.get("holdout_path", "-"),
        "traces": redact_url(store_url),
    }


class progress_display:
    """Context manager yielding a pipeline progress hook and a status printer on one display."""

    def __init__(self, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )

    def __enter__(self) -> tuple[Callable[[str, int | None], Callable[..., None]], Callable[[str], None]]:
        self._progress.__enter__()

        def hook(description: str, total: int | None) -> Callable[[int], None]:
            task = self._progress.add_task(description, total=total)

            def advance(units: int = 1, description: str | None = None, finished: bool = False) -> None:
                changes: dict[str, Any] = {"advance": units}
                if description is not None:
                    changes["description"] = description
                if finished:
                    done = max(1, int(self._progress.tasks[task].completed) + units)
                    changes = {"total": done, "completed": done}
                self._progress.update(task, **changes)

            return advance

        def say(text: str) -> None:
            self._progress.console.print(text, highlight=False, markup=False)

        return hook, say

    def __exit__(self, *exc_info: object) -> None:
        self._progress.__exit__(*exc_info)

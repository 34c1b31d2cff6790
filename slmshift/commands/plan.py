"""`slmshift plan`: write a conversion plan from trained models, validate one, or show one."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from slmshift.cli import CommandError, add_common_options, fraction

logger = logging.getLogger(__name__)

DEFAULT_PLAN_NAME = "plan.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plan", help="write, validate or show a conversion plan")
    actions = parser.add_subparsers(dest="plan_action", metavar="ACTION", required=True)

    write = actions.add_parser("write", help="write a plan with one node per model directory")
    add_common_options(write)
    write.add_argument("--models", required=True, metavar="DIR", help="folder of model directories written by `slmshift train`")
    write.add_argument("--file", metavar="PATH", help=f"plan file to write (default: OUT/{DEFAULT_PLAN_NAME})")
    write.add_argument("--mode", default="fallback", choices=("fallback", "shadow", "canary", "none"), help="fallback mode for every node (default: fallback)")
    write.add_argument("--canary-share", type=fraction, default=0.1, metavar="SHARE", help="share of requests the SLM serves in canary mode, 0 to 1 (default: 0.1)")
    write.add_argument("--min-confidence", type=fraction, metavar="P", help="lowest accepted probability of an SLM response, 0 to 1")
    write.add_argument("--agent", help="agent name recorded in the plan")
    write.set_defaults(handler=run_write)

    validate = actions.add_parser("validate", help="check a plan file and the model directories it names")
    validate.add_argument("file", metavar="PLAN", help="plan file (YAML or JSON)")
    validate.set_defaults(handler=run_validate)

    show = actions.add_parser("show", help="print a plan file, one node per line")
    show.add_argument("file", metavar="PLAN", help="plan file (YAML or JSON)")
    show.set_defaults(handler=run_show)


def run_write(args: argparse.Namespace) -> int:
    from slmshift.converters.plan import ConversionPlan, PlanError

    models_dir = Path(args.models)
    if not models_dir.is_dir():
        raise CommandError(f"--models {str(models_dir)!r} is not a directory: pass the folder `slmshift train` wrote.")
    entries = [
        _node_entry(model, args, min_confidence)
        for model, min_confidence in (_selected_model(directory) for directory in sorted(models_dir.iterdir()))
        if (model / "manifest.json").is_file()
    ]
    if not entries:
        raise CommandError(f"No model directories with a manifest.json under {str(models_dir)!r}: run `slmshift train` first.")

    data: dict[str, Any] = {"version": 1, "nodes": entries}
    if args.agent:
        data["agent"] = args.agent
    try:
        plan = ConversionPlan.from_dict(data, source=str(models_dir), check_files=True)
    except PlanError as exc:
        raise CommandError(str(exc)) from exc
    path = plan.save(Path(args.file) if args.file else Path(args.out) / DEFAULT_PLAN_NAME)
    print(f"Wrote a plan for {len(plan.nodes)} node(s) to {path}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from slmshift.converters.plan import ConversionPlan, PlanError

    try:
        plan = ConversionPlan.load(args.file, check_files=True)
    except PlanError as exc:
        raise CommandError(str(exc)) from exc
    print(f"{args.file}: valid plan with {len(plan.nodes)} node(s).")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from slmshift.converters.plan import ConversionPlan, PlanError

    try:
        plan = ConversionPlan.load(args.file)
    except PlanError as exc:
        raise CommandError(str(exc)) from exc
    if plan.agent:
        print(f"agent: {plan.agent}")
    for entry in plan.nodes:
        source = entry.adapter or f"{entry.endpoint} (adapter {entry.adapter_name})"
        checks = ", ".join(f"{key}={value}" for key, value in entry.validation.items()) or "none"
        print(f"{entry.node}: {source}; task {entry.task or '-'}; mode {entry.fallback.mode}; checks {checks}")
    return 0


def _selected_model(directory: Path) -> tuple[Path, float | None]:
    """Return the model directory to plan for `directory`, and its validation threshold.

    `slmshift train` writes a task folder with `selected.json`, naming the chosen candidate
    (relative path) and its confidence threshold; any other folder is planned as it is.
    """
    import json

    selected_path = directory / "selected.json"
    if not selected_path.is_file():
        return directory, None
    selected = json.loads(selected_path.read_text(encoding="utf-8"))
    threshold = selected.get("validation", {}).get(selected.get("chosen"), {}).get("threshold")
    return directory / selected["model"], threshold


def _node_entry(directory: Path, args: argparse.Namespace, min_confidence: float | None = None) -> dict[str, Any]:
    from slmshift.slm.base import ManifestError, SLMManifest

    try:
        manifest = SLMManifest.load(directory)
    except ManifestError as exc:
        raise CommandError(str(exc)) from exc
    node = manifest.extra.get("node") or (manifest.task.split("/")[0] if manifest.task else directory.name)
    validation: dict[str, Any] = {}
    if manifest.labels:
        validation["labels"] = list(manifest.labels)
    if args.min_confidence is not None:
        validation["min_confidence"] = args.min_confidence
    elif min_confidence is not None:
        validation["min_confidence"] = min_confidence
    entry: dict[str, Any] = {
        "node": node,
        "task": manifest.task,
        "base_model": manifest.base_model,
        "adapter": str(directory.resolve()),
        "validation": validation,
        "fallback": {"mode": args.mode, "canary_share": args.canary_share},
    }
    return {key: value for key, value in entry.items() if value not in (None, {})}

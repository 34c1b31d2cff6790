"""`slmshift train`: train the SLM for a task from the store's records, with progress and resume.

Label tasks train the local candidates (classical floor, compact models, their ensemble) and
pick the one that beats the floor on validation; other kinds, or `--base-model`, fine-tune a
LoRA adapter on a hub model or local path.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from slmshift.cli import (
    CommandError,
    add_common_options,
    positive_float,
    positive_fraction,
    positive_int,
)

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train the small model of a task")
    add_common_options(parser)
    parser.add_argument("--task", help="task id or node (default: the largest task)")
    parser.add_argument("--base-model", help="hub id or local path: fine-tune a LoRA adapter on it")
    parser.add_argument("--compacts", type=positive_int, default=2, help="compact models to train for a label task")
    parser.add_argument("--epochs", type=positive_float, help="training epochs (default: 24 compact, 2 LoRA)")
    parser.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    parser.add_argument("--target-agreement", type=positive_fraction, default=0.97)
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from slmshift.training.tasks import find_tasks, load_records, pick_task, slug

    out = Path(args.out)
    try:
        records = load_records(args.store)
        task = pick_task(find_tasks(out, records), args.task)
    except (FileNotFoundError, ValueError, LookupError) as exc:
        raise CommandError(str(exc)) from exc
    task_records = [record for record in records if task.matches(record)]
    directory = out / "models" / slug(task.id)
    print(f"Training task {task.id}: {len(task_records)} records -> {directory}")
    if task.output_kind == "label" and not args.base_model:
        return _train_label(args, task, task_records, directory)
    if not args.base_model:
        raise CommandError(
            f"Task {task.id} has {task.output_kind} outputs, which need a pretrained base: "
            "pass --base-model (a hub id or a local model folder)."
        )
    return _train_lora(args, task, task_records, directory)


def _train_label(args, task, records, directory: Path) -> int:
    from dataclasses import replace

    from slmshift.training.compact import CompactConfig
    from slmshift.training.label_task import train_label_task

    config = CompactConfig(threads=args.threads)
    if args.epochs:
        config = replace(config, epochs=int(args.epochs))
    selection = train_label_task(
        records, task, directory, compacts=args.compacts, config=config,
        target_agreement=args.target_agreement, resume=args.resume, progress=print,
    )
    for reason in selection["reasons"]:
        print(f"  {reason}")
    print(f"Selected {selection['chosen']} ({directory / selection['model']}); "
          f"selection in {directory / 'selected.json'}")
    return 0


def _train_lora(args, task, records, directory: Path) -> int:
    from dataclasses import replace

    from slmshift.training.dataset import split_records
    from slmshift.training.lora import LoraSettings, train_lora

    split = split_records(records)
    settings = LoraSettings() if not args.epochs else replace(LoraSettings(), epochs=args.epochs)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result = train_lora(
        args.base_model, split.train, split.validation, directory / "adapter", task=task.id,
        output_kind=task.output_kind, settings=settings, resume=args.resume,
        progress=lambda entry: print(f"  step {entry['step']}/{entry['max_steps']}: "
                                     + ", ".join(f"{k} {v:.4g}" for k, v in entry.items()
                                                 if isinstance(v, float))),
    )
    selection = {
        "task": task.id, "output_kind": task.output_kind, "model": "adapter", "chosen": "lora",
        "reasons": [f"LoRA on {args.base_model}"], "split": {
            name: [record.id for record in getattr(split, name)] for name in ("train", "validation", "test")
        },
        "train_seconds": {"lora": round(result.train_seconds, 1)},
    }
    (directory / "selected.json").write_text(json.dumps(selection, indent=2) + "\n", encoding="utf-8")
    print(f"Adapter written to {result.directory} (train loss {result.train_loss:.4f})")
    return 0

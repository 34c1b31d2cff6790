"""Train every local candidate for a label task and pick the one that beats the floor.

The candidates are the classical floor (TF-IDF with logistic regression), one or more compact
models (different seeds) and their ensemble with the floor. Each is scored on the validation
split: agreement, and coverage at the target agreement with a threshold chosen on that same
split. The pick is the best candidate that beats the floor on both figures, else the floor
itself. The test split is never looked at here.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from slmshift.evaluation.labels import DEFAULT_TARGET_AGREEMENT, choose_threshold, coverage_at
from slmshift.records import CallRecord
from slmshift.slm import load_slm
from slmshift.slm.ensemble import save_ensemble
from slmshift.training.classical import train_classical
from slmshift.training.compact import CompactConfig, train_compact
from slmshift.training.dataset import Split, TaskSpec, input_text, split_records, target_text

logger = logging.getLogger(__name__)

SELECTED_FILE = "selected.json"
CANDIDATES_DIR = "candidates"


def pairs(records: Sequence[CallRecord]) -> list[tuple[str, str]]:
    """`(input text, teacher label)` of each record."""
    return [(input_text(record), target_text(record)) for record in records]


def train_label_task(
    records: Sequence[CallRecord],
    task: TaskSpec,
    directory: str | Path,
    *,
    compacts: int = 2,
    config: CompactConfig | None = None,
    target_agreement: float = DEFAULT_TARGET_AGREEMENT,
    resume: bool = False,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train the candidates into `directory/candidates/`, pick one, write `selected.json`.

    Returns the selection (also written to `selected.json`): the chosen model's path, the
    validation figures of every candidate, the split's record ids and the training times.
    """
    say = progress or (lambda message: logger.info("%s", message))
    directory = Path(directory)
    split = split_records(records)
    train, validation = pairs(split.train), pairs(split.validation)
    answers = sorted({label for _, label in train})
    train_set = set(answers)
    validation = [(text, label) for text, label in validation if label in train_set]
    say(f"split: {split.counts()}; {len(answers)} labels")

    candidates = directory / CANDIDATES_DIR
    timings: dict[str, float] = {}
    started = time.perf_counter()
    _, timings["classical"] = train_classical(train, candidates / "classical", task=task.id)
    say(f"classical floor trained in {timings['classical']:.1f} s")
    members = ["classical"]
    for index in range(compacts):
        name = f"compact-{index}"
        member_config = replace(config or CompactConfig(), seed=(config or CompactConfig()).seed + index)
        result = train_compact(
            train, validation, candidates / name, task=task.id, answers=answers, config=member_config,
            resume=resume,
            progress=lambda entry, name=name: say(
                f"{name} epoch {entry['epoch']}: loss {entry['loss']:.3f}, "
                f"validation agreement {entry['validation_agreement']:.3f}"
            ),
        )
        timings[name] = result.train_seconds
        members.append(name)
    save_ensemble(candidates, members, labels=answers, task=task.id)
    timings["total"] = time.perf_counter() - started

    scores = {name: validation_scores(load_slm(candidates / name), validation, target_agreement)
              for name in members}
    scores["ensemble"] = validation_scores(load_slm(candidates), validation, target_agreement)
    chosen, reasons = choose(scores)
    selection = {
        "task": task.id,
        "output_kind": task.output_kind,
        "model": f"{CANDIDATES_DIR}/{chosen}" if chosen != "ensemble" else CANDIDATES_DIR,
        "chosen": chosen,
        "reasons": reasons,
        "validation": scores,
        "target_agreement": target_agreement,
        "train_seconds": {key: round(value, 1) for key, value in timings.items()},
        "split": _split_ids(split),
    }
    (directory / SELECTED_FILE).write_text(json.dumps(selection, indent=2) + "\n", encoding="utf-8")
    return selection


def validation_scores(slm: Any, validation: Sequence[tuple[str, str]], target: float) -> dict[str, float]:
    """Agreement and coverage at `target` on validation (threshold chosen on it)."""
    probabilities = slm.label_probabilities([text for text, _ in validation])
    best = probabilities.argmax(axis=1)
    correct = [slm.labels[index] == label for index, (_, label) in zip(best, validation)]
    confidences = [float(probabilities[row, index]) for row, index in enumerate(best)]
    threshold = choose_threshold(confidences, correct, target=target)
    applied = coverage_at(confidences, correct, threshold)
    return {
        "agreement": round(sum(correct) / len(correct), 4),
        "coverage": round(applied.coverage, 4),
        "threshold": threshold,
    }


def choose(scores: dict[str, dict[str, float]]) -> tuple[str, list[str]]:
    """The best candidate that beats the classical floor on agreement and coverage, else the floor."""
    floor = scores["classical"]
    reasons = []
    beating = []
    for name, score in scores.items():
        if name == "classical":
            continue
        wins = score["agreement"] > floor["agreement"] and score["coverage"] > floor["coverage"]
        reasons.append(
            f"{name}: agreement {score['agreement']:.1%} vs floor {floor['agreement']:.1%}, "
            f"coverage {score['coverage']:.1%} vs {floor['coverage']:.1%}: "
            + ("beats the floor" if wins else "does not beat the floor")
        )
        if wins:
            beating.append(name)
    if not beating:
        reasons.append("the classical floor wins and is served as the SLM")
        return "classical", reasons
    chosen = max(beating, key=lambda name: (scores[name]["coverage"], scores[name]["agreement"]))
    reasons.append(f"{chosen} chosen: highest coverage among those that beat the floor")
    return chosen, reasons


def _split_ids(split: Split) -> dict[str, list[str]]:
    return {name: [record.id for record in getattr(split, name)] for name in ("train", "validation", "test")} | {
        "dropped_leaks": split.dropped_leaks
    }

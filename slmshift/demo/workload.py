"""The demo's workload: which requests are captured, which are held out, and the teacher.

Captured requests come from the BANKING77 training split and from BFCL; held-out requests come
from the BANKING77 test split and from BFCL questions never captured, so nothing the SLMs are
trained on is used to judge them. The held-out set is written once, with the first plan, and
every later comparison (the demo's table, `slmshift refresh`) reuses the same file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmshift.demo.datasets import FunctionCallExample, IntentExample, load_banking77, load_bfcl

logger = logging.getLogger(__name__)

# Share of captured and held-out requests that are BFCL function-calling questions.
FUNCTION_CALL_SHARE = 0.15
# BFCL categories whose questions are single-turn and have ground truth.
BFCL_CATEGORIES = ("simple_python", "multiple", "parallel", "parallel_multiple")


@dataclass(frozen=True)
class Workload:
    """Requests of one demo run, split into captured and held-out."""

    capture_banking: list[IntentExample]
    capture_bfcl: list[FunctionCallExample]
    holdout_banking: list[IntentExample]
    holdout_bfcl: list[FunctionCallExample]

    @property
    def capture_size(self) -> int:
        return len(self.capture_banking) + len(self.capture_bfcl)

    @property
    def holdout_size(self) -> int:
        return len(self.holdout_banking) + len(self.holdout_bfcl)


def build_workload(requests: int, holdout_requests: int, *, seed: int = 0) -> Workload:
    """Pick `requests` captured and `holdout_requests` held-out requests, deterministically.

    Raises:
        ValueError: a count is not positive or exceeds what the datasets hold; the message
            gives the maximum.
    """
    if requests < 1 or holdout_requests < 1:
        raise ValueError(
            f"Invalid request counts ({requests} captured, {holdout_requests} held out): "
            "both must be at least 1."
        )
    bfcl = _unique_questions(load_bfcl(BFCL_CATEGORIES, seed=seed))
    holdout_bfcl_count = max(1, round(holdout_requests * FUNCTION_CALL_SHARE))
    capture_bfcl_count = max(1, round(requests * FUNCTION_CALL_SHARE))
    if capture_bfcl_count + holdout_bfcl_count > len(bfcl):
        capture_bfcl_count = len(bfcl) - holdout_bfcl_count
        logger.info("BFCL has %d usable questions; capturing %d of them.", len(bfcl), capture_bfcl_count)

    banking_train = load_banking77("train", seed=seed)
    banking_test = load_banking77("test", seed=seed)
    capture_banking_count = requests - capture_bfcl_count
    holdout_banking_count = holdout_requests - holdout_bfcl_count
    if capture_banking_count > len(banking_train) or holdout_banking_count > len(banking_test):
        maximum = len(banking_train) + capture_bfcl_count
        raise ValueError(
            f"Invalid --requests {requests} with {holdout_requests} held out: the datasets "
            f"allow at most {maximum} captured and {len(banking_test) + holdout_bfcl_count} "
            "held-out requests."
        )
    return Workload(
        capture_banking=banking_train[:capture_banking_count],
        capture_bfcl=bfcl[holdout_bfcl_count : holdout_bfcl_count + capture_bfcl_count],
        holdout_banking=banking_test[:holdout_banking_count],
        holdout_bfcl=bfcl[:holdout_bfcl_count],
    )


def _unique_questions(examples: list[FunctionCallExample]) -> list[FunctionCallExample]:
    """Keep the first BFCL example of each question text.

    BFCL repeats some questions across categories with other functions and answers; the replay
    teacher looks answers up by the question's text, so it can hold only one of them.
    """
    from slmshift.demo.support_agent import function_call_input

    seen: set[str] = set()
    unique = []
    for example in examples:
        text = function_call_input(example)["request"].strip()
        if text not in seen:
            seen.add(text)
            unique.append(example)
    return unique


def interleave(first: list[Any], second: list[Any]) -> list[Any]:
    """Merge two lists evenly, keeping each one's order, so traffic looks mixed over time."""
    if not second:
        return list(first)
    merged: list[Any] = []
    step = max(1, len(first) // len(second))
    second_iter = iter(second)
    for index, item in enumerate(first):
        merged.append(item)
        if (index + 1) % step == 0:
            nxt = next(second_iter, None)
            if nxt is not None:
                merged.append(nxt)
    merged.extend(second_iter)
    return merged


def save_holdout(path: Path, workload: Workload) -> Path:
    """Write the held-out requests as JSON Lines (`kind`, dataset id or text, expected answer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for example in workload.holdout_banking:
            row = {"kind": "banking", "text": example.text, "label": example.label}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        for example in workload.holdout_bfcl:
            row = {"kind": "function_call", "id": example.id, "category": example.category}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def load_holdout(path: Path, *, seed: int = 0) -> tuple[list[IntentExample], list[FunctionCallExample]]:
    """Read a held-out set written by `save_holdout`, resolving BFCL ids against the dataset.

    Raises:
        FileNotFoundError: `path` does not exist; run `slmshift demo` first to write it.
        ValueError: a BFCL id is not in the dataset any more.
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"No held-out set at {path}: run `slmshift demo` first, which writes it with the plan."
        )
    banking: list[IntentExample] = []
    bfcl_ids: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row["kind"] == "banking":
            banking.append(IntentExample(row["text"], row["label"]))
        else:
            bfcl_ids.append(row["id"])

    by_id = {example.id: example for example in load_bfcl(BFCL_CATEGORIES, seed=seed)}
    missing = [item for item in bfcl_ids if item not in by_id]
    if missing:
        raise ValueError(f"Held-out BFCL ids {missing[:3]} are not in the dataset: rerun `slmshift demo`.")
    return banking, [by_id[item] for item in bfcl_ids]

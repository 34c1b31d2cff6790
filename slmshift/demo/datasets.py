"""Loaders for the public datasets the example agent and the demo replay.

The data folder is found in this order: the `SLMSHIFT_DATA_DIR` environment variable, then a
`shared/data` folder beside the current directory or beside the repository that contains this
package. BANKING77 (CC BY 4.0, PolyAI) gives the router's requests and intents; the Berkeley
Function Calling Leaderboard (Apache-2.0, Gorilla project) gives tool-calling questions, their
functions and ground-truth calls.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DATA_DIR_ENV = "SLMSHIFT_DATA_DIR"

BFCL_CATEGORIES = (
    "simple_python",
    "multiple",
    "parallel",
    "parallel_multiple",
    "live_simple",
    "live_multiple",
    "live_parallel",
    "live_parallel_multiple",
)

# BFCL's own parameter type names, mapped to JSON Schema types.
_BFCL_TYPES = {
    "dict": "object",
    "float": "number",
    "tuple": "array",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "array": "array",
}


@dataclass(frozen=True)
class IntentExample:
    """One BANKING77 request and its intent label."""

    text: str
    label: str


@dataclass(frozen=True)
class FunctionCallExample:
    """One BFCL question with the functions offered and the acceptable calls.

    `ground_truth` is BFCL's form: a list with one `{function_name: {param: [acceptable
    values]}}` per expected call, where `""` among the values means the parameter may be omitted.
    """

    id: str
    category: str
    messages: list[dict[str, str]]
    functions: list[dict[str, Any]]
    ground_truth: list[dict[str, dict[str, list[Any]]]]


def find_data_dir() -> Path:
    """Return the folder holding `banking77/` and `bfcl/`.

    Raises:
        FileNotFoundError: no data folder was found; the message lists where it looked.
    """
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        path = Path(override).expanduser()
        if not (path / "banking77").is_dir():
            raise FileNotFoundError(
                f"{DATA_DIR_ENV}={override!r} has no banking77/ folder: point it at the folder "
                "that holds banking77/ and bfcl/."
            )
        return path

    searched = []
    repository = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), repository):
        for candidate in (base / "shared" / "data", base.parent / "shared" / "data"):
            searched.append(str(candidate))
            if (candidate / "banking77").is_dir():
                return candidate
    raise FileNotFoundError(
        f"No dataset folder found (looked in {', '.join(searched)}): set {DATA_DIR_ENV} to the "
        "folder that holds banking77/ and bfcl/."
    )


@lru_cache(maxsize=4)
def banking77_labels(data_dir: Path | None = None) -> tuple[str, ...]:
    """Return the 77 BANKING77 intent names in the dataset's order."""
    path = (data_dir or find_data_dir()) / "banking77" / "categories.json"
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def load_banking77(
    split: str = "train",
    *,
    limit: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> list[IntentExample]:
    """Load a BANKING77 split (`train`: 10,003 rows, `test`: 3,080), shuffled with `seed`.

    The files are grouped by label, so the rows are always shuffled before `limit` applies.
    """
    if split not in ("train", "test"):
        raise ValueError(f"Invalid BANKING77 split {split!r}: use 'train' or 'test'.")
    path = (data_dir or find_data_dir()) / "banking77" / f"{split}.csv"
    with open(path, encoding="utf-8", newline="") as handle:
        examples = [IntentExample(row["text"], row["category"]) for row in csv.DictReader(handle)]
    random.Random(seed).shuffle(examples)
    return examples[:limit] if limit is not None else examples


def load_bfcl(
    categories: tuple[str, ...] = ("simple_python", "multiple", "parallel", "parallel_multiple"),
    *,
    limit: int | None = None,
    seed: int = 0,
    data_dir: Path | None = None,
) -> list[FunctionCallExample]:
    """Load BFCL questions with ground truth from `categories`, shuffled with `seed`."""
    root = (data_dir or find_data_dir()) / "bfcl"
    examples = []
    for category in categories:
        if category not in BFCL_CATEGORIES:
            raise ValueError(
                f"Invalid BFCL category {category!r}: use one of {', '.join(BFCL_CATEGORIES)}."
            )
        questions = _read_json_lines(root / f"BFCL_v4_{category}.json")
        answers = {row["id"]: row["ground_truth"] for row in _read_json_lines(
            root / "possible_answer" / f"BFCL_v4_{category}.json"
        )}
        for row in questions:
            examples.append(
                FunctionCallExample(
                    id=row["id"],
                    category=category,
                    messages=[message for turn in row["question"] for message in turn],
                    functions=row["function"],
                    ground_truth=answers[row["id"]],
                )
            )
    random.Random(seed).shuffle(examples)
    return examples[:limit] if limit is not None else examples


def bfcl_function_to_tool(function: dict[str, Any]) -> dict[str, Any]:
    """Convert a BFCL function description into an OpenAI-style tool with a JSON Schema."""
    return {
        "type": "function",
        "function": {
            "name": function["name"],
            "description": function.get("description", ""),
            "parameters": bfcl_schema_to_json_schema(function.get("parameters") or {"type": "dict"}),
        },
    }


def bfcl_schema_to_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Translate BFCL's type names (`dict`, `float`, `tuple`, `any`) into JSON Schema."""
    converted: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            if value != "any":
                converted["type"] = _BFCL_TYPES.get(value, value)
        elif key == "properties" and isinstance(value, dict):
            converted["properties"] = {
                name: bfcl_schema_to_json_schema(child) for name, child in value.items()
            }
        elif key == "items" and isinstance(value, dict):
            converted["items"] = bfcl_schema_to_json_schema(value)
        elif key != "optional":
            converted[key] = value
    return converted


def _read_json_lines(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]

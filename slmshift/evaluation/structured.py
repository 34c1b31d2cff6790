"""JSON outputs: schema validity and field-level precision, recall and F1 against the teacher."""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


def parse_json(text: str) -> Any | None:
    """The JSON value in `text`, or None when it is not valid JSON."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def schema_valid(value: Any, schema: dict[str, Any] | None) -> bool:
    """Whether `value` validates against the JSON Schema `schema` (True when there is no schema)."""
    if schema is None:
        return True
    import jsonschema

    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError:
        return False
    return True


def flatten(value: Any, prefix: str = "") -> set[tuple[str, str]]:
    """The `(path, value)` leaves of a JSON value; list items are keyed by position."""
    if isinstance(value, dict):
        leaves: set[tuple[str, str]] = set()
        for key, item in value.items():
            leaves |= flatten(item, f"{prefix}/{key}")
        return leaves
    if isinstance(value, list):
        leaves = set()
        for index, item in enumerate(value):
            leaves |= flatten(item, f"{prefix}/{index}")
        return leaves
    return {(prefix, json.dumps(value, sort_keys=True))}


def field_f1(predicted: Any, expected: Any) -> float:
    """F1 over the leaves of two JSON values (1.0 when both are empty)."""
    predicted_leaves, expected_leaves = flatten(predicted), flatten(expected)
    if not predicted_leaves and not expected_leaves:
        return 1.0
    common = len(predicted_leaves & expected_leaves)
    if common == 0:
        return 0.0
    precision = common / len(predicted_leaves)
    recall = common / len(expected_leaves)
    return 2 * precision * recall / (precision + recall)

"""Tool-call matching after the Berkeley Function Calling Leaderboard's (BFCL) AST rules.

A ground truth is BFCL's form: one `{function_name: {parameter: [acceptable values]}}` per
expected call. A predicted call matches when its function name is equal, every argument it
passes is a known parameter whose value (after normalisation) is among the acceptable values,
and every parameter it leaves out lists `""` (optional) among its values. Parallel calls match
in any order, each expected call used once. Normalisation follows BFCL: an int passes where a
float is expected, and strings compare in lower case without spaces and `,./-_*^` marks.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

_STRING_NOISE = re.compile(r"[ ,./\-_*^]")

GroundTruth = Sequence[dict[str, dict[str, list[Any]]]]


@dataclass(frozen=True)
class CallMatch:
    """The verdict on one predicted call list: `matched`, and the first reason when not."""

    matched: bool
    reason: str = ""


def normalize_string(value: str) -> str:
    """Lower case, without spaces and the marks `,./-_*^`."""
    return _STRING_NOISE.sub("", value.lower())


def normalize_value(value: Any) -> Any:
    """Normalise a value for comparison: strings as `normalize_string`, ints as floats, recursively."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return normalize_string(value)
    if isinstance(value, int):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [normalize_value(item) for item in value]
    if isinstance(value, dict):
        return {key: normalize_value(item) for key, item in value.items()}
    return value


def value_matches(value: Any, acceptable: Sequence[Any]) -> bool:
    """Whether `value` equals one of `acceptable` after normalisation (`""` never matches a value)."""
    normalized = normalize_value(value)
    for candidate in acceptable:
        if candidate == "" and value != "":
            continue
        if _is_int(candidate) and isinstance(value, float):
            continue  # BFCL: a float where an integer is expected is a type error
        if isinstance(candidate, dict) and isinstance(value, dict):
            if _dict_matches(value, candidate):
                return True
            continue
        if normalize_value(candidate) == normalized:
            return True
    return False


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _dict_matches(value: dict[str, Any], expected: dict[str, Any]) -> bool:
    """A nested dict in a ground truth maps each key to its own acceptable values."""
    for key, acceptable in expected.items():
        options = acceptable if isinstance(acceptable, list) else [acceptable]
        if key not in value:
            if "" not in options:
                return False
            continue
        if not value_matches(value[key], options):
            return False
    return all(key in expected for key in value)


def match_call(name: str, arguments: dict[str, Any], expected: dict[str, dict[str, list[Any]]]) -> CallMatch:
    """Match one predicted call against one expected `{function_name: {param: [values]}}`."""
    ((expected_name, parameters),) = expected.items()
    if name != expected_name:
        return CallMatch(False, f"function {name!r} is not {expected_name!r}")
    for parameter, value in arguments.items():
        if parameter not in parameters:
            return CallMatch(False, f"{name}: unexpected argument {parameter!r}")
        if not value_matches(value, parameters[parameter]):
            return CallMatch(False, f"{name}: argument {parameter!r}={value!r} is not acceptable")
    for parameter, acceptable in parameters.items():
        if parameter not in arguments and "" not in acceptable:
            return CallMatch(False, f"{name}: required argument {parameter!r} is missing")
    return CallMatch(True)


def match_calls(calls: Sequence[tuple[str, dict[str, Any]]], ground_truth: GroundTruth) -> CallMatch:
    """Match predicted `(name, arguments)` calls against all expected calls, in any order.

    Every expected call must be matched by exactly one predicted call, and no predicted call may
    be left over. Matching is a bipartite search, so the result does not depend on order.
    """
    if len(calls) != len(ground_truth):
        return CallMatch(False, f"{len(calls)} calls made, {len(ground_truth)} expected")
    options = [
        [index for index, expected in enumerate(ground_truth) if match_call(name, arguments, expected).matched]
        for name, arguments in calls
    ]
    if _perfect_matching(options, len(ground_truth)):
        return CallMatch(True)
    for (name, arguments), choices in zip(calls, options):
        if not choices:
            reasons = [match_call(name, arguments, expected).reason for expected in ground_truth]
            return CallMatch(False, reasons[0] if len(reasons) == 1 else f"{name}: no expected call matches")
    return CallMatch(False, "the calls cannot be paired one to one with the expected calls")


def _perfect_matching(options: list[list[int]], size: int) -> bool:
    owner: dict[int, int] = {}

    def assign(call: int, seen: set[int]) -> bool:
        for expected in options[call]:
            if expected in seen:
                continue
            seen.add(expected)
            if expected not in owner or assign(owner[expected], seen):
                owner[expected] = call
                return True
        return False

    return all(assign(call, set()) for call in range(len(options))) and len(owner) == size

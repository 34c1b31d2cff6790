"""Turn arbitrary Python values from agent state into JSON-safe values for call records.

Capture handlers meet whatever the user's agent carries: pydantic models, dataclasses, bytes,
datetimes, numpy values, sets, cyclic structures, and live objects such as clients or locks.
`to_jsonable` returns a value that `json.dumps` accepts and that keeps the data where a JSON
form exists. Objects without one become a placeholder string naming their type only, because
the `repr` of a live client can contain credentials.

Long text is cut to `max_chars` characters and ends with `TRUNCATION_MARKER` followed by the
original length, so a reader can tell a cut value from a short one.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import logging
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_CHARS = 100_000
DEFAULT_MAX_ITEMS = 10_000
DEFAULT_MAX_DEPTH = 64
TRUNCATION_MARKER = "…[truncated by slmshift, original length "


class _Limits:
    __slots__ = ("max_chars", "max_items", "max_depth", "truncated")

    def __init__(self, max_chars: int, max_items: int, max_depth: int) -> None:
        self.max_chars = max_chars
        self.max_items = max_items
        self.max_depth = max_depth
        self.truncated = False


def truncate_text(text: str, max_chars: int) -> str:
    """Cut `text` to `max_chars` characters and append the truncation marker.

    Text of at most `max_chars` characters is returned unchanged.
    """
    if len(text) <= max_chars:
        return text
    return f"{text[:max_chars]}{TRUNCATION_MARKER}{len(text)} chars]"


def is_truncated(text: Any) -> bool:
    """Return whether `text` is a string that `truncate_text` cut."""
    return isinstance(text, str) and TRUNCATION_MARKER in text


def to_jsonable(
    value: Any,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Return a JSON-safe form of `value`.

    Strings longer than `max_chars` are truncated with a marker. Lists and mappings keep at
    most `max_items` entries, and a marker entry gives how many were left out. Nesting deeper
    than `max_depth` and reference cycles become placeholder strings. Never raises.
    """
    limits = _Limits(max_chars, max_items, max_depth)
    return _convert(value, limits, 0, set())


def to_jsonable_with_flag(
    value: Any,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_items: int = DEFAULT_MAX_ITEMS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[Any, bool]:
    """Return `to_jsonable(value)` and whether anything in it was truncated or left out."""
    limits = _Limits(max_chars, max_items, max_depth)
    converted = _convert(value, limits, 0, set())
    return converted, limits.truncated


def placeholder(value: Any, reason: str = "not JSON-serializable") -> str:
    """Describe `value` by its type only; the value's own text is never included."""
    kind = type(value)
    return f"<{kind.__module__}.{kind.__qualname__}: {reason}>"


def _convert(value: Any, limits: _Limits, depth: int, active: set[int]) -> Any:
    # Fast path: most values in a chat payload are plain strings and numbers.
    kind = type(value)
    if kind is str:
        return _text(value, limits)
    if kind in (int, bool) or value is None:
        return value
    if kind is float:
        return _float(value)
    if depth >= limits.max_depth:
        limits.truncated = True
        return placeholder(value, f"nested deeper than {limits.max_depth} levels")
    if kind is dict or kind is list or kind is tuple:
        return _convert_plain_container(value, limits, depth, active)
    try:
        return _convert_object(value, limits, depth, active)
    except Exception:  # noqa: BLE001 - a hostile __iter__ or property must not break capture
        logger.debug("Could not convert a %s to JSON", kind.__qualname__, exc_info=True)
        return placeholder(value, "conversion failed")


def _convert_plain_container(value: Any, limits: _Limits, depth: int, active: set[int]) -> Any:
    # Exact dict, list and tuple skip the isinstance and ABC checks of _convert_object.
    if id(value) in active:
        return placeholder(value, "reference cycle")
    active.add(id(value))
    try:
        if type(value) is dict:
            return _mapping(value, limits, depth, active)
        return _sequence(value, limits, depth, active)
    finally:
        active.discard(id(value))


def _convert_object(value: Any, limits: _Limits, depth: int, active: set[int]) -> Any:
    if isinstance(value, (str, int, float)) and not isinstance(value, enum.Enum):
        return _convert_scalar_subclass(value, limits)
    if isinstance(value, (dict, list, tuple, set, frozenset, Mapping)) or _is_model(value):
        if id(value) in active:
            return placeholder(value, "reference cycle")
        active.add(id(value))
        try:
            return _convert_container(value, limits, depth, active)
        finally:
            active.discard(id(value))
    return _convert_leaf(value, limits)


def _convert_container(value: Any, limits: _Limits, depth: int, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        return _mapping(value, limits, depth, active)
    if isinstance(value, (list, tuple)):
        return _sequence(value, limits, depth, active)
    if isinstance(value, (set, frozenset)):
        return _sequence(_sorted_if_possible(value), limits, depth, active)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
        return _mapping(fields, limits, depth, active)
    return _pydantic(value, limits, depth, active)


def _convert_leaf(value: Any, limits: _Limits) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(bytes(value), limits)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return _convert(value.value, limits, 0, set())
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str(value)
    if _is_numpy(value):
        return _numpy(value, limits)
    return placeholder(value)


def _mapping(
    value: Mapping[Any, Any], limits: _Limits, depth: int, active: set[int]
) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index >= limits.max_items:
            limits.truncated = True
            result["…"] = f"{len(value) - limits.max_items} more entries left out by slmshift"
            break
        result[_key(key)] = _convert(item, limits, depth + 1, active)
    return result


def _sequence(value: Any, limits: _Limits, depth: int, active: set[int]) -> list[Any]:
    items = [_convert(item, limits, depth + 1, active) for item in value[: limits.max_items]]
    if len(value) > limits.max_items:
        limits.truncated = True
        items.append(f"…{len(value) - limits.max_items} more items left out by slmshift")
    return items


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, (int, float)):
        return str(key)
    if isinstance(key, enum.Enum):
        return str(key.value)
    if isinstance(key, (uuid.UUID, dt.date, dt.datetime)):
        return str(key)
    return placeholder(key, "mapping key")


def _text(value: str, limits: _Limits) -> str:
    if len(value) > limits.max_chars:
        limits.truncated = True
        return truncate_text(value, limits.max_chars)
    return value


def _float(value: float) -> float | str:
    # JSON has no NaN or infinity; json.dumps would write invalid JSON for them.
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _convert_scalar_subclass(value: str | int | float, limits: _Limits) -> Any:
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return _text(str(value), limits)
    if isinstance(value, int):
        return int(value)
    return _float(float(value))


def _bytes(value: bytes, limits: _Limits) -> dict[str, Any]:
    encoded = base64.b64encode(value).decode("ascii")
    form: dict[str, Any] = {"type": "bytes", "size": len(value), "base64": encoded}
    if len(encoded) > limits.max_chars:
        limits.truncated = True
        form["base64"] = truncate_text(encoded, limits.max_chars)
    return form


def _sorted_if_possible(value: set[Any] | frozenset[Any]) -> list[Any]:
    try:
        return sorted(value)
    except TypeError:
        return sorted(value, key=repr)


def _is_model(value: Any) -> bool:
    return (dataclasses.is_dataclass(value) and not isinstance(value, type)) or hasattr(
        type(value), "model_dump"
    )


def _pydantic(value: Any, limits: _Limits, depth: int, active: set[int]) -> Any:
    try:
        dumped = value.model_dump(mode="json")
    except Exception:  # noqa: BLE001 - fall back to the raw field values below
        dumped = dict(getattr(value, "__dict__", {}))
    return _convert(dumped, limits, depth + 1, active)


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy"


def _numpy(value: Any, limits: _Limits) -> Any:
    if hasattr(value, "shape") and getattr(value, "shape", ()) != ():
        if value.size > limits.max_items:
            limits.truncated = True
            return placeholder(value, f"array of shape {tuple(value.shape)} left out")
        return _convert(value.tolist(), limits, 0, set())
    if hasattr(value, "item"):
        return _convert(value.item(), limits, 0, set())
    return placeholder(value)

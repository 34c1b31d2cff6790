"""JSON-safe conversion of awkward agent state, shared by the capture handlers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import threading
import uuid
from decimal import Decimal
from pathlib import Path

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from slmshift.callbacks._serialize import (
    TRUNCATION_MARKER,
    is_truncated,
    to_jsonable,
    to_jsonable_with_flag,
)


class Color(enum.Enum):
    RED = "red"


class Address(BaseModel):
    city: str
    when: dt.date


@dataclasses.dataclass
class Order:
    id: int
    items: list[str]
    address: Address


class Client:
    """A live client whose repr would leak a credential."""

    def __repr__(self) -> str:
        return "Client(api_key='sk-secret')"


def test_models_and_dataclasses_keep_fields():
    order = Order(id=7, items=["tea"], address=Address(city="Bern", when=dt.date(2026, 1, 2)))

    assert to_jsonable(order) == {
        "id": 7,
        "items": ["tea"],
        "address": {"city": "Bern", "when": "2026-01-02"},
    }


def test_scalars_get_faithful_forms():
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.timezone.utc)
    value = {
        "moment": moment,
        "span": dt.timedelta(seconds=90),
        "id": uuid.UUID(int=1),
        "price": Decimal("1.10"),
        "path": Path("/tmp/x"),
        "color": Color.RED,
        "nan": float("nan"),
        "inf": float("-inf"),
        "bytes": b"hi",
        "set": {3, 1, 2},
        "frozen": frozenset({"b", "a"}),
        "tuple": (1, 2),
        1: "int key",
    }

    result = to_jsonable(value)

    assert result["moment"] == "2026-03-04T05:06:07+00:00"
    assert result["span"] == 90.0
    assert result["id"] == "00000000-0000-0000-0000-000000000001"
    assert result["price"] == "1.10"
    assert result["path"] == "/tmp/x"
    assert result["color"] == "red"
    assert result["nan"] == "NaN"
    assert result["inf"] == "-Infinity"
    assert result["bytes"] == {"type": "bytes", "size": 2, "base64": "aGk="}
    assert result["set"] == [1, 2, 3]
    assert result["frozen"] == ["a", "b"]
    assert result["tuple"] == [1, 2]
    assert result["1"] == "int key"
    json.dumps(result, allow_nan=False)


def test_numpy_values_become_numbers():
    value = {"scalar": np.float32(0.5), "int": np.int64(3), "array": np.arange(3)}

    assert to_jsonable(value) == {"scalar": 0.5, "int": 3, "array": [0, 1, 2]}


def test_live_objects_become_type_placeholders():
    result = to_jsonable({"lock": threading.Lock(), "client": Client(), "func": len})

    assert result["lock"] == "<_thread.lock: not JSON-serializable>"
    assert result["client"].endswith("Client: not JSON-serializable>")
    assert "sk-secret" not in json.dumps(result)
    assert result["func"].startswith("<builtins.builtin_function_or_method")


def test_cycles_become_placeholders():
    items: list = [1]
    items.append(items)
    node: dict = {"name": "a"}
    node["child"] = {"parent": node}

    assert to_jsonable(items)[1] == "<builtins.list: reference cycle>"
    assert to_jsonable(node)["child"]["parent"] == "<builtins.dict: reference cycle>"


def test_shared_references_are_not_cycles():
    shared = {"k": 1}

    assert to_jsonable([shared, shared]) == [{"k": 1}, {"k": 1}]


def test_long_text_and_lists_are_truncated():
    converted, truncated = to_jsonable_with_flag(
        {"text": "é" * 50, "items": list(range(20))}, max_chars=10, max_items=5
    )

    assert truncated is True
    assert converted["text"] == "é" * 10 + TRUNCATION_MARKER + "50 chars]"
    assert is_truncated(converted["text"])
    assert converted["items"][:5] == [0, 1, 2, 3, 4]
    assert converted["items"][5] == "…15 more items left out by slmshift"


def test_deep_nesting_is_cut():
    value: list = []
    cursor = value
    for _ in range(100):
        cursor.append([])
        cursor = cursor[0]

    text = json.dumps(to_jsonable(value, max_depth=10))

    assert "nested deeper than 10 levels" in text


def test_hostile_objects_do_not_raise():
    class Hostile(dict):
        def items(self):
            raise RuntimeError("no")

    assert to_jsonable(Hostile(a=1)).endswith("Hostile: conversion failed>")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_json_values_round_trip_exactly(value):
    converted = to_jsonable(value)

    assert converted == value
    assert json.loads(json.dumps(converted, ensure_ascii=False)) == value

"""Supervised examples from a task's records, and the deterministic split they are judged on.

`split_records` groups near-duplicate inputs first and assigns whole groups to train,
validation or test by a hash of the group's key, so the split is the same on every run and no
near duplicate crosses splits. `build_example` renders a record in the base model's chat format
(tools included) and masks every token but the assistant's answer, end-of-turn token included.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord, Message

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
SPLITS = ("train", "validation", "test")
# A record's metadata may pin its split: "test" keeps it in test, "fit" in train or validation.
PIN_KEY = "split"

_WORD = re.compile(r"[a-z0-9]+")


class DatasetError(ValueError):
    """Records cannot be turned into training examples; the message says which and why."""


@dataclass(frozen=True)
class TaskSpec:
    """A task: the calls of one node with one output kind (the simple form before clustering)."""

    id: str
    node: str
    output_kind: str
    agent: str | None = None
    labels: tuple[str, ...] = ()

    def matches(self, record: CallRecord) -> bool:
        return (
            record.ok
            and record.node == self.node
            and record.output_kind == self.output_kind
            and (self.agent is None or record.agent == self.agent)
        )


@dataclass
class Split:
    """Records per split, and how many were dropped because a near duplicate was pinned to test."""

    train: list[CallRecord] = field(default_factory=list)
    validation: list[CallRecord] = field(default_factory=list)
    test: list[CallRecord] = field(default_factory=list)
    dropped_leaks: int = 0

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLITS} | {"dropped_leaks": self.dropped_leaks}


def input_text(record: CallRecord) -> str:
    """The varying input of a record: its last user message (the whole conversation if none)."""
    for message in reversed(record.messages):
        if message.role == "user":
            return message.text
    return "\n".join(message.text for message in record.messages)


def target_text(record: CallRecord) -> str:
    """The teacher's answer as text (tool calls as JSON)."""
    if record.response is None:
        raise DatasetError(f"Record {record.id} has no response: curate failed calls out first.")
    if record.response.tool_calls:
        return json.dumps(
            [{"name": call.name, "arguments": call.arguments} for call in record.response.tool_calls],
            sort_keys=True,
        )
    return record.response.text.strip()


def near_duplicate_keys(text: str) -> tuple[str, str]:
    """Two keys under which near-duplicate inputs collide: the normalised words, and their set.

    NOTE: this catches case, punctuation, spacing and word-order variants, not paraphrases.
    """
    words = _WORD.findall(text.lower())
    return " ".join(words), " ".join(sorted(set(words)))


def split_records(
    records: Sequence[CallRecord],
    *,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    salt: str = "slmshift",
) -> Split:
    """Assign records to train, validation and test; deterministic and leak-free.

    Near duplicates are grouped (union of records sharing either key of `near_duplicate_keys`).
    A group holding a record pinned to test (`metadata["split"] == "test"`) goes to test, and
    its records pinned to `fit` are dropped (counted in `dropped_leaks`). Other groups go where
    a SHA-256 of the group key and `salt` falls: below `validation_fraction` to validation,
    then `test_fraction` to test, the rest to train; a group pinned to `fit` never lands in
    test (its share goes to train).

    Raises:
        ValueError: the fractions are negative or leave nothing for training.
    """
    if validation_fraction < 0 or test_fraction < 0 or validation_fraction + test_fraction >= 1:
        raise ValueError(
            f"Invalid split fractions validation={validation_fraction}, test={test_fraction}: "
            "each must be at least 0 and together below 1."
        )
    split = Split()
    for group in _near_duplicate_groups(records):
        pins = {str(record.metadata.get(PIN_KEY, "")) for record in group}
        key = min(near_duplicate_keys(input_text(record))[0] for record in group)
        position = _hash_fraction(key, salt)
        if "test" in pins:
            for record in group:
                if record.metadata.get(PIN_KEY) == "fit":
                    split.dropped_leaks += 1
                else:
                    split.test.append(record)
            continue
        if position < validation_fraction:
            split.validation.extend(group)
        elif position < validation_fraction + test_fraction and "fit" not in pins:
            split.test.extend(group)
        else:
            split.train.extend(group)
    return split


def _hash_fraction(key: str, salt: str) -> float:
    digest = hashlib.sha256(f"{salt}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _near_duplicate_groups(records: Sequence[CallRecord]) -> list[list[CallRecord]]:
    parent = list(range(len(records)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    first_seen: dict[tuple[int, str], int] = {}
    for index, record in enumerate(records):
        for kind, key in enumerate(near_duplicate_keys(input_text(record))):
            other = first_seen.setdefault((kind, key), index)
            parent[find(index)] = find(other)
    groups: dict[int, list[CallRecord]] = {}
    for index, record in enumerate(records):
        groups.setdefault(find(index), []).append(record)
    return list(groups.values())


# -- chat-format examples ---------------------------------------------------------------------


def chat_messages(messages: Iterable[Message]) -> list[dict[str, Any]]:
    """Messages in the form Hugging Face chat templates read (tool-call arguments as dicts)."""
    converted = []
    for message in messages:
        item: dict[str, Any] = {"role": message.role, "content": message.text}
        if message.tool_calls:
            item["tool_calls"] = [
                {"type": "function", "function": {"name": call.name, "arguments": call.arguments}}
                for call in message.tool_calls
            ]
        if message.tool_call_id is not None:
            item["tool_call_id"] = message.tool_call_id
        if message.name is not None:
            item["name"] = message.name
        converted.append(item)
    return converted


def build_example(
    record: CallRecord,
    tokenizer: Any,
    *,
    chat_template: str | None = None,
    max_length: int | None = None,
) -> dict[str, list[int]]:
    """Token ids, attention mask and labels of one record; labels are -100 outside the answer.

    The prompt is rendered with `add_generation_prompt=True` and the full conversation without
    it; the answer is what the full rendering adds, so the template's end-of-turn marker is part
    of the labels. When the template adds none, the tokenizer's EOS token is appended.

    Raises:
        DatasetError: no chat template, a template whose prompt is not a prefix of the full
            conversation, or no trainable token left (for example after truncation).
    """
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise DatasetError(
            f"Tokenizer {getattr(tokenizer, 'name_or_path', '?')!r} has no chat template: pass "
            "chat_template= (a Jinja string) or use an instruct model's tokenizer."
        )
    if record.response is None:
        raise DatasetError(f"Record {record.id} has no response: curate failed calls out first.")
    tools = [tool.to_openai() for tool in record.tools] or None
    prompt_messages = chat_messages(record.messages)
    prompt = tokenizer.apply_chat_template(
        prompt_messages, tools=tools, chat_template=template, add_generation_prompt=True, tokenize=False
    )
    full = tokenizer.apply_chat_template(
        [*prompt_messages, *chat_messages([record.response])],
        tools=tools, chat_template=template, tokenize=False,
    )
    if not full.startswith(prompt):
        raise DatasetError(
            f"Record {record.id}: the chat template renders the prompt differently once the "
            "answer is added, so the answer cannot be isolated; pass a chat_template= that "
            "renders earlier turns the same way."
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    end_of_turn = end_of_turn_token_id(tokenizer, template)
    if end_of_turn is not None and end_of_turn not in answer_ids:
        answer_ids = [*answer_ids, end_of_turn]

    input_ids = [*prompt_ids, *answer_ids]
    labels = [IGNORE_INDEX] * len(prompt_ids) + list(answer_ids)
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise DatasetError(
            f"Record {record.id} has no trainable token (prompt of {len(prompt_ids)} tokens, "
            f"max_length={max_length}): raise max_length or drop the record."
        )
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "labels": labels}


def end_of_turn_token_id(tokenizer: Any, template: str) -> int | None:
    """The token that ends an assistant turn: a known marker the template uses, else EOS."""
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"):
        if marker in template:
            token = tokenizer.convert_tokens_to_ids(marker)
            if isinstance(token, int) and token != tokenizer.unk_token_id:
                return token
    return tokenizer.eos_token_id


# -- export -----------------------------------------------------------------------------------


def export_jsonl(split: Split, directory: str | Path) -> dict[str, Path]:
    """Write `train.jsonl`, `validation.jsonl` and `test.jsonl` in the OpenAI chat fine-tuning format."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in SPLITS:
        path = directory / f"{name}.jsonl"
        with open(path, "w", encoding="utf-8") as handle:
            for record in getattr(split, name):
                handle.write(json.dumps(record.to_openai_finetune(), ensure_ascii=False) + "\n")
        paths[name] = path
    return paths


def to_hf_dataset(split: Split, tokenizer: Any = None, *, chat_template: str | None = None,
                  max_length: int | None = None) -> Any:
    """A `datasets.DatasetDict` of the splits: chat messages, or tokenized examples with a tokenizer."""
    from datasets import Dataset, DatasetDict

    parts = {}
    for name in SPLITS:
        records = getattr(split, name)
        if tokenizer is None:
            rows = [record.to_openai_finetune() | {"id": record.id} for record in records]
            for row in rows:
                row["messages"] = json.dumps(row["messages"], ensure_ascii=False)
                row["tools"] = json.dumps(row.get("tools", []), ensure_ascii=False)
        else:
            rows = [build_example(record, tokenizer, chat_template=chat_template, max_length=max_length)
                    for record in records]
        parts[name] = Dataset.from_list(rows)
    return DatasetDict(parts)


def examples_hash(records: Sequence[CallRecord]) -> str:
    """SHA-256 over the records' inputs and answers, in order."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(json.dumps(record.to_openai_finetune(), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()

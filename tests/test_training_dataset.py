"""Chat-format training examples and the leak-free split, with a tokenizer built locally."""

import json

import pytest

from slmshift.records import CallRecord, Message, ToolCall, ToolDefinition
from slmshift.training.dataset import (
    DatasetError,
    build_example,
    export_jsonl,
    split_records,
    to_hf_dataset,
)
from slmshift.training.tiny import build_tiny_base


def record(text, answer="card_arrival", **metadata):
    return CallRecord(
        messages=(Message("system", "Classify the intent."), Message("user", text)),
        response=Message("assistant", answer),
        node="router",
        metadata=metadata,
    )


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    corpus = ["Where is my card?", "card_arrival", "Classify the intent.", "get_weather city Paris"] * 20
    return AutoTokenizer.from_pretrained(build_tiny_base(tmp_path_factory.mktemp("base"), corpus))


def test_labels_cover_only_the_answer_and_end_of_turn(tokenizer):
    example = build_example(record("Where is my card?"), tokenizer)
    trained = [token for token, label in zip(example["input_ids"], example["labels"]) if label != -100]
    assert tokenizer.decode(trained).strip() == "card_arrival<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in trained
    prompt_part = [label for label in example["labels"] if label == -100]
    assert len(prompt_part) > len(trained)


def test_tool_calls_and_tools_are_rendered(tokenizer):
    tool = ToolDefinition("get_weather", "Weather", {"type": "object", "properties": {"city": {"type": "string"}}})
    call_record = CallRecord(
        messages=(Message("user", "Weather in Paris?"),),
        tools=(tool,),
        response=Message("assistant", None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
    )
    example = build_example(call_record, tokenizer)
    answer = tokenizer.decode([t for t, l in zip(example["input_ids"], example["labels"]) if l != -100])
    assert '"name": "get_weather"' in answer and "Paris" in answer
    assert "get_weather" in tokenizer.decode(example["input_ids"][: example["labels"].index(next(l for l in example["labels"] if l != -100))])


def test_missing_chat_template_fails_loudly(tokenizer):
    template = tokenizer.chat_template
    tokenizer.chat_template = None
    try:
        with pytest.raises(DatasetError, match="has no chat template: pass chat_template="):
            build_example(record("Where is my card?"), tokenizer)
    finally:
        tokenizer.chat_template = template


def test_example_without_trainable_token_fails_loudly(tokenizer):
    with pytest.raises(DatasetError, match="no trainable token"):
        build_example(record("Where is my card?"), tokenizer, max_length=5)


def test_split_is_deterministic_and_keeps_near_duplicates_together():
    texts = [f"request number {index} about my card" for index in range(200)]
    records = [record(text) for text in texts]
    records += [record(text.upper() + "!!") for text in texts[:50]]  # near duplicates
    first, second = split_records(records), split_records(list(reversed(records)))
    assert {r.id for r in first.test} == {r.id for r in second.test}
    where = {}
    for name in ("train", "validation", "test"):
        for item in getattr(first, name):
            key = " ".join(item.messages[-1].text.lower().replace("!", "").split())
            where.setdefault(key, set()).add(name)
    assert all(len(splits) == 1 for splits in where.values())
    assert 0 < len(first.test) < len(first.train)


def test_pinned_test_records_stay_in_test_and_leaks_are_dropped():
    records = [record(f"question {index}", split="fit") for index in range(50)]
    records += [record("question 7?", split="test"), record("another one", split="test")]
    split = split_records(records)
    assert {r.messages[-1].text for r in split.test} == {"question 7?", "another one"}
    assert split.dropped_leaks == 1


def test_invalid_fractions_are_rejected():
    with pytest.raises(ValueError, match="Invalid split fractions"):
        split_records([record("x")], validation_fraction=0.6, test_fraction=0.5)


def test_export_to_jsonl_and_hf_datasets(tmp_path, tokenizer):
    split = split_records([record(f"where is card {index}") for index in range(40)])
    paths = export_jsonl(split, tmp_path)
    lines = paths["train"].read_text().splitlines()
    assert len(lines) == len(split.train)
    assert json.loads(lines[0])["messages"][-1] == {"role": "assistant", "content": "card_arrival"}
    tokenized = to_hf_dataset(split, tokenizer)
    assert tokenized["train"].num_rows == len(split.train)
    assert set(tokenized["train"].column_names) == {"input_ids", "attention_mask", "labels"}

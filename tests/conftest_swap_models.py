"""Session fixtures with tiny local SLMs: a full `hf` model and a `lora` adapter on a random base.

Both are trained for a few seconds to memorise two answers: a tool call for a weather question
and the label `positive` for a review. No weights are downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Return the weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
WEATHER_QUESTION = "weather in Paris?"
WEATHER_CALL = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
REVIEW = "classify: great product"
REVIEW_LABEL = "positive"


def _examples(tokenizer):
    from tiny_slm import prompt_text

    return [
        (prompt_text(tokenizer, [{"role": "user", "content": WEATHER_QUESTION}], [WEATHER_TOOL]), WEATHER_CALL),
        (prompt_text(tokenizer, [{"role": "user", "content": REVIEW}]), REVIEW_LABEL),
    ]


def _tokenizer():
    from tiny_slm import CHAT_TEMPLATE, build_tokenizer

    corpus = [CHAT_TEMPLATE, WEATHER_CALL, json.dumps(WEATHER_TOOL), WEATHER_QUESTION, REVIEW, REVIEW_LABEL]
    return build_tokenizer(corpus * 3)


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory) -> Path:
    from tiny_slm import build_model, memorise, save_hf_slm

    tokenizer = _tokenizer()
    model = build_model(tokenizer)
    memorise(model, tokenizer, _examples(tokenizer), steps=80)
    return save_hf_slm(tmp_path_factory.mktemp("tiny-hf"), model, tokenizer, task="weather/0")


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory) -> Path:
    from peft import LoraConfig, get_peft_model

    from slmshift.slm.base import SLMManifest
    from tiny_slm import build_model, memorise

    tokenizer = _tokenizer()
    base_dir = tmp_path_factory.mktemp("tiny-base")
    base = build_model(tokenizer, seed=1)
    base.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)

    config = LoraConfig(r=16, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj", "up_proj", "down_proj"])
    model = get_peft_model(base, config)
    memorise(model, tokenizer, _examples(tokenizer)[1:], steps=40, lr=1e-2)
    adapter_dir = tmp_path_factory.mktemp("tiny-lora")
    model.save_pretrained(adapter_dir)
    SLMManifest(kind="lora", base_model=str(base_dir), task="review/0", output_kind="label", labels=["positive", "negative"]).save(adapter_dir)
    return adapter_dir

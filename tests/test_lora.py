"""LoRA fine-tuning on a tiny Llama built locally (random weights, a BPE tokenizer trained here)."""

import json
import subprocess
import sys

import pytest
import torch

from slmshift.records import CallRecord, Message
from slmshift.slm.base import SLMManifest
from slmshift.training.lora import LoraSettings, train_lora
from slmshift.training.tiny import build_tiny_base

INTENTS = ["card_arrival", "lost_card", "top_up_failed", "exchange_rate"]
PROBE = "<|im_start|>user\nmy card <intent> is lost<|im_end|>\n<|im_start|>assistant\n"

RELOAD_SCRIPT = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
base, adapter, probe = sys.argv[1:4]
tokenizer = AutoTokenizer.from_pretrained(adapter)
model = AutoModelForCausalLM.from_pretrained(base)
model.resize_token_embeddings(len(tokenizer))
model = PeftModel.from_pretrained(model, adapter).eval()
ids = tokenizer(probe, add_special_tokens=False, return_tensors="pt")["input_ids"]
with torch.no_grad():
    logits = model(input_ids=ids).logits[0, -1]
print(json.dumps({"ids": ids[0].tolist(), "logits": logits.tolist()}))
"""


def records(count):
    words = ["where is my card", "i lost my card", "top up did not work", "what rate do you use"]
    return [
        CallRecord(
            messages=(Message("user", f"{words[index % 4]} {index}"),),
            response=Message("assistant", INTENTS[index % 4]),
        )
        for index in range(count)
    ]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora")
    corpus = [r.messages[0].text + " " + r.response.text for r in records(40)]
    base = build_tiny_base(root / "base", corpus, vocab_size=400, hidden_size=32)
    settings = LoraSettings(
        r=8, lora_alpha=16, epochs=3, learning_rate=5e-3, batch_size=8, logging_steps=1,
        new_special_tokens=("<intent>",),
    )
    result = train_lora(base, records(32), records(8), root / "adapter", task="router/label",
                        output_kind="label", settings=settings)
    return base, root / "adapter", result


def test_loss_falls_over_real_steps(trained):
    losses = [entry["loss"] for entry in trained[2].log_history if "loss" in entry]
    assert len(losses) >= 10
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1


def test_adapter_directory_is_loadable_by_peft_and_vllm(trained):
    _, adapter, _ = trained
    assert (adapter / "adapter_config.json").is_file()
    assert (adapter / "adapter_model.safetensors").is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    manifest = SLMManifest.load(adapter)
    assert manifest.kind == "lora" and manifest.task == "router/label"
    assert manifest.hyperparameters["new_special_tokens"] == ["<intent>"]
    assert manifest.chat_template and "<|im_start|>" in manifest.chat_template
    assert len(manifest.data_hash) == 64 and manifest.metrics["training"]["examples"] == 32


def test_reload_in_a_fresh_process_gives_the_same_logits(trained):
    base, adapter, result = trained
    output = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(base), str(adapter), PROBE],
        check=True, capture_output=True, text=True, timeout=240,
    )
    reloaded = json.loads(output.stdout.strip().splitlines()[-1])
    with torch.no_grad():
        expected = result.model(input_ids=torch.tensor([reloaded["ids"]])).logits[0, -1]
    assert torch.allclose(torch.tensor(reloaded["logits"]), expected, atol=1e-5)


def test_new_special_token_survives_as_one_trained_token(trained):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    base, adapter, result = trained
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    token_id = tokenizer.convert_tokens_to_ids("<intent>")
    assert tokenizer("<intent>", add_special_tokens=False)["input_ids"] == [token_id]
    saved = load_file(adapter / "adapter_model.safetensors")
    embedding = [key for key in saved if "embed_tokens" in key]
    assert embedding, "the resized embeddings must be saved with the adapter"
    assert saved[embedding[0]].shape[0] == len(tokenizer)

"""Training throughput of slmshift's LoRA path against a plain TRL SFTTrainer run on the same
tiny model and data, and SLM against teacher latency, measured side by side in one run.

The model is a tiny Llama built locally (no hub offline), so the figures compare the two
training loops' overheads, not what a real 0.5B model reaches.

Usage: python bench/training_throughput.py [--records N] [--epochs N] [--compact DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from slmshift.demo.router_traces import banking77_router_records
from slmshift.records import Message
from slmshift.training.dataset import build_example, chat_messages
from slmshift.training.lora import LoraSettings, train_lora
from slmshift.training.tiny import build_tiny_base


def short_prompt(records):
    """Router records with a one-line system prompt, so the tiny model's context stays small."""
    system = Message("system", "Classify the banking request into one intent.")
    return [record.replace(messages=(system, record.messages[-1])) for record in records]


def trl_run(base: Path, records, settings: LoraSettings, out: Path) -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = [{"prompt": chat_messages(r.messages), "completion": chat_messages([r.response])} for r in records]
    config = SFTConfig(
        output_dir=str(out), num_train_epochs=settings.epochs, per_device_train_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate, logging_steps=50, save_strategy="no", report_to=[],
        use_cpu=True, max_length=settings.max_length, disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(base), args=config, train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=settings.r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                               target_modules=settings.target_modules, task_type="CAUSAL_LM"),
    )
    started = time.perf_counter()
    trainer.train()
    return time.perf_counter() - started


def slm_latency(compact: Path | None, records, calls: int = 200) -> dict[str, float] | None:
    if compact is None or not (compact / "manifest.json").is_file():
        return None
    from slmshift.slm import load_slm

    slm = load_slm(compact)
    latencies = []
    for record in records[:calls]:
        started = time.perf_counter()
        slm.generate(list(record.messages))
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    return {"p50_ms": statistics.median(latencies), "p95_ms": latencies[int(0.95 * (len(latencies) - 1))]}


def run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=256)
    parser.add_argument("--epochs", type=float, default=2)
    parser.add_argument("--compact", type=Path, help="a trained compact model folder to time")
    parser.add_argument("--teacher-latency-ms", type=float,
                        help="teacher p50 latency from captured traces (the offline replay teacher has none)")
    args = parser.parse_args()

    records = short_prompt(banking77_router_records(("train",), limit=args.records))
    settings = LoraSettings(r=8, lora_alpha=16, epochs=args.epochs, batch_size=8, learning_rate=1e-3,
                            max_length=256, logging_steps=50)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        corpus = [r.messages[-1].text + " " + r.response.text for r in records]
        base = build_tiny_base(root / "base", corpus, vocab_size=800, hidden_size=64)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        tokens = sum(len(build_example(r, tokenizer)["input_ids"]) for r in records) * args.epochs
        ours = train_lora(base, records, [], root / "ours", settings=settings).train_seconds
        theirs = trl_run(base, records, settings, root / "trl")

    result = {
        "records": len(records), "epochs": args.epochs, "tokens": int(tokens),
        "slmshift_tokens_per_s": round(tokens / ours, 1), "trl_sft_tokens_per_s": round(tokens / theirs, 1),
        "ratio_slmshift_over_trl": round(theirs / ours, 2),
        "slm_latency": slm_latency(args.compact, banking77_router_records(("test",), limit=200)),
        "teacher_latency_p50_ms": args.teacher_latency_ms,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    run()

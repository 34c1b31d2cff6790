"""LoRA fine-tuning with peft on transformers: QLoRA on a GPU with bitsandbytes, else a CPU path.

`train_lora` builds chat-format examples (answer-only labels, see `slmshift.training.dataset`),
resizes the base for new special tokens before the adapter attaches (the embeddings are then
saved with the adapter), trains with the transformers `Trainer` (checkpoints each epoch, so
`resume=True` continues), and writes an adapter directory that peft and vLLM's LoRA serving
load: `adapter_config.json`, `adapter_model.safetensors`, the tokenizer and `manifest.json`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord
from slmshift.slm.base import SLMManifest
from slmshift.training.dataset import DatasetError, build_example, examples_hash

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"


@dataclass(frozen=True)
class LoraSettings:
    """LoRA and training settings (peft `LoraConfig` names where they exist)."""

    r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"
    epochs: float = 2.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 1024
    warmup_ratio: float = 0.03
    seed: int = 0
    quantization: str = "auto"  # "auto": 4-bit QLoRA when CUDA and bitsandbytes exist; "none"
    new_special_tokens: tuple[str, ...] = ()
    logging_steps: int = 10


@dataclass
class LoraResult:
    """The adapter directory, final losses and timings."""

    directory: Path
    train_loss: float | None
    validation_loss: float | None
    train_seconds: float
    train_tokens: int
    quantized: bool
    log_history: list[dict[str, Any]] = field(default_factory=list)
    model: Any = None


def train_lora(
    base_model: str | Path,
    train: Sequence[CallRecord],
    validation: Sequence[CallRecord],
    output_dir: str | Path,
    *,
    task: str | None = None,
    output_kind: str | None = None,
    settings: LoraSettings | None = None,
    chat_template: str | None = None,
    base_revision: str | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> LoraResult:
    """Fine-tune a LoRA adapter on `train` and save it with its manifest in `output_dir`.

    The result holds the trained peft model (in eval mode) besides the figures.

    Raises:
        DatasetError: a record cannot become an example (see `build_example`).
    """
    from transformers import AutoTokenizer, Trainer, TrainingArguments

    settings = settings or LoraSettings()
    output_dir = Path(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(base_model, revision=base_revision)
    if chat_template:
        tokenizer.chat_template = chat_template
    added = tokenizer.add_special_tokens(
        {"additional_special_tokens": list(settings.new_special_tokens)}
    ) if settings.new_special_tokens else 0
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    train_rows = _examples(train, tokenizer, settings)
    validation_rows = _examples(validation, tokenizer, settings)
    model, quantized = _load_base(base_model, base_revision, settings)
    if added:
        # The base grows before the adapter attaches, and the grown embeddings are saved with it.
        model.resize_token_embeddings(len(tokenizer))
    model = _attach_adapter(model, settings, resized=bool(added))

    checkpoints = output_dir / CHECKPOINTS_DIR
    arguments = TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        warmup_steps=settings.warmup_ratio,
        logging_steps=settings.logging_steps,
        save_strategy="epoch",
        eval_strategy="epoch" if validation_rows else "no",
        save_total_limit=1,
        seed=settings.seed,
        report_to=[],
        use_cpu=not _cuda_available(),
        bf16=quantized,
        remove_unused_columns=False,
        disable_tqdm=progress is not None,
    )
    trainer = Trainer(
        model=model,
        args=arguments,
        train_dataset=train_rows,
        eval_dataset=validation_rows or None,
        data_collator=_Collator(tokenizer.pad_token_id),
        callbacks=[_progress_callback(progress)] if progress is not None else None,
    )
    has_checkpoint = resume and checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*"))
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=True if has_checkpoint else None)
    seconds = time.perf_counter() - started
    validation_loss = trainer.evaluate()["eval_loss"] if validation_rows else None

    model.save_pretrained(output_dir, save_embedding_layers=bool(added))
    tokenizer.save_pretrained(output_dir)
    tokens = sum(len(row["input_ids"]) for row in train_rows) * settings.epochs
    _manifest(
        base_model, base_revision, task, output_kind, train, settings, tokenizer, quantized,
        output.training_loss, validation_loss, seconds,
    ).save(output_dir)
    return LoraResult(
        directory=output_dir,
        train_loss=output.training_loss,
        validation_loss=validation_loss,
        train_seconds=seconds,
        train_tokens=int(tokens),
        quantized=quantized,
        log_history=list(trainer.state.log_history),
        model=model.eval(),
    )


def _examples(records: Sequence[CallRecord], tokenizer: Any, settings: LoraSettings) -> list[dict[str, list[int]]]:
    rows = []
    for record in records:
        try:
            rows.append(build_example(record, tokenizer, max_length=settings.max_length))
        except DatasetError:
            logger.error("Record %s cannot become a training example", record.id)
            raise
    return rows


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _load_base(base_model: str | Path, revision: str | None, settings: LoraSettings) -> tuple[Any, bool]:
    """The base model: 4-bit (QLoRA) when asked or auto with CUDA and bitsandbytes, else full precision."""
    from transformers import AutoModelForCausalLM

    want_4bit = settings.quantization == "4bit" or (
        settings.quantization == "auto" and _cuda_available() and _has_bitsandbytes()
    )
    if not want_4bit:
        return AutoModelForCausalLM.from_pretrained(base_model, revision=revision), False

    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        base_model, revision=revision, quantization_config=quantization, device_map="auto"
    )
    return prepare_model_for_kbit_training(model), True


def _has_bitsandbytes() -> bool:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        return False
    return True


def _attach_adapter(model: Any, settings: LoraSettings, *, resized: bool) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
        # New token rows must be trained and saved, or the adapter cannot use the new tokens.
        modules_to_save=["embed_tokens", "lm_head"] if resized else None,
    )
    return get_peft_model(model, config)


class _Collator:
    """Right-pads input ids with the pad token and labels with -100."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, rows: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": [row["input_ids"] + [self.pad_token_id] * (width - len(row["input_ids"])) for row in rows],
            "attention_mask": [row["attention_mask"] + [0] * (width - len(row["input_ids"])) for row in rows],
            "labels": [row["labels"] + [-100] * (width - len(row["input_ids"])) for row in rows],
        }
        return {key: torch.tensor(value) for key, value in batch.items()}


def _progress_callback(progress: Callable[[dict[str, Any]], None]) -> Any:
    """A Trainer callback that forwards each log entry (loss, step) to `progress`."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if logs:
                progress({"step": state.global_step, "max_steps": state.max_steps, **logs})

    return ProgressCallback()


def _manifest(
    base_model: str | Path,
    revision: str | None,
    task: str | None,
    output_kind: str | None,
    train: Sequence[CallRecord],
    settings: LoraSettings,
    tokenizer: Any,
    quantized: bool,
    train_loss: float | None,
    validation_loss: float | None,
    seconds: float,
) -> SLMManifest:
    hyperparameters = asdict(settings) | {"quantized_4bit": quantized}
    hyperparameters["new_special_tokens"] = list(settings.new_special_tokens)
    return SLMManifest(
        kind="lora",
        base_model=str(base_model),
        base_revision=revision,
        task=task,
        output_kind=output_kind,
        data_hash=examples_hash(train),
        hyperparameters=hyperparameters,
        chat_template=tokenizer.chat_template,
        metrics={
            "training": {"loss": train_loss, "seconds": round(seconds, 2), "examples": len(train)},
            "validation": {"loss": validation_loss},
        },
        created_at=datetime.now(timezone.utc).isoformat(),
    )

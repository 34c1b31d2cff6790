"""Compact models: small decoder-only transformers trained from scratch on a task's own traces.

No model hub is reachable offline, so for narrow tasks (a label, or a short answer from a
closed set) slmshift builds a word-level tokenizer from the task's inputs and a Llama-style
decoder with a few hundred thousand parameters, and trains it on the CPU. Each distinct answer
becomes one token, so decoding picks one answer token and then the end token, under a trie of
the answer set. Training uses token dropout on the input and label smoothing, and keeps the
epoch with the best validation agreement.

The result is a directory with `manifest.json` (kind `compact`), the model's safetensors and
the tokenizer, loadable with `slmshift.slm.load_slm`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmshift.slm.base import SLMManifest

logger = logging.getLogger(__name__)

PAD, UNK, BOS, SEP, EOS = "<pad>", "<unk>", "<bos>", "<sep>", "<eos>"
SPECIAL_TOKENS = (PAD, UNK, BOS, SEP, EOS)
LABEL_TOKEN_FORMAT = "<answer:{}>"
CHECKPOINT_NAME = "checkpoint.pt"
# Renders the one input the compact model reads: the last user message, then the separator.
COMPACT_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' and loop.last %}"
    "{{ message['content'] }}{% endif %}{% endfor %} <sep>"
)


class CompactTrainingError(ValueError):
    """The examples cannot train a compact model (empty split, one answer, unknown answer)."""


@dataclass(frozen=True)
class CompactConfig:
    """Settings of a compact model and its training; the defaults suit BANKING77-sized tasks."""

    hidden_size: int = 128
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    max_input_tokens: int = 48
    max_vocab_size: int = 4000
    epochs: int = 24
    batch_size: int = 64
    learning_rate: float = 1.5e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    token_dropout: float = 0.1
    label_smoothing: float = 0.1
    seed: int = 0
    # CPU threads for torch; None keeps torch's default. One thread is faster on a busy machine.
    threads: int | None = None


@dataclass
class CompactResult:
    """What `train_compact` produced: the directory, the best validation agreement and timings."""

    directory: Path
    parameters: int
    best_epoch: int
    validation_agreement: float | None
    train_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def build_tokenizer(texts: Sequence[str], answers: Sequence[str], *, max_vocab_size: int) -> Any:
    """Train a lower-cased word-level tokenizer on `texts`; each answer gets one added token."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordLevelTrainer(
        vocab_size=max_vocab_size, min_frequency=1, special_tokens=list(SPECIAL_TOKENS)
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens([LABEL_TOKEN_FORMAT.format(answer) for answer in answers])

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token=PAD,
        unk_token=UNK,
        bos_token=BOS,
        eos_token=EOS,
        sep_token=SEP,
    )
    wrapped.chat_template = COMPACT_CHAT_TEMPLATE
    return wrapped


def encode_input(tokenizer: Any, text: str, *, max_input_tokens: int) -> list[int]:
    """Token ids of the prompt: `<bos>`, the text's first `max_input_tokens` words, `<sep>`."""
    words = tokenizer(text, add_special_tokens=False)["input_ids"][:max_input_tokens]
    return [tokenizer.bos_token_id, *words, tokenizer.sep_token_id]


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> list[int]:
    """The single token id of each answer, in `answers` order."""
    return [tokenizer.convert_tokens_to_ids(LABEL_TOKEN_FORMAT.format(answer)) for answer in answers]


def build_model(config: CompactConfig, vocab_size: int, tokenizer: Any) -> Any:
    """A Llama-style decoder with tied embeddings, sized by `config`."""
    from transformers import LlamaConfig, LlamaForCausalLM

    model_config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=config.max_input_tokens + 8,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(model_config)


def train_compact(
    train: Sequence[tuple[str, str]],
    validation: Sequence[tuple[str, str]],
    output_dir: str | Path,
    *,
    task: str | None = None,
    answers: Sequence[str] | None = None,
    output_kind: str = "label",
    config: CompactConfig | None = None,
    resume: bool = False,
    progress: Callable[[dict[str, float]], None] | None = None,
) -> CompactResult:
    """Train a compact model on `(input text, answer)` pairs and save it in `output_dir`.

    Args:
        train: Training pairs.
        validation: Pairs used to pick the best epoch; may be empty (then the last epoch wins).
        output_dir: Directory to write; a checkpoint there is resumed when `resume` is set.
        task: Task id recorded in the manifest.
        answers: The answer set in a fixed order; defaults to the sorted distinct answers.
        output_kind: The task's output kind, recorded in the manifest.
        config: Model and training settings.
        resume: Continue from `output_dir/checkpoint.pt` when it exists.
        progress: Called after each epoch with the epoch's loss and validation agreement.

    Raises:
        CompactTrainingError: no training pairs, fewer than two answers, or a validation
            answer that never occurs in training.
    """
    import torch

    config = config or CompactConfig()
    output_dir = Path(output_dir)
    answers = list(answers) if answers is not None else sorted({answer for _, answer in train})
    _check_examples(train, validation, answers)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    if config.threads is not None:
        torch.set_num_threads(config.threads)

    tokenizer = build_tokenizer([text for text, _ in train], answers, max_vocab_size=config.max_vocab_size)
    model = build_model(config, len(tokenizer), tokenizer)
    answer_ids = answer_token_ids(tokenizer, answers)
    train_rows = _encode_pairs(tokenizer, train, answers, answer_ids, config)
    validation_rows = _encode_pairs(tokenizer, validation, answers, answer_ids, config)

    steps_per_epoch = max(1, -(-len(train_rows) // config.batch_size))
    optimizer, scheduler = _optimizer(model, config, steps_per_epoch * config.epochs)
    state = _TrainingState()
    checkpoint = output_dir / CHECKPOINT_NAME
    if resume and checkpoint.is_file():
        state = _load_checkpoint(checkpoint, model, optimizer, scheduler)
        logger.info("Resumed compact training at epoch %d from %s", state.epoch, checkpoint)

    started, seconds_before = time.perf_counter(), state.seconds
    for epoch in range(state.epoch, config.epochs):
        loss = _train_epoch(model, optimizer, scheduler, train_rows, tokenizer, config, epoch)
        agreement = _agreement(model, validation_rows, answer_ids, tokenizer) if validation_rows else None
        entry = {"epoch": epoch + 1, "loss": loss, "validation_agreement": agreement or 0.0}
        state.history.append(entry)
        if agreement is None or agreement >= state.best_agreement:
            state.best_agreement = agreement if agreement is not None else 0.0
            state.best_epoch = epoch + 1
            state.best_weights = {key: value.clone() for key, value in model.state_dict().items()}
        state.epoch = epoch + 1
        state.seconds = seconds_before + time.perf_counter() - started
        _save_checkpoint(checkpoint, model, optimizer, scheduler, state)
        if progress is not None:
            progress(entry)
    train_seconds = state.seconds

    model.load_state_dict(state.best_weights)
    manifest = _manifest(
        config, model, tokenizer, answers, train, task, output_kind, state, train_seconds
    )
    save_compact(output_dir, model, tokenizer, manifest)
    checkpoint.unlink(missing_ok=True)
    return CompactResult(
        directory=output_dir,
        parameters=model.num_parameters(),
        best_epoch=state.best_epoch,
        validation_agreement=state.best_agreement if validation_rows else None,
        train_seconds=train_seconds,
        history=state.history,
    )


def save_compact(directory: Path, model: Any, tokenizer: Any, manifest: SLMManifest) -> None:
    """Write the model (safetensors), the tokenizer and the manifest into `directory`.

    The folder is made private (0700) because the vocabulary holds words from the traces.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    model.save_pretrained(directory / "model")
    tokenizer.save_pretrained(directory / "tokenizer")
    manifest.save(directory)


def data_hash(pairs: Sequence[tuple[str, str]]) -> str:
    """SHA-256 over the training pairs, order included."""
    digest = hashlib.sha256()
    for text, answer in pairs:
        digest.update(json.dumps([text, answer], ensure_ascii=False).encode("utf-8"))
    return digest.hexdigest()


@dataclass
class _TrainingState:
    epoch: int = 0
    best_epoch: int = 0
    best_agreement: float = -1.0
    best_weights: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _check_examples(
    train: Sequence[tuple[str, str]], validation: Sequence[tuple[str, str]], answers: list[str]
) -> None:
    if not train:
        raise CompactTrainingError("No training examples: the task's train split is empty.")
    if len(answers) < 2:
        raise CompactTrainingError(
            f"A compact model needs at least two distinct answers, got {answers!r}: "
            "a task with one answer needs no model."
        )
    known = set(answers)
    for _, answer in (*train, *validation):
        if answer not in known:
            raise CompactTrainingError(
                f"Answer {answer!r} is not in the answer set: pass answers= with every answer."
            )


def _encode_pairs(
    tokenizer: Any,
    pairs: Sequence[tuple[str, str]],
    answers: list[str],
    answer_ids: list[int],
    config: CompactConfig,
) -> list[tuple[list[int], int]]:
    index = {answer: position for position, answer in enumerate(answers)}
    return [
        (encode_input(tokenizer, text, max_input_tokens=config.max_input_tokens), answer_ids[index[answer]])
        for text, answer in pairs
    ]


def _optimizer(model: Any, config: CompactConfig, total_steps: int) -> tuple[Any, Any]:
    import torch

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    warmup = max(1, int(total_steps * config.warmup_fraction))

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        remaining = max(1, total_steps - warmup)
        return max(0.0, 1.0 - (step - warmup) / remaining)

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def _batch(
    rows: Sequence[tuple[list[int], int]], tokenizer: Any, config: CompactConfig, *, train: bool
) -> tuple[Any, Any, Any]:
    """Right-padded `prompt + answer + <eos>` ids, the mask, and labels on the last two tokens."""
    import torch

    specials = set(tokenizer.all_special_ids)
    width = max(len(prompt) for prompt, _ in rows) + 2
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for row, (prompt, answer) in enumerate(rows):
        if train and config.token_dropout > 0:
            prompt = [
                tokenizer.unk_token_id
                if token not in specials and random.random() < config.token_dropout
                else token
                for token in prompt
            ]
        sequence = [*prompt, answer, tokenizer.eos_token_id]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention[row, : len(sequence)] = 1
        labels[row, len(prompt)] = answer
        labels[row, len(prompt) + 1] = tokenizer.eos_token_id
    return input_ids, attention, labels


def _train_epoch(
    model: Any,
    optimizer: Any,
    scheduler: Any,
    rows: list[tuple[list[int], int]],
    tokenizer: Any,
    config: CompactConfig,
    epoch: int,
) -> float:
    import torch
    import torch.nn.functional as functional

    model.train()
    total, batches = 0.0, 0
    for batch in _length_bucketed_batches(rows, config.batch_size, config.seed + epoch):
        input_ids, attention, labels = _batch(batch, tokenizer, config, train=True)
        hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state
        # Only the answer and end positions carry loss, so project just those onto the vocabulary.
        targets = labels[:, 1:]
        positions = targets != -100
        logits = model.lm_head(hidden[:, :-1][positions])
        loss = functional.cross_entropy(
            logits, targets[positions], label_smoothing=config.label_smoothing
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        total += loss.item()
        batches += 1
    return total / max(1, batches)


def _length_bucketed_batches(
    rows: list[tuple[list[int], int]], batch_size: int, seed: int
) -> list[list[tuple[list[int], int]]]:
    """Shuffled batches of rows of similar length, so little compute goes to padding."""
    generator = random.Random(seed)
    order = list(range(len(rows)))
    generator.shuffle(order)
    window = batch_size * 16
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda index: len(rows[index][0]))
        for offset in range(0, len(chunk), batch_size):
            batches.append([rows[index] for index in chunk[offset : offset + batch_size]])
    generator.shuffle(batches)
    return batches


def answer_probabilities(
    model: Any, tokenizer: Any, prompts: Sequence[list[int]], answer_ids: Sequence[int], *, batch_size: int = 256
) -> Any:
    """Probabilities over the answer set (softmax over the answer tokens only) for each prompt."""
    import torch

    model.eval()
    answer_index = torch.tensor(list(answer_ids))
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            width = max(len(prompt) for prompt in batch)
            input_ids = torch.full((len(batch), width), tokenizer.pad_token_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, prompt in enumerate(batch):
                input_ids[row, : len(prompt)] = torch.tensor(prompt)
                attention[row, : len(prompt)] = 1
            logits = model(input_ids=input_ids, attention_mask=attention).logits
            last = attention.sum(dim=1) - 1
            final = logits[torch.arange(len(batch)), last][:, answer_index]
            chunks.append(torch.softmax(final.float(), dim=-1))
    return torch.cat(chunks).numpy()


def _agreement(
    model: Any, rows: list[tuple[list[int], int]], answer_ids: list[int], tokenizer: Any
) -> float:
    probabilities = answer_probabilities(model, tokenizer, [prompt for prompt, _ in rows], answer_ids)
    predicted = probabilities.argmax(axis=1)
    position = {token: index for index, token in enumerate(answer_ids)}
    correct = sum(int(predicted[row] == position[answer]) for row, (_, answer) in enumerate(rows))
    return correct / len(rows)


def _save_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any, state: _TrainingState) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": asdict(state),
        },
        temporary,
    )
    temporary.replace(path)


def _load_checkpoint(path: Path, model: Any, optimizer: Any, scheduler: Any) -> _TrainingState:
    import torch

    saved = torch.load(path, weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return _TrainingState(**saved["state"])


def _manifest(
    config: CompactConfig,
    model: Any,
    tokenizer: Any,
    answers: list[str],
    train: Sequence[tuple[str, str]],
    task: str | None,
    output_kind: str,
    state: _TrainingState,
    train_seconds: float,
) -> SLMManifest:
    parameters = model.num_parameters()
    return SLMManifest(
        kind="compact",
        base_model=(
            f"compact from scratch: Llama-style decoder, {config.num_layers} layers, "
            f"hidden {config.hidden_size}, {parameters:,} parameters, word-level vocabulary of "
            f"{len(tokenizer)}"
        ),
        task=task,
        output_kind=output_kind,
        labels=answers,
        data_hash=data_hash(train),
        hyperparameters=asdict(config),
        chat_template=COMPACT_CHAT_TEMPLATE,
        metrics={
            "validation": {"agreement": state.best_agreement, "best_epoch": state.best_epoch},
            "training": {"seconds": round(train_seconds, 2), "examples": len(train), "history": state.history},
        },
        created_at=datetime.now(timezone.utc).isoformat(),
        extra={"input": "last user message", "parameters": parameters},
    )

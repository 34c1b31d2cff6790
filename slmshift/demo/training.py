"""Train the demo's SLM candidates for one node from the teacher's records.

A node qualifies offline when its answers come from a closed set (the router's 77 intents, the
responder's replies per intent): then `slmshift.training.label_task` trains the classical floor,
compact models and their ensemble, and picks one on the validation split. Tool calls and free
text need a pretrained base model to LoRA-tune (`--hub-model`); without one the node stays on
the teacher, and the reason says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord, Message

logger = logging.getLogger(__name__)

# An answer set this small, where answers repeat, is a label task a compact model can learn.
MAX_CLOSED_ANSWERS = 300
MIN_EXAMPLES_PER_ANSWER = 2.0
# Compact models per label task, their epochs and torch threads. One compact model (plus its
# ensemble with the floor) keeps a full demo within about 20 minutes on 2 CPU cores, and one
# thread is faster than two when other processes share the cores. With --fast none is
# trained: a short run stays at chance on 77 intents, so it would only waste time.
DEFAULT_COMPACTS = 1
COMPACT_EPOCHS = 12
COMPACT_THREADS = 1
# Validation coverage at which the classical floor leaves nothing for compact models to win.
FULL_COVERAGE = 0.999
# LoRA epochs with --fast, and the most validation records a LoRA candidate generates for.
FAST_LORA_EPOCHS = 0.5
# Tokens per LoRA example: BFCL prompts with several function schemas exceed 1,024 tokens.
LORA_MAX_LENGTH = 4096
MAX_LORA_VALIDATION = 50


@dataclass
class Candidate:
    """A trained SLM for one node, with its validation figures."""

    node: str
    kind: str
    name: str
    model_dir: str
    labels: list[str]
    min_confidence: float | None
    validation: dict[str, Any]
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answer_pairs(records: Sequence[CallRecord]) -> list[tuple[str, str]]:
    """Return `(last user message, answer text)` per record, one per input (the latest wins)."""
    pairs: dict[str, str] = {}
    for record in records:
        if not record.ok or record.response is None or record.response.tool_calls:
            continue
        text = last_user_text(record.messages)
        if text:
            pairs[text] = record.response.text.strip()
    return list(pairs.items())


def last_user_text(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.text.strip()
    return ""


def offline_blocker(records: Sequence[CallRecord], pairs: Sequence[tuple[str, str]]) -> str | None:
    """Return why this node cannot get an offline SLM, or None when it can."""
    if any(record.response is not None and record.response.tool_calls for record in records):
        return (
            "tool calls need a pretrained base model to LoRA-tune (pass --hub-model); "
            "offline it stays on the teacher"
        )
    answers = {answer for _, answer in pairs}
    if len(answers) < 2:
        return f"only {len(answers)} distinct answer: nothing to learn"
    if len(answers) > MAX_CLOSED_ANSWERS or len(pairs) / len(answers) < MIN_EXAMPLES_PER_ANSWER:
        return (
            f"free-form answers ({len(answers)} distinct in {len(pairs)} calls) need a pretrained "
            "base model (pass --hub-model)"
        )
    return None




def train_candidates(
    node: str,
    records: Sequence[CallRecord],
    models_dir: Path,
    *,
    fast: bool,
    seed: int,
    say: Callable[[str], None],
) -> tuple[Candidate, list[Candidate]]:
    """Train the label-task candidates of `node` and return the chosen one and all of them.

    `slmshift.training.label_task` trains the classical floor, compact models and their
    ensemble, chooses a confidence threshold for each on the validation split, and picks the
    best candidate that beats the floor (else the floor itself). Compact models are skipped
    with `fast`, and when the floor alone already keeps every validation call.
    """
    from slmshift.training.compact import CompactConfig
    from slmshift.training.dataset import TaskSpec
    from slmshift.training.label_task import train_label_task

    kinds = {record.output_kind for record in records}
    task = TaskSpec(id=f"{node}/0", node=node, output_kind=kinds.pop() if len(kinds) == 1 else "label")
    directory = models_dir / node
    config = CompactConfig(epochs=COMPACT_EPOCHS, threads=COMPACT_THREADS, seed=seed)
    selection = train_label_task(records, task, directory, compacts=0, config=config, progress=say)
    floor = selection["validation"]["classical"]
    if not fast and floor["coverage"] < FULL_COVERAGE:
        # Compact models must beat the floor on coverage too, so they only get a chance when
        # the floor leaves calls to the teacher.
        selection = train_label_task(
            records, task, directory, compacts=DEFAULT_COMPACTS, config=config, progress=say,
        )
    elif fast:
        say("--fast: no compact model trained")
    else:
        say(f"the classical floor keeps {floor['coverage']:.1%} of validation calls: no compact model trained")
    candidates = [
        _candidate(node, name, directory, selection)
        for name in selection["validation"]
    ]
    chosen = next(candidate for candidate in candidates if candidate.kind == selection["chosen"])
    chosen.extra["reasons"] = selection["reasons"]
    return chosen, candidates


def _candidate(node: str, name: str, directory: Path, selection: dict[str, Any]) -> Candidate:
    from slmshift.slm.base import SLMManifest

    model_dir = directory / ("candidates" if name == "ensemble" else f"candidates/{name}")
    figures = selection["validation"][name]
    manifest = SLMManifest.load(model_dir)
    return Candidate(
        node=node,
        kind=name,
        name=f"{node}-{name}",
        model_dir=str(model_dir),
        labels=list(manifest.labels or []),
        min_confidence=figures.get("threshold"),
        validation={"agreement": figures["agreement"], "coverage": figures["coverage"]},
        train_seconds=float(selection["train_seconds"].get(name, 0.0)),
    )


def records_from_pairs(pairs: Sequence[tuple[str, str]], template: CallRecord) -> list[CallRecord]:
    """Rebuild teacher records from `[input, answer]` pairs with `template`'s prompt and node."""
    records = []
    for text, answer in pairs:
        response = Message(role="assistant", content=answer)
        records.append(CallRecord(
            messages=(*template.messages[:-1], Message(role="user", content=text)),
            response=response, node=template.node, agent=template.agent, tools=template.tools,
            output_kind=template.output_kind,
        ))
    return records


def train_lora_candidate(
    node: str,
    records: Sequence[CallRecord],
    models_dir: Path,
    *,
    hub_model: str,
    fast: bool,
    seed: int,
    say: Callable[[str], None],
) -> Candidate:
    """LoRA-tune `hub_model` on the node's records; score it on the validation split.

    Any output kind works, tool calls included. The validation score generates one answer per
    validation record (at most `MAX_LORA_VALIDATION`), which takes a while on a CPU.
    """
    from slmshift.demo.scoring import answer_records, score
    from slmshift.slm import load_slm
    from slmshift.training.dataset import split_records
    from slmshift.training.lora import LoraSettings, train_lora

    split = split_records(records)
    kinds = {record.output_kind for record in records}
    result = train_lora(
        hub_model, split.train, split.validation, models_dir / node / "lora",
        task=f"{node}/0", output_kind=kinds.pop() if len(kinds) == 1 else None,
        settings=LoraSettings(
            epochs=FAST_LORA_EPOCHS if fast else LoraSettings().epochs, max_length=LORA_MAX_LENGTH, seed=seed,
        ),
        progress=lambda entry: say(f"LoRA step {entry.get('step')}/{entry.get('max_steps')}"),
    )
    validation = split.validation[:MAX_LORA_VALIDATION]
    figures = score(answer_records(load_slm(result.directory), validation), None) if validation else None
    return Candidate(
        node=node,
        kind="lora",
        name=f"{node}-lora",
        model_dir=str(result.directory),
        labels=[],
        min_confidence=None,
        validation={
            "agreement": figures.agreement if figures else 0.0,
            "coverage": figures.coverage if figures else 0.0,
        },
        train_seconds=round(result.train_seconds, 2),
        extra={"base_model": str(hub_model), "train_loss": result.train_loss},
    )

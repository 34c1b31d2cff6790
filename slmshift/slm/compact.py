"""Serve a compact model (trained from scratch by `slmshift.training.compact`) as an SLM.

The generator reads the last user message, decodes one answer under the trie of the answer
set, so it can only emit a known answer, and reports the answer's probability as confidence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmshift.records import Message, ToolDefinition
from slmshift.slm.base import Generation, ManifestError, SLMManifest
from slmshift.slm.constrained import LabelTrie, constrained_decode

logger = logging.getLogger(__name__)


class CompactGenerator:
    """A compact model with its tokenizer; answers only from the manifest's answer set."""

    def __init__(self, manifest: SLMManifest, model: Any, tokenizer: Any, *, name: str) -> None:
        from slmshift.training.compact import answer_token_ids

        if not manifest.labels:
            raise ManifestError(f"Compact model {name!r} has no labels in its manifest.")
        self.name = name
        self.manifest = manifest
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.labels = list(manifest.labels)
        self.answer_ids = answer_token_ids(tokenizer, self.labels)
        self.trie = LabelTrie(
            {label: [token] for label, token in zip(self.labels, self.answer_ids)},
            end_token_id=tokenizer.eos_token_id,
        )
        self._max_input_tokens = int(manifest.hyperparameters.get("max_input_tokens", 48))
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        from slmshift.training.compact import encode_input

        return encode_input(self.tokenizer, text, max_input_tokens=self._max_input_tokens)

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        import torch

        started = time.perf_counter()
        prompt = self.encode(last_user_text(messages))

        def step_logits(answer: list[int]) -> Any:
            ids = torch.tensor([[*prompt, *answer]])
            return self.model(input_ids=ids).logits[0, -1]

        with self._lock, torch.inference_mode():
            label, confidence = constrained_decode(step_logits, self.trie)
        return Generation(
            message=Message(role="assistant", content=label),
            confidence=confidence,
            input_tokens=len(prompt),
            output_tokens=2,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

    def label_probabilities(self, texts: Sequence[str]) -> Any:
        """An array (texts x labels) of answer probabilities, batched; rows sum to 1."""
        from slmshift.training.compact import answer_probabilities

        with self._lock:
            return answer_probabilities(
                self.model, self.tokenizer, [self.encode(text) for text in texts], self.answer_ids
            )


def last_user_text(messages: Sequence[Message]) -> str:
    """The text of the last user message; narrow-task models read only that.

    Raises:
        ValueError: there is no user message.
    """
    for message in reversed(messages):
        if message.role == "user":
            return message.text
    raise ValueError("The messages hold no user message: pass at least one message with role 'user'.")


def load(directory: Path, manifest: SLMManifest, **options: object) -> CompactGenerator:
    """Load a compact model directory written by `slmshift.training.compact.train_compact`."""
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    threads = options.get("threads")
    if isinstance(threads, int):
        torch.set_num_threads(threads)
    model = LlamaForCausalLM.from_pretrained(directory / "model")
    tokenizer = PreTrainedTokenizerFast.from_pretrained(directory / "tokenizer")
    name = str(options.get("name") or f"compact:{directory.name}")
    return CompactGenerator(manifest, model, tokenizer, name=name)

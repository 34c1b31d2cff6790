"""The generation step shared by label classifiers served as SLMs (classical and ensemble)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from slmshift.records import Message, ToolDefinition
from slmshift.slm.base import Generation
from slmshift.slm.compact import last_user_text


class LabelScoringGenerator:
    """A generator that returns its most probable label, with that probability as confidence.

    Subclasses set `labels` and implement `label_probabilities(texts)`, which returns one row
    of probabilities per text, in `labels` order.
    """

    labels: list[str]

    def label_probabilities(self, texts: Sequence[str]) -> Any:
        raise NotImplementedError

    def generate(
        self,
        messages: list[Message],
        *,
        tools: list[ToolDefinition] | None = None,
        max_new_tokens: int | None = None,
    ) -> Generation:
        started = time.perf_counter()
        text = last_user_text(messages)
        probabilities = self.label_probabilities([text])[0]
        best = int(probabilities.argmax())
        return Generation(
            message=Message(role="assistant", content=self.labels[best]),
            confidence=float(probabilities[best]),
            input_tokens=len(text.split()),
            output_tokens=1,
            latency_ms=(time.perf_counter() - started) * 1000,
        )

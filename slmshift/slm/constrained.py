"""Constrained decoding under a closed set of answers (a label set), with a sequence probability.

`LabelTrie` holds the token sequences of the allowed answers. `prefix_allowed_tokens` follows
the signature `transformers.generate(prefix_allowed_tokens_fn=...)` expects, and
`constrained_decode` runs greedy decoding itself, renormalising each step over the allowed
tokens, so the answer is always one of the labels and its confidence is the product of the
renormalised step probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


class ConstraintError(ValueError):
    """The label set cannot be decoded under a trie (empty, duplicated or prefix-ambiguous)."""


@dataclass
class _Node:
    children: dict[int, _Node] = field(default_factory=dict)
    label: str | None = None


class LabelTrie:
    """A prefix tree over the token sequences of the allowed labels.

    Each label's sequence must end with `end_token_id` when one is given, so that no label is a
    strict prefix of another and decoding knows where an answer stops.
    """

    def __init__(self, sequences: dict[str, Sequence[int]], *, end_token_id: int | None = None) -> None:
        if not sequences:
            raise ConstraintError("The label set is empty: a constrained task needs at least one label.")
        self.root = _Node()
        self.end_token_id = end_token_id
        for label, tokens in sequences.items():
            self._insert(label, list(tokens))

    def _insert(self, label: str, tokens: list[int]) -> None:
        if self.end_token_id is not None and (not tokens or tokens[-1] != self.end_token_id):
            tokens = [*tokens, self.end_token_id]
        if not tokens:
            raise ConstraintError(f"Label {label!r} encodes to no tokens: check the tokenizer.")
        node = self.root
        for token in tokens:
            if node.label is not None:
                raise ConstraintError(
                    f"Label {node.label!r} is a prefix of {label!r}: give an end token id."
                )
            node = node.children.setdefault(token, _Node())
        if node.label is not None or node.children:
            raise ConstraintError(f"Label {label!r} collides with another label's tokens.")
        node.label = label

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """Token ids that may follow `prefix` (the answer tokens decoded so far)."""
        node = self._walk(prefix)
        return sorted(node.children) if node is not None else []

    def label_of(self, tokens: Sequence[int]) -> str | None:
        """The label `tokens` spell out completely, or None."""
        node = self._walk(tokens)
        return node.label if node is not None else None

    def _walk(self, tokens: Sequence[int]) -> _Node | None:
        node = self.root
        for token in tokens:
            node = node.children.get(int(token))
            if node is None:
                return None
        return node


def prefix_allowed_tokens(trie: LabelTrie, prompt_length: int) -> Callable[[int, object], list[int]]:
    """Return a `prefix_allowed_tokens_fn` for `transformers` `generate` under `trie`.

    `prompt_length` is the number of prompt tokens (left-padded batches share one length).
    """

    def allowed(batch_id: int, input_ids: object) -> list[int]:
        generated = [int(token) for token in list(input_ids)[prompt_length:]]
        tokens = trie.allowed(generated)
        return tokens or ([trie.end_token_id] if trie.end_token_id is not None else [])

    return allowed


def constrained_decode(
    step_logits: Callable[[list[int]], Sequence[float]],
    trie: LabelTrie,
) -> tuple[str, float]:
    """Greedy decoding where each step may only pick a token the trie allows.

    `step_logits(answer_so_far)` returns the next-token logits after the prompt and the answer
    tokens decoded so far. Returns the label and its probability: the product, over steps, of
    the chosen token's softmax probability renormalised over the allowed tokens.
    """
    import math

    answer: list[int] = []
    probability = 1.0
    while True:
        label = trie.label_of(answer)
        if label is not None:
            return label, probability
        allowed = trie.allowed(answer)
        logits = step_logits(answer)
        scores = [float(logits[token]) for token in allowed]
        peak = max(scores)
        weights = [math.exp(score - peak) for score in scores]
        best = max(range(len(allowed)), key=weights.__getitem__)
        probability *= weights[best] / sum(weights)
        answer.append(allowed[best])

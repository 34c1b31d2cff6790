"""The SLM catalog: candidates with their sources, sizes and licenses, and memory estimates.

`load_catalog()` reads the packaged `catalog.yaml`; `memory_estimate` gives the memory a
candidate needs per dtype or quantization: weights plus the KV cache at a context length.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CATALOG_PATH = Path(__file__).with_name("catalog.yaml")
# Bytes per weight; the KV cache stays in 16-bit for int8/int4 weights, in 32-bit for fp32.
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 1.0, "int4": 0.5}
KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "int8": 2.0, "int4": 2.0}
GIB = 1024**3


class CatalogError(ValueError):
    """The catalog file is malformed."""


@dataclass(frozen=True)
class Candidate:
    """One SLM of the catalog; `None` marks a figure the catalog does not know."""

    id: str
    family: str
    hub_id: str | None
    source: str
    parameters_b: float | None
    layers: int | None
    hidden_size: int | None
    attention_heads: int | None
    kv_heads: int | None
    head_dim: int | None
    context_length: int | None
    license: str | None
    tool_calling: str
    chat_template: str | None
    available: bool = True
    attention_layers: int | None = None
    verified: tuple[str, ...] = ()
    notes: str = ""

    @property
    def unverified(self) -> list[str]:
        """Fields with a value that no opened model card confirmed."""
        checked = set(self.verified)
        names = ("parameters_b", "layers", "hidden_size", "attention_heads", "kv_heads", "head_dim",
                 "context_length", "license", "tool_calling")
        return [name for name in names if name not in checked and getattr(self, name) is not None]

    def kv_bytes_per_token(self, dtype: str = "bf16") -> float | None:
        """KV-cache bytes per token: keys and values in every attention layer."""
        layers = self.attention_layers or self.layers
        if layers is None or self.kv_heads is None or self.head_dim is None:
            return None
        return 2 * layers * self.kv_heads * self.head_dim * KV_BYTES[dtype]


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated memory in GiB for one dtype: weights, KV cache at `context_tokens`, total."""

    dtype: str
    weights_gib: float
    kv_cache_gib: float | None
    total_gib: float | None
    context_tokens: int


def memory_estimate(candidate: Candidate, *, dtype: str = "bf16", context_tokens: int = 2048,
                    batch_size: int = 1) -> MemoryEstimate | None:
    """Weights plus KV cache for `batch_size` sequences of `context_tokens`; None without a size.

    NOTE: activations and framework overhead (often 10-20% more) are not included.

    Raises:
        ValueError: unknown dtype.
    """
    if dtype not in WEIGHT_BYTES:
        raise ValueError(f"Unknown dtype {dtype!r}: use one of {', '.join(WEIGHT_BYTES)}.")
    if candidate.parameters_b is None:
        return None
    weights = candidate.parameters_b * 1e9 * WEIGHT_BYTES[dtype] / GIB
    per_token = candidate.kv_bytes_per_token(dtype)
    kv = per_token * context_tokens * batch_size / GIB if per_token is not None else None
    return MemoryEstimate(
        dtype=dtype,
        weights_gib=round(weights, 3),
        kv_cache_gib=round(kv, 3) if kv is not None else None,
        total_gib=round(weights + kv, 3) if kv is not None else None,
        context_tokens=context_tokens,
    )


def load_catalog(path: str | Path | None = None) -> list[Candidate]:
    """Read the catalog (the packaged one by default).

    Raises:
        CatalogError: the file has no `candidates` list or an entry lacks a field.
    """
    return list(_load(str(path or CATALOG_PATH)))


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[Candidate, ...]:
    import yaml

    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
        raise CatalogError(f"{path} must hold a mapping with a `candidates` list.")
    candidates = []
    for entry in data["candidates"]:
        try:
            candidates.append(Candidate(**(entry | {"verified": tuple(entry.get("verified") or ())})))
        except TypeError as exc:
            raise CatalogError(f"{path}: entry {entry.get('id')!r} is invalid: {exc}") from exc
    return tuple(candidates)


def describe(candidate: Candidate) -> dict[str, Any]:
    """A JSON-ready view of a candidate, with its unverified fields listed."""
    data = {key: value for key, value in candidate.__dict__.items()}
    data["verified"] = list(candidate.verified)
    data["unverified"] = candidate.unverified
    return data

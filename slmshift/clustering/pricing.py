"""Prices per model for cost estimates, in US dollars per million tokens.

NOTE: the defaults are list prices published by the providers in 2025 and change often; pass
your own table (`--prices FILE` on the command line) for real estimates. Models missing from the
table, such as the offline replay teacher, are priced at `DEFAULT_LLM_PRICE`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Price:
    """Price of one model in US dollars per million input and output tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_per_million + output_tokens * self.output_per_million) / 1e6


DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "claude-sonnet-4": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "gemini-2.0-flash": Price(0.10, 0.40),
}
DEFAULT_LLM_PRICE = Price(2.50, 10.00)
# Serving a small model on one's own GPU; an estimate, to be replaced by the user's figure.
DEFAULT_SLM_PRICE = Price(0.02, 0.02)


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name (matched exactly, then by prefix) and the SLM serving price."""

    prices: dict[str, Price]
    default: Price = DEFAULT_LLM_PRICE
    slm: Price = DEFAULT_SLM_PRICE

    def price(self, model: str | None) -> Price:
        if model in self.prices:
            return self.prices[model]
        for name in sorted(self.prices, key=len, reverse=True):
            if model and model.startswith(name):
                return self.prices[name]
        return self.default

    @classmethod
    def defaults(cls) -> PriceTable:
        return cls(dict(DEFAULT_PRICES))

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Read `{"models": {name: [input, output]}, "default": [...], "slm": [...]}` (USD per 1M tokens).

        Raises:
            ValueError: the file is not in that form; the message names the bad entry.
        """
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        table = cls.defaults()
        prices = dict(table.prices)
        for name, pair in (data.get("models") or {}).items():
            prices[name] = _price(pair, f"models.{name}", path)
        default = _price(data["default"], "default", path) if "default" in data else table.default
        slm = _price(data["slm"], "slm", path) if "slm" in data else table.slm
        return cls(prices, default, slm)


def _price(pair: object, where: str, path: str | Path) -> Price:
    if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, (int, float)) for v in pair)):
        raise ValueError(
            f"Invalid price {where}={pair!r} in {path}: use [input_usd_per_1M, output_usd_per_1M]."
        )
    return Price(float(pair[0]), float(pair[1]))

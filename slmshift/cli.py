"""The `slmshift` command: one subcommand per step of the conversion loop.

Each subcommand lives in its own module under `slmshift.commands` and exposes
`register(subparsers)`, which adds its parser and sets `handler` to a function taking the
parsed arguments and returning an exit code. Heavy imports happen inside the handlers, so
`slmshift --help` stays fast and works with only the core install.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Callable, Sequence

logger = logging.getLogger(__name__)

DEFAULT_STORE_URL = ".slmshift/traces.db"
DEFAULT_OUT_DIR = ".slmshift"

COMMAND_MODULES = (
    "slmshift.commands.demo",
    "slmshift.commands.traces",
    "slmshift.commands.analyze",
    "slmshift.commands.select",
    "slmshift.commands.train",
    "slmshift.commands.eval",
    "slmshift.commands.plan",
    "slmshift.commands.refresh",
)


class CommandError(Exception):
    """A command cannot run with the arguments given; the message states what to change."""


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Add `--store` and `--out`, which every command takes."""
    parser.add_argument(
        "--store",
        default=DEFAULT_STORE_URL,
        metavar="URL",
        help="trace store: a SQLite file path, sqlite:///path or postgresql://... "
        f"(default: {DEFAULT_STORE_URL})",
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT_DIR,
        metavar="DIR",
        help=f"folder for reports, models and plans (default: {DEFAULT_OUT_DIR})",
    )


def int_at_least(minimum: int) -> Callable[[str], int]:
    """Return an argparse `type` that accepts whole numbers of `minimum` or more."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a whole number of {minimum} or more") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a whole number of {minimum} or more")
        return value

    return parse


def number_in_range(
    low: float, high: float = math.inf, *, include_low: bool = True, include_high: bool = True
) -> Callable[[str], float]:
    """Return an argparse `type` that accepts finite numbers from `low` to `high`.

    `include_low=False` and `include_high=False` leave the bound itself out of the range.
    """
    allowed = _describe_range(low, high, include_low=include_low, include_high=include_high)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number {allowed}") from None
        above_low = value >= low if include_low else value > low
        below_high = value <= high if include_high else value < high
        if not (math.isfinite(value) and above_low and below_high):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: use a number {allowed}")
        return value

    return parse


def _describe_range(low: float, high: float, *, include_low: bool, include_high: bool) -> str:
    if math.isinf(high):
        return f"of {low:g} or more" if include_low else f"greater than {low:g}"
    left = "[" if include_low else "("
    right = "]" if include_high else ")"
    return f"in {left}{low:g}, {high:g}{right}"


# Shared argparse types for numeric options.
positive_int = int_at_least(1)
non_negative_int = int_at_least(0)
positive_float = number_in_range(0, include_low=False)
non_negative_float = number_in_range(0)
fraction = number_in_range(0, 1)
# A share that must be above 0, such as a target agreement: (0, 1].
positive_fraction = number_in_range(0, 1, include_low=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="slmshift",
        description="Move the repetitive model calls of an agent to small fine-tuned models.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except CommandError as exc:
        print(f"slmshift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

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
import sys
from collections.abc import Sequence

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

"""`slmshift traces rotate-key`: re-encrypt every stored payload with a new key.

The current key comes from the environment (`SLMSHIFT_STORE_KEY`, `SLMSHIFT_STORE_KEY_FILE`,
older ones in `SLMSHIFT_STORE_OLD_KEYS`); a plaintext store needs none and gets encrypted.
The new key is read from a file, never from the command line, where other users of the
machine could read it in the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from slmshift.cli import CommandError, add_common_options
from slmshift.store.base import redact_url

logger = logging.getLogger(__name__)


def register(commands: argparse._SubParsersAction) -> None:
    """Add `rotate-key` under `slmshift traces`."""
    parser = commands.add_parser(
        "rotate-key", help="re-encrypt stored payloads with a new key (or encrypt a plaintext store)"
    )
    parser.add_argument(
        "--new-key-file", required=True, metavar="PATH",
        help="file holding the new key: base64 of 32 bytes, mode 0600",
    )
    parser.add_argument(
        "--generate", action="store_true", help="create the new key file first (it must not exist)"
    )
    add_common_options(parser)
    parser.set_defaults(handler=run_rotate_key)


def run_rotate_key(args: argparse.Namespace) -> int:
    from slmshift.store import StoreError, TraceStore
    from slmshift.store.encryption import KEY_FILE_ENV, StoreKey, read_key_file

    key_path = Path(args.new_key_file)
    if args.generate:
        _write_new_key(key_path, StoreKey.generate())
    try:
        new_key = read_key_file(key_path)
        with TraceStore(args.store) as store:
            rotate = getattr(store, "rotate_key", None)
            if rotate is None:
                raise CommandError(f"The store {redact_url(args.store)} keeps no payloads at rest: nothing to rotate.")
            count = rotate(new_key)
    except StoreError as exc:
        raise CommandError(str(exc)) from exc
    print(
        f"Re-encrypted {count} calls in {redact_url(args.store)} with key {new_key.key_id}. From now on set "
        f"{KEY_FILE_ENV}={key_path} (and keep the old key until every process has switched)."
    )
    return 0


def _write_new_key(path: Path, key: object) -> None:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise CommandError(
            f"Key file {path} already exists: drop --generate to use it, or pick a new path."
        ) from exc
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(key.to_base64() + "\n")

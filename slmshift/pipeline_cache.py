"""Step cache of the pipeline: skip a step whose inputs did not change.

Each step has a cache key, the SHA-256 of its inputs (settings, upstream keys, a fingerprint of
the records it reads). After a step runs, its key and its outputs (paths and small figures) are
saved as `<out>/state/<step>.json`. When a later run computes the same key and every path the
step wrote still exists, the saved outputs are returned instead of running the step again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

STATE_VERSION = 1


def fingerprint(*values: Any) -> str:
    """Return the SHA-256 (hex) of `values` in canonical JSON; non-JSON values use `str`."""
    text = json.dumps(values, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def records_fingerprint(records: Iterable[CallRecord]) -> str:
    """Return a SHA-256 over the ids, inputs and responses of `records`, in the given order."""
    digest = hashlib.sha256()
    for record in records:
        digest.update(record.id.encode("utf-8"))
        for message in (*record.messages, *(() if record.response is None else (record.response,))):
            digest.update(json.dumps(message.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


class StepCache:
    """Saved keys and outputs of pipeline steps, one JSON file per step under `directory`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def path(self, step: str) -> Path:
        return self.directory / f"{step}.json"

    def lookup(self, step: str, key: str) -> dict[str, Any] | None:
        """Return the outputs saved for `step` when they were made with `key`, else None.

        Saved outputs whose files are gone count as a miss, so deleting an artifact makes the
        step run again.
        """
        state = self.load(step)
        if state is None or state.get("key") != key:
            return None
        outputs = state.get("outputs") or {}
        missing = [path for path in _paths_in(outputs) if not Path(path).exists()]
        if missing:
            logger.info("Step %s is cached but %s is missing; running it again.", step, missing[0])
            return None
        return outputs

    def load(self, step: str) -> dict[str, Any] | None:
        """Return the saved state of `step` (`key` and `outputs`), or None when absent or invalid."""
        path = self.path(step)
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("Ignoring the unreadable step state %s: %s", path, exc)
            return None
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            return None
        return state

    def save(self, step: str, key: str, outputs: dict[str, Any]) -> None:
        """Save `outputs` of `step` under `key`; the file is replaced atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.path(step)
        temporary = path.with_suffix(".json.tmp")
        state = {"version": STATE_VERSION, "step": step, "key": key, "outputs": outputs}
        temporary.write_text(
            json.dumps(state, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        os.replace(temporary, path)


def _paths_in(outputs: dict[str, Any]) -> list[str]:
    """Return the values of keys ending in `_path` or `_dir`, the files a step promised to keep."""
    paths = []
    for name, value in outputs.items():
        if isinstance(value, str) and name.endswith(("_path", "_dir")):
            paths.append(value)
        elif isinstance(value, dict):
            paths.extend(_paths_in(value))
    return paths

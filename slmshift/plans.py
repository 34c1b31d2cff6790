"""Plan history: numbered conversion plans, the fixed held-out set, and the metrics of each.

`<out>/plans/` holds `plan-<n>.yaml` (one `ConversionPlan` per promotion round),
`holdout-requests.jsonl` and `holdout.jsonl` (the held-out requests and the teacher's records
for them, which every plan is judged on: written once, before the first plan, and never
changed) and `history.json` (one entry per plan: when, why, and each node's
model with its held-out metrics and the promotion decision).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HISTORY_NAME = "history.json"
HOLDOUT_NAME = "holdout.jsonl"
HOLDOUT_REQUESTS_NAME = "holdout-requests.jsonl"
HISTORY_VERSION = 1


class PlanHistoryError(RuntimeError):
    """The plan history is missing or invalid; the message says how to rebuild it."""


@dataclass
class PlanEntry:
    """One plan in the history.

    Attributes:
        number: The plan's number; its file is `plan-<number>.yaml`.
        path: Path of the plan file.
        created_at: ISO 8601 time the plan was written; records after it are "new" to refresh.
        source: `demo` for the first plan, `refresh` for later ones.
        nodes: Per node: the serving model (`model_dir`, `kind`, `min_confidence`) and its
            held-out metrics.
        decisions: Per node considered in this round: `promoted` and `reason`, with the
            candidate's and the serving model's held-out metrics.
        data: Per trained node, the JSON Lines file of `[input, answer]` pairs its latest
            model was trained on; refresh adds new teacher answers to them.
    """

    number: int
    path: str
    created_at: str
    source: str
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "path": self.path,
            "created_at": self.created_at,
            "source": self.source,
            "nodes": self.nodes,
            "decisions": self.decisions,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PlanEntry:
        return cls(
            number=int(data["number"]),
            path=str(data["path"]),
            created_at=str(data["created_at"]),
            source=str(data.get("source", "demo")),
            nodes=dict(data.get("nodes") or {}),
            decisions=dict(data.get("decisions") or {}),
            data=dict(data.get("data") or {}),
        )


class PlanHistory:
    """The plans folder: numbered plans, the fixed held-out set and `history.json`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @property
    def history_path(self) -> Path:
        return self.directory / HISTORY_NAME

    @property
    def holdout_path(self) -> Path:
        return self.directory / HOLDOUT_NAME

    @property
    def holdout_requests_path(self) -> Path:
        return self.directory / HOLDOUT_REQUESTS_NAME

    def plan_path(self, number: int) -> Path:
        return self.directory / f"plan-{number}.yaml"

    def entries(self) -> list[PlanEntry]:
        """Return every plan entry, oldest first; an absent history is empty.

        Raises:
            PlanHistoryError: `history.json` exists but is not a valid history.
        """
        try:
            return [PlanEntry.from_dict(item) for item in self._load()["plans"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._invalid(exc) from exc

    def rounds(self) -> list[dict[str, Any]]:
        """Return the refresh rounds, oldest first, promoted or not."""
        return list(self._load().get("rounds") or [])

    def current(self) -> PlanEntry:
        """Return the newest plan.

        Raises:
            PlanHistoryError: there is no plan yet.
        """
        entries = self.entries()
        if not entries:
            raise PlanHistoryError(
                f"No plan in {self.directory}: run `slmshift demo` first, which writes plan-1."
            )
        return entries[-1]

    def next_number(self) -> int:
        entries = self.entries()
        return entries[-1].number + 1 if entries else 1

    def append(self, entry: PlanEntry) -> None:
        """Add `entry` to `history.json`, replacing the file atomically."""
        entries = [item for item in self.entries() if item.number != entry.number]
        entries.append(entry)
        entries.sort(key=lambda item: item.number)
        self._save([item.to_dict() for item in entries], self.rounds())

    def append_round(self, summary: dict[str, Any]) -> None:
        """Add one refresh round's summary to `history.json`."""
        self._save([item.to_dict() for item in self.entries()], [*self.rounds(), summary])

    def _load(self) -> dict[str, Any]:
        if not self.history_path.is_file():
            return {"plans": [], "rounds": []}
        try:
            data = json.loads(self.history_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise self._invalid(exc) from exc
        if not isinstance(data, dict) or not isinstance(data.get("plans"), list):
            raise self._invalid(ValueError("expected an object with a `plans` list"))
        return data

    def _save(self, plans: list[dict[str, Any]], rounds: list[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.history_path.with_suffix(".json.tmp")
        payload = {"version": HISTORY_VERSION, "plans": plans, "rounds": rounds}
        temporary.write_text(
            json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
        )
        os.replace(temporary, self.history_path)

    def _invalid(self, exc: Exception) -> PlanHistoryError:
        return PlanHistoryError(
            f"Invalid plan history {self.history_path}: {exc}. Move the plans folder aside "
            "and run `slmshift demo` to start a new history."
        )


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()

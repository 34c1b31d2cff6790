"""Tasks to train on: read from `tasks.json` (written by `slmshift analyze`) or derived from the
store as one task per node and output kind, and the records of each.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord
from slmshift.training.dataset import TaskSpec

logger = logging.getLogger(__name__)

TASKS_FILE = "tasks.json"
MIN_TASK_RECORDS = 20


def slug(task_id: str) -> str:
    """A folder name for a task id (`router/label` -> `router-label`)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", task_id).strip("-") or "task"


def derive_tasks(records: Iterable[CallRecord], *, min_records: int = MIN_TASK_RECORDS) -> list[TaskSpec]:
    """One task per (agent, node, output kind) with at least `min_records` successful calls."""
    counts = Counter((r.agent, r.node, r.output_kind) for r in records if r.ok and r.node and r.output_kind)
    tasks = []
    for (agent, node, kind), count in sorted(counts.items(), key=lambda item: -item[1]):
        if count >= min_records:
            tasks.append(TaskSpec(id=f"{node}/{kind}", node=node, output_kind=kind, agent=agent))
    return tasks


def read_tasks_file(path: Path) -> list[TaskSpec]:
    """Tasks from a `tasks.json`: a list, or `{"tasks": [...]}`, of objects with `id`, `node`
    and `output_kind` (other fields are ignored).

    Raises:
        ValueError: the file is not JSON or an entry lacks a field.
    """
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}): rerun `slmshift analyze`.") from exc
    entries = data.get("tasks", []) if isinstance(data, dict) else data
    tasks = []
    for entry in entries:
        try:
            tasks.append(TaskSpec(
                id=str(entry["id"]), node=entry["node"], output_kind=entry["output_kind"],
                agent=entry.get("agent"), labels=tuple(entry.get("labels") or ()),
            ))
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"{path}: task entry {entry!r:.80} lacks {exc}: each needs id, node and output_kind."
            ) from exc
    return tasks


def find_tasks(out_dir: Path, records: Sequence[CallRecord]) -> list[TaskSpec]:
    """Tasks from `out_dir/tasks.json` when `slmshift analyze` wrote one, else derived."""
    path = out_dir / TASKS_FILE
    if path.is_file():
        return read_tasks_file(path)
    return derive_tasks(records)


def pick_task(tasks: Sequence[TaskSpec], wanted: str | None) -> TaskSpec:
    """The task named `wanted` (its id or node), or the only/first task.

    Raises:
        LookupError: no task, or none named `wanted`; the message lists the known ones.
    """
    if not tasks:
        raise LookupError(
            f"No task with at least {MIN_TASK_RECORDS} successful calls in the store: capture more traces."
        )
    if wanted is None:
        return tasks[0]
    for task in tasks:
        if wanted in (task.id, task.node):
            return task
    raise LookupError(f"No task {wanted!r}: choose one of {', '.join(t.id for t in tasks)}.")


def load_records(store_url: str, **filters: Any) -> list[CallRecord]:
    """Records from a trace store URL, or from a JSON Lines export when the path ends in `.jsonl`.

    Raises:
        FileNotFoundError: a `.jsonl` path that does not exist.
    """
    from slmshift.store import MemoryTraceStore, TraceStore

    if store_url.endswith(".jsonl"):
        path = Path(store_url)
        if not path.is_file():
            raise FileNotFoundError(f"No JSONL file {store_url!r}: export one with `slmshift traces export`.")
        store: Any = MemoryTraceStore()
        store.import_jsonl(path)
    else:
        store = TraceStore(store_url)
    try:
        return list(store.records(**filters))
    finally:
        store.close()

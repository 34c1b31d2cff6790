"""Tasks: recurring kinds of model call within one node, with what they cost and how well a
small model could take them over.

A `TaskAnalysis` holds every task of an analysis and is saved as `tasks.json`; it names the
curated records file the tasks were built from, so `records_for_task` can return them.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

TASKS_FILE = "tasks.json"
CURATED_FILE = "curated.jsonl"
ANALYSIS_VERSION = 1

# Below this suitability a task is not counted in projected savings.
SUITABLE_THRESHOLD = 0.6
# Calls of a task at which the volume part of the suitability score reaches 1.
FULL_VOLUME_CALLS = 1000
# Calls a task needs before fine-tuning on it is worth trying.
MIN_TRAINING_CALLS = 50

_KIND_SCORES = {"label": 1.0, "json": 0.85, "tool_call": 0.75, "text": 0.4}


@dataclass
class Task:
    """One recurring task of a node.

    Attributes:
        id: Stable id, `<node>/<n>`, or `<node>/noise` for calls that fit no task.
        node: Node that makes the calls.
        name: Short name from the task's distinctive terms.
        terms: Distinctive terms, most distinctive first.
        output_kind: Most common output kind of the task's calls.
        record_ids: Ids of the task's curated records.
        call_count: Number of calls.
        input_tokens: Input tokens of all calls (estimates where the provider sent none).
        output_tokens: Output tokens of all calls.
        cost_usd: Estimated LLM cost of all calls at the price table's prices.
        slm_cost_usd: Estimated cost of the same calls on a self-served small model.
        models: Calls per model name.
        output_diversity: Output variety: `labels` (label set), `tool_names`, `json_keys` or
            `distinct_outputs`, with `distinct_share`.
        template_share: Average share of the prompt that is fixed template, from 0 to 1.
        suitability: How well a small model could take the task over, from 0 to 1.
        reasons: Why the suitability score is what it is.
        is_noise: Whether this is the noise class of the clustering.
        map_xy: Position in the 2-D task map.
    """

    id: str
    node: str
    name: str
    terms: list[str]
    output_kind: str
    record_ids: list[str]
    call_count: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    slm_cost_usd: float
    models: dict[str, int]
    output_diversity: dict[str, Any]
    template_share: float
    suitability: float = 0.0
    reasons: list[str] = field(default_factory=list)
    is_noise: bool = False
    map_xy: tuple[float, float] = (0.0, 0.0)

    @property
    def labels(self) -> list[str]:
        """The label set of a label task; empty for other kinds."""
        return list(self.output_diversity.get("labels", []))

    @property
    def savings_usd(self) -> float:
        return max(0.0, self.cost_usd - self.slm_cost_usd)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["map_xy"] = list(self.map_xy)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Task:
        data = dict(data)
        data["map_xy"] = tuple(data.get("map_xy") or (0.0, 0.0))
        return cls(**data)


def score_suitability(task: Task) -> tuple[float, list[str]]:
    """Return a 0-1 suitability score for moving `task` to a small model, with reasons.

    The score weighs the output kind (0.4: labels are easiest, free text hardest), the call
    volume (0.25: log scale up to 1,000 calls), the fixed-template share of the prompt (0.15)
    and how narrow the outputs are (0.2). The noise class scores at most 0.2.
    """
    kind_score = _KIND_SCORES.get(task.output_kind, 0.4)
    volume_score = min(1.0, math.log10(max(task.call_count, 1)) / math.log10(FULL_VOLUME_CALLS))
    narrow_score, narrow_reason = _narrowness(task)
    score = 0.4 * kind_score + 0.25 * volume_score + 0.15 * task.template_share + 0.2 * narrow_score

    reasons = [f"output kind {task.output_kind}" + (" (a closed set)" if task.output_kind == "label" else ""), narrow_reason]
    reasons.append(f"{task.call_count} calls" + (" (enough to fine-tune)" if task.call_count >= MIN_TRAINING_CALLS else " (few for fine-tuning)"))
    reasons.append(f"{task.template_share:.0%} of the prompt is fixed template")
    if task.is_noise:
        score = min(score, 0.2)
        reasons.insert(0, "calls that fit no recurring task")
    return round(score, 3), reasons


def _narrowness(task: Task) -> tuple[float, str]:
    diversity = task.output_diversity
    if task.output_kind == "label":
        count = len(diversity.get("labels", []))
        return (1.0 if count <= 200 else 0.5), f"{count} distinct labels"
    if task.output_kind == "tool_call":
        count = len(diversity.get("tool_names", []))
        return max(0.2, 1.0 - count / 200), f"{count} distinct tools called"
    if task.output_kind == "json":
        count = diversity.get("json_key_sets", 1)
        return max(0.2, 1.0 - count / 20), f"{count} distinct JSON key sets"
    share = diversity.get("distinct_share", 1.0)
    return max(0.0, 1.0 - share), f"{share:.0%} of the replies are distinct"


@dataclass
class TaskAnalysis:
    """Every task found in one analysis, with the settings that produced it."""

    tasks: list[Task]
    embedder: str
    curated_path: str | None = None
    records_analyzed: int = 0
    window_days: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def task(self, task_id: str) -> Task:
        """Return the task with `task_id`.

        Raises:
            KeyError: no task has that id; the message lists the ids there are.
        """
        for task in self.tasks:
            if task.id == task_id:
                return task
        raise KeyError(f"No task {task_id!r} in this analysis: use one of {', '.join(t.id for t in self.tasks)}.")

    def tasks_of(self, node: str) -> list[Task]:
        return [task for task in self.tasks if task.node == node]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": ANALYSIS_VERSION,
            "embedder": self.embedder,
            "curated_path": self.curated_path,
            "records_analyzed": self.records_analyzed,
            "window_days": self.window_days,
            "settings": self.settings,
            "tasks": [task.to_dict() for task in self.tasks],
        }

    def save(self, path: str | Path) -> Path:
        """Write the analysis as JSON to `path` (a file, or a folder to hold `tasks.json`)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / TASKS_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> TaskAnalysis:
        """Read an analysis written by `save`; `path` may be the folder that holds `tasks.json`."""
        path = Path(path)
        if path.is_dir():
            path = path / TASKS_FILE
        if not path.exists():
            raise FileNotFoundError(f"No task analysis at {path}: run `slmshift analyze` first.")
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            tasks=[Task.from_dict(task) for task in data["tasks"]],
            embedder=data.get("embedder", ""),
            curated_path=data.get("curated_path"),
            records_analyzed=data.get("records_analyzed", 0),
            window_days=data.get("window_days"),
            settings=data.get("settings") or {},
        )


def records_for_task(
    task: Task | str,
    *,
    analysis: TaskAnalysis | str | Path | None = None,
    source: Any = None,
) -> Iterator[CallRecord]:
    """Yield the curated records of `task`, in the order they were clustered.

    Args:
        task: A `Task`, or a task id looked up in `analysis`.
        analysis: The analysis (or the path of its `tasks.json` or of its folder); needed for
            a task id, and to find the curated records file when `source` is not given.
        source: Where to read records: a `TraceStore`, an iterable of records, or the path of
            a JSON Lines file. Default: the analysis's curated records file.

    Raises:
        ValueError: neither `source` nor an analysis with a curated file is given.
    """
    if isinstance(analysis, (str, Path)):
        analysis = TaskAnalysis.load(analysis)
    if isinstance(task, str):
        if analysis is None:
            raise ValueError(f"Task id {task!r} needs `analysis=` to be looked up: pass the analysis or its tasks.json.")
        task = analysis.task(task)

    wanted = set(task.record_ids)
    for record in _records_from(source, analysis):
        if record.id in wanted:
            yield record


def _records_from(source: Any, analysis: TaskAnalysis | None) -> Iterable[CallRecord]:
    if source is None:
        if analysis is None or not analysis.curated_path:
            raise ValueError("No record source: pass `source=` (a store, records or a .jsonl path) or an analysis with a curated file.")
        source = analysis.curated_path
    if isinstance(source, (str, Path, os.PathLike)):
        return _read_jsonl(Path(source))
    if hasattr(source, "records"):
        return source.records()
    return source


def _read_jsonl(path: Path) -> Iterator[CallRecord]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield CallRecord.from_json(line)

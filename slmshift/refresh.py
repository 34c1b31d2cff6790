"""`slmshift refresh`: retrain on traces that arrived since the current plan; promote only gains.

Served traffic keeps producing records. Where a swapped node fell back, the teacher answered:
those answers are new labels exactly where the SLM was weak. Unswapped nodes keep calling the
teacher, so all their calls are labels. A refresh round:

1. reads the records of the agent that arrived since the current plan was written, keeps the
   teacher's answers (decision records served by the LLM, and calls made by a teacher model),
   curates them, and drops every input that is in the fixed held-out set;
2. for each node with a closed answer set, adds them to the pairs the serving model was trained
   on (a newer answer for the same input replaces the older one) and trains new candidates;
3. scores the chosen candidate and the serving model on the same fixed held-out records;
4. promotes the candidate only when it passes the gate and beats the serving model's agreement
   by at least `MIN_IMPROVEMENT`, writes the next plan when anything was promoted, and appends
   the round, promoted or not, with every figure, to `plans/history.json`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmshift.pipeline import Pipeline, PipelineError
from slmshift.plans import PlanEntry, PlanHistory, utc_now
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# A candidate must beat the serving model's held-out agreement by this much to be promoted.
MIN_IMPROVEMENT = 0.005
SERVED_BY_KEY = "slmshift.served_by"
DECISION_KEY = "slmshift.decision"


@dataclass
class RefreshResult:
    """What one refresh round found and decided."""

    new_records: int
    new_labels: dict[str, int]
    decisions: dict[str, dict[str, Any]] = field(default_factory=dict)
    plan_path: str | None = None
    plan_number: int | None = None

    @property
    def promoted(self) -> list[str]:
        return [node for node, decision in self.decisions.items() if decision["promoted"]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "new_records": self.new_records,
            "new_labels": self.new_labels,
            "decisions": self.decisions,
            "plan_path": self.plan_path,
            "plan_number": self.plan_number,
        }


def refresh(pipeline: Pipeline) -> RefreshResult:
    """Run one refresh round for the demo's agent; see the module docstring.

    Raises:
        PlanHistoryError: there is no plan yet (run `slmshift demo` first).
    """
    history = PlanHistory(pipeline.path("plans"))
    current = history.current()
    holdout = _read_records(history.holdout_path)
    holdout_inputs = {(record.node, _input_of(record)) for record in holdout}

    new_records = list(pipeline.store.records(agent=pipeline.settings.agent, since=_time(current.created_at)))
    labels = teacher_labels(new_records, teacher_models=_teacher_models(pipeline))
    labels = _curated(pipeline, labels)
    labels = [record for record in labels if (record.node, _input_of(record)) not in holdout_inputs]
    by_node: dict[str, list[CallRecord]] = {}
    for record in labels:
        by_node.setdefault(record.node or "?", []).append(record)
    result = RefreshResult(
        new_records=len(new_records),
        new_labels={node: len(records) for node, records in sorted(by_node.items())},
    )
    pipeline.say(
        f"[refresh] {len(new_records)} records since plan-{current.number}; teacher labels: "
        + (", ".join(f"{node} {count}" for node, count in result.new_labels.items()) or "none")
    )

    data = dict(current.data)
    serving = dict(current.nodes)
    round_dir = pipeline.path("models", f"refresh-{history.next_number()}")
    for node, records in sorted(by_node.items()):
        decision, pairs, candidate = _refresh_node(pipeline, node, records, current, holdout, round_dir)
        if decision is None:
            continue
        result.decisions[node] = decision
        pipeline.say(f"[refresh] {node}: {'promoted' if decision['promoted'] else 'kept the serving model'}: {decision['reason']}")
        if decision["promoted"]:
            data[node] = str(_write_pairs(history.directory / f"data-{history.next_number()}" / f"{node}.jsonl", pairs))
            serving[node] = candidate

    if result.promoted:
        result.plan_number, result.plan_path = _write_next_plan(pipeline, history, serving, data, result)
    history.append_round({"finished_at": utc_now(), "after_plan": current.number, **result.to_dict()})
    return result


def teacher_labels(records: list[CallRecord], *, teacher_models: frozenset[str]) -> list[CallRecord]:
    """Return the records whose response came from the teacher, one per node and input.

    Fallback and shadow decision records served by the LLM count, and so does any call made by
    a teacher model (an unswapped node, or the teacher inside a fallback). An SLM's own answers
    never count: training on them would only teach the SLM its own mistakes.
    """
    chosen: dict[tuple[str | None, str], CallRecord] = {}
    for record in records:
        if not record.ok:
            continue
        served_by = record.metadata.get(SERVED_BY_KEY)
        from_teacher = served_by == "llm" or (
            record.metadata.get(DECISION_KEY) is None and record.model in teacher_models
        )
        if from_teacher:
            chosen[(record.node, _input_of(record))] = record
    return list(chosen.values())


def _refresh_node(
    pipeline: Pipeline,
    node: str,
    records: list[CallRecord],
    current: PlanEntry,
    holdout: list[CallRecord],
    round_dir: Path,
) -> tuple[dict[str, Any] | None, list[tuple[str, str]], dict[str, Any]]:
    from slmshift.demo.scoring import answer_records, score
    from slmshift.demo.training import answer_pairs, offline_blocker, records_from_pairs, train_candidates
    from slmshift.pipeline_steps import gate
    from slmshift.slm import load_slm

    new_pairs = answer_pairs(records)
    if node not in current.data or offline_blocker(records, new_pairs) is not None:
        return None, [], {}
    base = _read_pairs(current.data[node])
    pairs = list({text: answer for text, answer in [*base, *new_pairs]}.items())
    node_holdout = [record for record in holdout if record.node == node]

    chosen, _ = train_candidates(
        node, records_from_pairs(pairs, records[-1]), round_dir,
        fast=pipeline.settings.fast, seed=pipeline.settings.seed,
        say=lambda message: logger.info("%s: %s", node, message),
    )
    candidate_score = score(answer_records(load_slm(chosen.model_dir), node_holdout), chosen.min_confidence).to_dict()
    passes, gate_reason = gate(candidate_score)
    decision: dict[str, Any] = {
        "training_pairs": len(pairs),
        "new_pairs": len(new_pairs),
        "candidate": {"kind": chosen.kind, "model_dir": chosen.model_dir, "holdout": candidate_score},
    }

    serving = current.nodes.get(node)
    if serving is None:
        decision.update(promoted=passes, reason=gate_reason)
    else:
        serving_score = score(
            answer_records(load_slm(serving["model_dir"]), node_holdout), serving["min_confidence"]
        ).to_dict()
        decision["serving"] = {"kind": serving["kind"], "model_dir": serving["model_dir"], "holdout": serving_score}
        gain = candidate_score["agreement"] - serving_score["agreement"]
        decision["promoted"] = passes and gain >= MIN_IMPROVEMENT
        decision["reason"] = (
            f"held-out agreement {candidate_score['agreement']:.1%} against the serving model's "
            f"{serving_score['agreement']:.1%} ({gain:+.1%}, promotion needs +{MIN_IMPROVEMENT:.1%})"
            + ("" if passes else f"; gate: {gate_reason}")
        )
    serving_entry = {
        "kind": chosen.kind,
        "model_dir": chosen.model_dir,
        "labels": chosen.labels,
        "min_confidence": chosen.min_confidence,
        "holdout": candidate_score,
    }
    return decision, pairs, serving_entry


def _write_next_plan(
    pipeline: Pipeline, history: PlanHistory, serving: dict[str, Any], data: dict[str, str], result: RefreshResult
) -> tuple[int, str]:
    from slmshift.pipeline_steps import node_plan, write_plan

    number = history.next_number()
    plans = [node_plan(node, spec, spec["holdout"], history.directory) for node, spec in sorted(serving.items())]
    path = write_plan(history.plan_path(number), plans, agent=pipeline.settings.agent)
    history.append(PlanEntry(
        number=number, path=str(path), created_at=utc_now(), source="refresh",
        nodes=serving, decisions=result.decisions, data=data,
    ))
    return number, str(path)


def _curated(pipeline: Pipeline, records: list[CallRecord]) -> list[CallRecord]:
    from slmshift.curation import curate

    if not records:
        return []
    curated, report = curate(records)
    pipeline.say("[refresh] curation: " + report.summary().splitlines()[0])
    return curated


def _teacher_models(pipeline: Pipeline) -> frozenset[str]:
    from slmshift.demo.teacher import build_teacher, teacher_model_names

    teacher, _ = build_teacher(
        banking=[], bfcl=[],
        base_url=pipeline.settings.teacher_base_url, model=pipeline.settings.teacher_model,
    )
    return teacher_model_names(teacher)


def _input_of(record: CallRecord) -> str:
    from slmshift.demo.training import last_user_text

    return last_user_text(record.messages)


def _time(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


def _read_records(path: Path) -> list[CallRecord]:
    if not path.is_file():
        raise PipelineError(f"No held-out set at {path}: run `slmshift demo` first.")
    with open(path, encoding="utf-8") as handle:
        return [CallRecord.from_json(line) for line in handle if line.strip()]


def _read_pairs(path: str) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return [tuple(json.loads(line)) for line in handle if line.strip()]  # type: ignore[misc]


def _write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(list(pair), ensure_ascii=False) + "\n")
    path.chmod(0o600)
    return path

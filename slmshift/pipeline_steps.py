"""The steps of `slmshift.pipeline.Pipeline` on the example support agent.

Each `step_<name>(pipeline)` returns a dict of JSON-ready outputs: paths (keys ending in
`_path` or `_dir`, checked for existence before a cached result is reused) and figures.
`step_key` says what each step depends on.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from slmshift.pipeline import Pipeline, PipelineError
from slmshift.pipeline_cache import fingerprint, records_fingerprint

logger = logging.getLogger(__name__)

CAPTURE_BATCH_SIZE = 50


def step_key(pipeline: Pipeline, step: str) -> str:
    """Return the cache key of `step`: a hash of its settings and of its inputs' keys."""
    settings = pipeline.settings
    if step == "capture":
        return settings.capture_key()
    if step == "analyze":
        return fingerprint("analyze", records_fingerprint(pipeline.captured_records()))
    upstream = {
        "select": ("analyze", settings.hub_model),
        "train": ("select", settings.training_options()),
        "evaluate": ("train",),
        "plan": ("evaluate",),
        "serve": ("plan", settings.prices),
    }[step]
    return fingerprint(step, pipeline.key_of(upstream[0]), *upstream[1:])


def cache_still_valid(pipeline: Pipeline, step: str, outputs: dict[str, Any]) -> bool:
    """Whether saved outputs still describe the world: the captured records must still exist."""
    if step != "capture":
        return True
    since = datetime.fromisoformat(outputs["since"])
    until = datetime.fromisoformat(outputs["until"])
    present = pipeline.store.count(agent=pipeline.settings.agent, since=since, until=until)
    return present == outputs["records"]


# -- capture -------------------------------------------------------------------------------


def step_capture(pipeline: Pipeline) -> dict[str, Any]:
    """Send the captured requests through the teacher's graph with the trace handler attached."""
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.demo.support_agent import banking_input, build_support_graph, function_call_input
    from slmshift.demo.teacher import build_teacher
    from slmshift.demo.workload import build_workload, interleave, save_holdout

    settings = pipeline.settings
    workload = build_workload(settings.requests, settings.holdout_requests, seed=settings.seed)
    holdout_path = save_holdout(pipeline.path("holdout.jsonl"), workload)
    teacher, note = build_teacher(
        banking=[*workload.capture_banking, *workload.holdout_banking],
        bfcl=[*workload.capture_bfcl, *workload.holdout_bfcl],
        base_url=settings.teacher_base_url,
        model=settings.teacher_model,
    )
    pipeline.say(note)

    graph = build_support_graph(*teacher).compile()
    handler = LangChainTraceHandler(pipeline.store, agent=settings.agent)
    inputs = interleave(
        [banking_input(example) for example in workload.capture_banking],
        [function_call_input(example) for example in workload.capture_bfcl],
    )
    since = datetime.now(timezone.utc)
    started = time.perf_counter()
    advance = pipeline.progress("capture: requests through the teacher", len(inputs))
    for offset in range(0, len(inputs), CAPTURE_BATCH_SIZE):
        batch = inputs[offset : offset + CAPTURE_BATCH_SIZE]
        graph.batch(batch, config={"callbacks": [handler]})
        advance(len(batch))
    if not handler.flush(timeout=60):
        raise PipelineError("The trace store did not commit the captured records within 60 s.")
    until = datetime.now(timezone.utc)

    per_node = Counter(
        record.node for record in pipeline.store.records(agent=settings.agent, since=since, until=until)
    )
    pipeline.say(
        f"[capture] {len(inputs)} requests, {sum(per_node.values())} model calls in "
        f"{time.perf_counter() - started:.1f} s: "
        + ", ".join(f"{node} {count}" for node, count in sorted(per_node.items()))
    )
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "requests": len(inputs),
        "records": sum(per_node.values()),
        "records_per_node": dict(per_node),
        "holdout_path": str(holdout_path),
        "holdout_requests": workload.holdout_size,
        "teacher": note,
        "handler_stats": _stats_dict(handler.stats),
    }


def _stats_dict(stats: Any) -> dict[str, Any]:
    if isinstance(stats, dict):
        return stats
    if hasattr(stats, "as_dict"):
        return stats.as_dict()
    return {key: value for key, value in vars(stats).items() if not key.startswith("_")}

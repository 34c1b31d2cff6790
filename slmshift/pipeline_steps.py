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
from pathlib import Path
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
    from slmshift.demo.workload import build_workload, interleave

    settings = pipeline.settings
    workload = build_workload(settings.requests, settings.holdout_requests, seed=settings.seed)
    teacher, note = build_teacher(
        banking=[*workload.capture_banking, *workload.holdout_banking],
        bfcl=[*workload.capture_bfcl, *workload.holdout_bfcl],
        base_url=settings.teacher_base_url,
        model=settings.teacher_model,
    )
    pipeline.say(note)
    holdout_path = _write_holdout_records(pipeline, teacher, workload)

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


def _write_holdout_records(pipeline: Pipeline, teacher: Any, workload: Any) -> Path:
    """Write the fixed held-out set once: requests, and the teacher's records per node for them.

    An existing set is kept, so every plan in the history is judged on the same requests.
    """
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.demo.support_agent import build_support_graph
    from slmshift.demo.workload import save_holdout
    from slmshift.plans import PlanHistory
    from slmshift.store.base import MemoryTraceStore

    history = PlanHistory(pipeline.path("plans"))
    if history.holdout_path.is_file() and history.holdout_requests_path.is_file():
        return history.holdout_path

    save_holdout(history.holdout_requests_path, workload)
    memory = MemoryTraceStore()
    handler = LangChainTraceHandler(memory, agent=pipeline.settings.agent)
    graph = build_support_graph(*teacher).compile()
    graph.batch([request.state for request in held_out_requests(workload)], config={"callbacks": [handler]})
    handler.flush(timeout=60)
    memory.export_jsonl(history.holdout_path)
    return history.holdout_path


def held_out_requests(workload: Any) -> list[Any]:
    """Return the held-out graph inputs with each node's expected (teacher) answer."""
    from slmshift.demo.prompts import RESPONDER_NODE, ROUTER_NODE, TOOL_NODE
    from slmshift.demo.serving import HeldOutRequest
    from slmshift.demo.support_agent import banking_input, function_call_input, intent_reply, recorded_calls

    requests = [
        HeldOutRequest(
            state=banking_input(example),
            expected={ROUTER_NODE: example.label, RESPONDER_NODE: intent_reply(example.label)},
        )
        for example in workload.holdout_banking
    ]
    requests += [
        HeldOutRequest(
            state=function_call_input(example),
            expected={TOOL_NODE: [
                {"name": call["name"], "args": call["args"]} for call in recorded_calls(example).tool_calls
            ]},
        )
        for example in workload.holdout_bfcl
    ]
    return requests


# -- analyze -------------------------------------------------------------------------------


def step_analyze(pipeline: Pipeline) -> dict[str, Any]:
    """Curate the captured records (redact, filter, dedupe), cluster them into tasks, report."""
    from slmshift.curation import curate

    records = pipeline.captured_records()
    advance = pipeline.progress("analyze: redacting and filtering", len(records))
    done = [0]

    def redacted(count: int) -> None:
        advance(count - done[0])
        done[0] = count

    curated, report = curate(records, progress=redacted)
    advance(0, finished=True)
    curated_path = pipeline.path("curated.jsonl")
    _write_records(curated_path, curated)
    pipeline.say("[analyze] " + report.summary().replace("\n", "\n          "))

    per_node = Counter(record.node for record in curated)
    outputs: dict[str, Any] = {
        "curated_path": str(curated_path),
        "curation": report.to_dict(),
        "records_per_node": dict(per_node),
    }
    outputs.update(_cluster_and_report(pipeline, curated, report.to_dict()))
    return outputs


def _cluster_and_report(pipeline: Pipeline, curated: list[Any], curation: dict[str, Any]) -> dict[str, Any]:
    """Cluster curated records into tasks per node and write the HTML report."""
    from slmshift.clustering import ClusterConfig, PriceTable, cluster_records
    from slmshift.clustering.embeddings import embedder_by_name
    from slmshift.report import projection_for, render_report

    advance = pipeline.progress("analyze: clustering calls into tasks", None)
    analysis = cluster_records(
        curated,
        embedder=embedder_by_name("auto"),
        config=ClusterConfig(),
        prices=PriceTable.defaults(),
        progress=lambda name, done, total: advance(0, description=f"analyze: {name}"[:80]),
    )
    advance(0, description="analyze: clustering calls into tasks", finished=True)
    analysis.curated_path = str(pipeline.path("curated.jsonl").resolve())
    analysis.settings["curation"] = curation
    tasks_path = analysis.save(pipeline.out_dir)
    report_path = render_report(
        analysis, pipeline.out_dir, curation=curation, projection=projection_for(analysis, None)
    )

    tasks = [
        {
            "id": task.id,
            "node": task.node,
            "name": task.name,
            "output_kind": task.output_kind,
            "calls": task.call_count,
            "suitability": round(task.suitability, 3),
            "output_diversity": task.output_diversity,
        }
        for task in analysis.tasks
        if not task.is_noise
    ]
    for task in sorted(tasks, key=lambda item: -item["calls"])[:6]:
        pipeline.say(
            f"[analyze] task {task['id']} ({task['output_kind']}, {task['calls']} calls, "
            f"suitability {task['suitability']:.2f}): {task['name']}"
        )
    pipeline.say(f"[analyze] report: {report_path}")
    return {"tasks_path": str(tasks_path), "report_path": str(report_path), "tasks": tasks}


def _write_records(path: Path, records: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
    path.chmod(0o600)


def _read_records(path: str | Path) -> list[Any]:
    from slmshift.records import CallRecord

    with open(path, encoding="utf-8") as handle:
        return [CallRecord.from_json(line) for line in handle if line.strip()]


# -- select --------------------------------------------------------------------------------


def step_select(pipeline: Pipeline) -> dict[str, Any]:
    """Decide per node what to train: closed answer sets offline, the rest only with a hub model."""
    from slmshift.demo.training import answer_pairs, offline_blocker

    curated = _read_records(pipeline.outputs_of("analyze")["curated_path"])
    by_node: dict[str, list[Any]] = {}
    for record in curated:
        by_node.setdefault(record.node or "?", []).append(record)

    nodes = {}
    for node, records in sorted(by_node.items()):
        pairs = answer_pairs(records)
        blocker = offline_blocker(records, pairs)
        hub_model = pipeline.settings.hub_model
        if blocker is None:
            candidates, reason = ["classical", "compact"], f"{len({a for _, a in pairs})} distinct answers: a closed set"
        elif hub_model is not None:
            candidates, reason = ["lora"], f"LoRA on {hub_model}, because {blocker.split(' (pass')[0]}"
        else:
            candidates, reason = [], blocker
        nodes[node] = {
            "records": len(records),
            "distinct_answers": len({answer for _, answer in pairs}),
            "trainable": bool(candidates),
            "candidates": candidates,
            "reason": reason,
        }
        pipeline.say(f"[select] {node}: {nodes[node]['reason']}")
    return {"nodes": nodes}


# -- train ---------------------------------------------------------------------------------


def step_train(pipeline: Pipeline) -> dict[str, Any]:
    """Train the candidates of every trainable node and pick one per node on validation."""
    from slmshift.demo.training import train_candidates, train_lora_candidate

    curated = _read_records(pipeline.outputs_of("analyze")["curated_path"])
    selection = pipeline.outputs_of("select")["nodes"]
    models_dir = pipeline.path("models")
    nodes = {}
    for node, choice in selection.items():
        if not choice["trainable"]:
            continue
        records = [record for record in curated if record.node == node and record.ok]
        started = time.perf_counter()
        advance = pipeline.progress(f"train: {node} candidates", None)

        def say(message: str, node: str = node) -> None:
            advance(0, description=f"train: {node}: {message}"[:100])
            logger.info("%s: %s", node, message)

        if choice["candidates"] == ["lora"]:
            chosen = train_lora_candidate(
                node, records, models_dir, hub_model=str(pipeline.settings.hub_model),
                fast=pipeline.settings.fast, seed=pipeline.settings.seed, say=say,
            )
            candidates = [chosen]
        else:
            chosen, candidates = train_candidates(
                node, records, models_dir, fast=pipeline.settings.fast, seed=pipeline.settings.seed, say=say,
            )
        advance(0, description=f"train: {node} candidates", finished=True)
        nodes[node] = {"chosen": chosen.to_dict(), "candidates": [item.to_dict() for item in candidates]}
        pipeline.say(
            f"[train] {node}: " + "; ".join(
                f"{item.kind} {item.validation['agreement']:.1%} agreement, "
                f"{item.validation['coverage']:.1%} kept at 97%"
                for item in candidates
            ) + f" (validation) -> {chosen.kind}, {time.perf_counter() - started:.0f} s"
        )
    return {"models_dir": str(models_dir), "nodes": nodes}


# -- evaluate ------------------------------------------------------------------------------

# Promotion gate on the held-out set: what the node serves (the SLM's kept answers, the
# teacher's for the rest) must agree with the teacher at this share or better, and the SLM
# must keep at least this share of the node's calls.
MIN_SERVED_AGREEMENT = 0.95
MIN_COVERAGE = 0.30


def step_evaluate(pipeline: Pipeline) -> dict[str, Any]:
    """Score each trained candidate on the fixed held-out teacher records; apply the gate."""
    from slmshift.demo.scoring import answer_records, score
    from slmshift.plans import PlanHistory
    from slmshift.slm import load_slm

    holdout = _read_records(PlanHistory(pipeline.path("plans")).holdout_path)
    trained = pipeline.outputs_of("train")["nodes"]
    nodes = {}
    for node, entry in trained.items():
        records = [record for record in holdout if record.node == node]
        advance = pipeline.progress(f"evaluate: {node} on held-out requests", len(records) * len(entry["candidates"]))
        scores = {}
        for candidate in entry["candidates"]:
            answers = answer_records(load_slm(candidate["model_dir"]), records, advance=advance)
            scores[candidate["kind"]] = score(answers, candidate["min_confidence"]).to_dict()
        chosen = entry["chosen"]["kind"]
        passes, reason = gate(scores[chosen])
        nodes[node] = {"chosen": chosen, "holdout": scores, "passes_gate": passes, "reason": reason}
        pipeline.say(f"[evaluate] {node}: {chosen} on {len(records)} held-out calls: {reason}")
    return {"nodes": nodes}


def gate(figures: dict[str, Any]) -> tuple[bool, str]:
    """Apply the promotion gate to held-out figures; return the verdict and its reason."""
    kept = figures["kept_agreement"] or 0.0
    summary = (
        f"{figures['agreement']:.1%} agreement alone; keeps {figures['coverage']:.1%} of calls at "
        f"{kept:.1%} agreement; {figures['served_agreement']:.1%} served with fallback"
    )
    if figures["served_agreement"] < MIN_SERVED_AGREEMENT:
        return False, f"{summary}; the gate needs {MIN_SERVED_AGREEMENT:.0%} served"
    if figures["coverage"] < MIN_COVERAGE:
        return False, f"{summary}; the gate needs it to keep {MIN_COVERAGE:.0%} of calls"
    return True, summary


# -- plan ----------------------------------------------------------------------------------


def step_plan(pipeline: Pipeline) -> dict[str, Any]:
    """Write the next `ConversionPlan` with every node that passed the gate; record it in the history."""
    from slmshift.plans import PlanEntry, PlanHistory, utc_now

    selection = pipeline.outputs_of("select")["nodes"]
    trained = pipeline.outputs_of("train")["nodes"]
    evaluation = pipeline.outputs_of("evaluate")["nodes"]
    history = PlanHistory(pipeline.path("plans"))

    node_plans, serving, decisions = [], {}, {}
    for node, choice in selection.items():
        verdict = evaluation.get(node)
        if verdict is None or not verdict["passes_gate"]:
            reason = verdict["reason"] if verdict else choice["reason"]
            decisions[node] = {"promoted": False, "served_by": "teacher LLM", "reason": reason}
            continue
        chosen = trained[node]["chosen"]
        figures = verdict["holdout"][chosen["kind"]]
        node_plans.append(node_plan(node, chosen, figures, history.directory))
        serving[node] = serving_entry(chosen, figures)
        decisions[node] = {
            "promoted": True,
            "served_by": f"{chosen['kind']} SLM + fallback",
            "reason": verdict["reason"],
        }

    number = history.next_number()
    plan_path = write_plan(history.plan_path(number), node_plans, agent=pipeline.settings.agent)
    history.append(PlanEntry(
        number=number, path=str(plan_path), created_at=utc_now(), source="demo",
        nodes=serving, decisions=decisions, data=_training_data(pipeline, history, number, trained),
    ))
    pipeline.say(f"[plan] plan-{number}: {', '.join(serving) or 'no node'} moves to an SLM")
    return {
        "plan_path": str(plan_path),
        "plan_number": number,
        "history_path": str(history.history_path),
        "holdout_path": str(history.holdout_path),
        "decisions": decisions,
    }


def _training_data(pipeline: Pipeline, history: Any, number: int, trained: dict[str, Any]) -> dict[str, str]:
    """Write the `[input, answer]` pairs each trained node learned from, for later refreshes."""
    import json

    from slmshift.demo.training import answer_pairs

    curated = _read_records(pipeline.outputs_of("analyze")["curated_path"])
    paths = {}
    for node in trained:
        path = history.directory / f"data-{number}" / f"{node}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8") as handle:
            for pair in answer_pairs([record for record in curated if record.node == node]):
                handle.write(json.dumps(list(pair), ensure_ascii=False) + "\n")
        path.chmod(0o600)
        paths[node] = str(path)
    return paths


def node_plan(node: str, chosen: dict[str, Any], figures: dict[str, Any], plans_dir: Path) -> Any:
    """Return the `NodePlan` serving `chosen` with fallback to the node's original model."""
    import os

    from slmshift.converters.plan import FallbackPolicy, NodePlan

    validation: dict[str, Any] = {"labels": chosen["labels"]} if chosen["labels"] else {"check_tools": True}
    if chosen["min_confidence"] is not None:
        validation["min_confidence"] = round(float(chosen["min_confidence"]), 6)
    return NodePlan(
        node=node,
        task=f"{node}/0",
        base_model=chosen.get("extra", {}).get("base_model"),
        adapter=os.path.relpath(chosen["model_dir"], plans_dir),
        validation=validation,
        fallback=FallbackPolicy(mode="fallback"),
        promotion={
            "holdout_agreement": round(figures["agreement"], 4),
            "holdout_coverage": round(figures["coverage"], 4),
            "holdout_served_agreement": round(figures["served_agreement"], 4),
        },
    )


def serving_entry(chosen: dict[str, Any], figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": chosen["kind"],
        "model_dir": chosen["model_dir"],
        "labels": chosen["labels"],
        "min_confidence": chosen["min_confidence"],
        "holdout": figures,
        "extra": chosen.get("extra", {}),
    }


def write_plan(path: Path, node_plans: list[Any], *, agent: str) -> Path:
    """Save the plan; a plan with no node is written as an empty node list with a comment."""
    from slmshift.converters.plan import ConversionPlan

    if node_plans:
        return ConversionPlan(nodes=tuple(node_plans), agent=agent).save(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"# No node passed the promotion gate: every node stays on the teacher.\nversion: 1\nagent: {agent}\nnodes: []\n",
        encoding="utf-8",
    )
    return path


# -- serve ---------------------------------------------------------------------------------


def step_serve(pipeline: Pipeline) -> dict[str, Any]:
    """Replay the held-out requests through the teacher graph, then through the swapped graph."""
    from types import SimpleNamespace

    from slmshift.demo.support_agent import build_support_graph
    from slmshift.demo.teacher import build_teacher
    from slmshift.demo.workload import load_holdout
    from slmshift.plans import PlanHistory

    history = PlanHistory(pipeline.path("plans"))
    entry = history.current()
    banking, bfcl = load_holdout(history.holdout_requests_path, seed=pipeline.settings.seed)
    requests = held_out_requests(SimpleNamespace(holdout_banking=banking, holdout_bfcl=bfcl))
    settings = pipeline.settings
    teacher, note = build_teacher(
        banking=banking, bfcl=bfcl, base_url=settings.teacher_base_url, model=settings.teacher_model
    )
    builder = build_support_graph(*teacher)

    before = _serve_before(pipeline, builder.compile(), requests)
    after = _serve_after(pipeline, builder.compile(), requests, entry)
    notes = [
        note,
        "Agreement is end to end: each node's answer is compared with the teacher graph's answer "
        "to the same request, so a router mistake also counts against the responder.",
        "Latency is per request, measured on this machine after one warm-up request. Costs are "
        f"estimates: teacher at ${settings.prices.teacher_input_usd_per_mtok:.2f} / "
        f"${settings.prices.teacher_output_usd_per_mtok:.2f} per million input / output tokens, "
        f"SLMs at ${settings.prices.cpu_usd_per_core_hour:.2f} per CPU core-hour of their latency.",
    ]
    return {
        "requests": len(requests),
        "plan_path": entry.path,
        "plan_number": entry.number,
        "before": before.to_dict(),
        "after": after.to_dict(),
        "notes": notes,
    }


def _serve_before(pipeline: Pipeline, graph: Any, requests: list[Any]) -> Any:
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.demo.serving import measure_run, serve_requests
    from slmshift.store.base import MemoryTraceStore

    graph.invoke(requests[0].state)
    memory = MemoryTraceStore()
    handler = LangChainTraceHandler(memory, agent=pipeline.settings.agent)
    advance = pipeline.progress("serve: held-out requests, teacher only", len(requests))
    states, latencies = serve_requests(
        graph, requests, name="before", config={"callbacks": [handler]}, advance=lambda: advance(1)
    )
    handler.flush(timeout=60)
    return measure_run(
        "before", requests, states, latencies, list(memory.records()),
        prices=pipeline.settings.prices, answers_agree=node_answers_agree,
    )


def _serve_after(pipeline: Pipeline, graph: Any, requests: list[Any], entry: Any) -> Any:
    from slmshift.callbacks.langchain import LangChainTraceHandler
    from slmshift.converters.langgraph import swap_node_models
    from slmshift.demo.serving import DECISION_KEY, measure_run, serve_requests

    swapped_nodes = set(entry.nodes)
    agent = pipeline.settings.agent
    store = pipeline.store

    def record_decision(record: Any) -> None:
        store.add(record.replace(agent=agent))

    if swapped_nodes:
        graph = swap_node_models(graph, entry.path, store=record_decision)
    graph.invoke(requests[0].state)

    handler = LangChainTraceHandler(store, agent=agent)
    since = datetime.now(timezone.utc)
    advance = pipeline.progress("serve: held-out requests, swapped graph", len(requests))
    states, latencies = serve_requests(
        graph, requests, name="after", config={"callbacks": [handler]}, advance=lambda: advance(1)
    )
    handler.flush(timeout=60)
    store.flush(timeout=60)

    # Swapped nodes are counted from their decision records; the handler's records of the
    # wrapper and its inner SLM and teacher calls would count each call two or three times.
    records = [
        record for record in store.records(agent=agent, since=since)
        if (record.node in swapped_nodes) == (DECISION_KEY in record.metadata)
    ]
    slm_models = frozenset(f"{node}-{spec['kind']}" for node, spec in entry.nodes.items())
    return measure_run(
        "after", requests, states, latencies, records,
        prices=pipeline.settings.prices, slm_models=slm_models, answers_agree=node_answers_agree,
    )


def node_answers_agree(node: str, expected: Any, served: Any) -> bool:
    """Whether a node's served answer equals the teacher's: same calls, or the same text."""
    import json

    from slmshift.demo.prompts import TOOL_NODE

    if node == TOOL_NODE:
        def signature(calls: Any) -> list[tuple[str, str]]:
            return sorted((call["name"], json.dumps(call["args"], sort_keys=True)) for call in calls or ())

        return signature(expected) == signature(served)
    return " ".join(str(served or "").lower().split()) == " ".join(str(expected).lower().split())

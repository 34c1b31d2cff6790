"""ConversionPlan files, their validation errors, the `slmshift plan` command, and plans applied
by swap_node_models with a tiny local SLM (the original LLM is `ScriptedChatModel`)."""

from __future__ import annotations

from typing import TypedDict

import pytest
from langchain_core.messages import HumanMessage
from langgraph.graph import END, START, StateGraph

from conftest_swap_models import REVIEW, REVIEW_LABEL
from fakes_swap import ScriptedChatModel
from slmshift.cli import main
from slmshift.converters.langgraph import swap_node_models
from slmshift.converters.plan import ConversionPlan, PlanError
from slmshift.integrations.fallback import FallbackChatModel
from slmshift.store.base import MemoryTraceStore


def node_entry(**fields):
    return {"node": "classify", "endpoint": "http://127.0.0.1:8000/v1", "adapter_name": "classify", **fields}


def test_plan_round_trips_yaml_and_json(tmp_path):
    plan = ConversionPlan.from_dict(
        {"agent": "bot", "nodes": [node_entry(validation={"labels": ["a", "b"]}, fallback={"mode": "canary", "canary_share": 0.25}, promotion={"min_agreement": 0.95})]}
    )

    for name in ("plan.yaml", "plan.json"):
        loaded = ConversionPlan.load(plan.save(tmp_path / name))
        assert loaded == plan
    assert loaded.node("classify").fallback.canary_share == 0.25


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (node_entry(adapter="models/x"), "exactly one of `adapter`"),
        ({"node": "classify", "endpoint": "http://127.0.0.1:8000/v1"}, "needs `adapter_name`"),
        (node_entry(endpoint="ftp://host"), "endpoint must be an http"),
        (node_entry(fallback={"mode": "sometimes"}), "fallback.mode 'sometimes' is invalid"),
        (node_entry(fallback={"mode": "canary", "canary_share": 2}), "canary_share must be a share between 0 and 1, got 2"),
        (node_entry(validation={"min_confidence": 1.5}), "min_confidence must be between 0 and 1, got 1.5"),
        (node_entry(validation={"labels": "a"}), "labels must be a non-empty list"),
        (node_entry(validation={"json_schema": {"type": "nonsense"}}), "not a valid JSON schema"),
        (node_entry(validation={"regex": "x"}), r"unknown validation fields \['regex'\]"),
        (node_entry(promotion={"min_agreement": "high"}), "promotion threshold 'min_agreement' must be a number"),
        (node_entry(colour="red"), r"unknown fields \['colour'\]"),
        ({"node": "/classify", "adapter": "x"}, "`node` must be a node name"),
    ],
)
def test_invalid_plan_entry_raises(entry, message):
    with pytest.raises(PlanError, match=message):
        ConversionPlan.from_dict({"nodes": [entry]})


def test_duplicate_node_raises():
    with pytest.raises(PlanError, match="planned twice"):
        ConversionPlan.from_dict({"nodes": [node_entry(), node_entry()]})


def test_missing_plan_file_raises(tmp_path):
    with pytest.raises(PlanError, match="not found: write one with `slmshift plan write`"):
        ConversionPlan.load(tmp_path / "absent.yaml")


def test_invalid_yaml_raises(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("nodes: [unclosed\n")

    with pytest.raises(PlanError, match="not valid YAML"):
        ConversionPlan.load(path)


def test_missing_adapter_dir_raises_when_checked(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("nodes:\n  - node: classify\n    adapter: models/classify\n")

    assert ConversionPlan.load(path).nodes[0].adapter == str(tmp_path / "models" / "classify")
    with pytest.raises(PlanError, match="has no manifest.json"):
        ConversionPlan.load(path, check_files=True)


def test_cli_writes_validates_and_shows_plan(tmp_path, tiny_lora_dir, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "review").symlink_to(tiny_lora_dir)
    plan_path = tmp_path / "out" / "plan.yaml"

    assert main(["plan", "write", "--models", str(models), "--file", str(plan_path), "--mode", "shadow", "--min-confidence", "0.4"]) == 0
    assert main(["plan", "validate", str(plan_path)]) == 0
    assert main(["plan", "show", str(plan_path)]) == 0

    output = capsys.readouterr().out
    assert f"to {plan_path}" in output
    assert "valid plan with 1 node(s)" in output
    assert "review: " in output and "mode shadow" in output
    entry = ConversionPlan.load(plan_path).node("review")
    assert entry.validation == {"labels": ["positive", "negative"], "min_confidence": 0.4}


def test_cli_validate_reports_invalid_plan(tmp_path, capsys):
    path = tmp_path / "plan.yaml"
    path.write_text("nodes:\n  - node: classify\n")

    assert main(["plan", "validate", str(path)]) == 2
    assert "set exactly one of `adapter`" in capsys.readouterr().err


class ReviewState(TypedDict, total=False):
    text: str
    label: str


def review_graph(llm) -> StateGraph:
    def classify(state: ReviewState) -> ReviewState:
        return {"label": llm.invoke([HumanMessage(state["text"])]).content}

    graph = StateGraph(ReviewState)
    graph.add_node("classify", classify)
    graph.add_edge(START, "classify")
    graph.add_edge("classify", END)
    return graph


def plan_file(tmp_path, adapter, labels) -> str:
    entry = {"node": "classify", "adapter": str(adapter), "validation": {"labels": labels}, "max_new_tokens": 8}
    return str(ConversionPlan.from_dict({"nodes": [entry]}).save(tmp_path / f"plan-{len(labels)}.yaml"))


def test_plan_file_swaps_node_behind_fallback(tmp_path, tiny_lora_dir):
    llm = ScriptedChatModel(responses=["negative"])
    app = review_graph(llm).compile()
    store = MemoryTraceStore()

    swapped = swap_node_models(app, plan_file(tmp_path, tiny_lora_dir, ["positive", "negative"]), store=store)

    assert swapped.invoke({"text": REVIEW})["label"] == REVIEW_LABEL
    assert app.invoke({"text": REVIEW})["label"] == "negative"
    record = next(store.records())
    assert (record.node, record.metadata["slmshift.decision"]) == ("classify", "slm")
    assert isinstance(swapped.nodes["classify"].bound.func.__closure__[0].cell_contents, FallbackChatModel)


def test_plan_validation_rejects_slm_label_and_falls_back(tmp_path, tiny_lora_dir):
    llm = ScriptedChatModel(responses=["negative"])
    store = MemoryTraceStore()

    swapped = swap_node_models(review_graph(llm).compile(), plan_file(tmp_path, tiny_lora_dir, ["negative", "neutral"]), store=store)

    assert swapped.invoke({"text": REVIEW})["label"] == "negative"
    record = next(store.records())
    assert record.metadata["slmshift.fallback_reason"] == "invalid_label"
    assert record.metadata["slmshift.slm_response"]["content"] == REVIEW_LABEL

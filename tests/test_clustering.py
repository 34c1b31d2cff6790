"""Tests of task clustering: known groups recovered (adjusted Rand index above a floor), label
calls kept as one task, templates stripped, and the analysis saved and read back."""

from __future__ import annotations

import collections
import json
import re

import pytest
from sklearn.metrics import adjusted_rand_score

from slmshift.clustering import ClusterConfig, PriceTable, TaskAnalysis, cluster_records, cluster_vectors, records_for_task
from slmshift.clustering.embeddings import SentenceEmbedder, TfidfEmbedder
from slmshift.clustering.templates import find_template
from slmshift.demo.datasets import load_bfcl
from slmshift.records import CallRecord, Message, ToolCall, Usage

# Floors for the adjusted Rand index on BFCL questions grouped by function namespace. Measured
# on this data: 0.77 with MiniLM and 0.65 with TF-IDF (deterministic for a seed).
MINILM_ARI_FLOOR = 0.65
TFIDF_ARI_FLOOR = 0.55


@pytest.fixture(scope="module")
def bfcl_families():
    """BFCL questions whose first call is `family.function`, for families of 6 or more."""
    categories = ("simple_python", "multiple", "parallel", "parallel_multiple", "live_simple", "live_multiple")
    rows = []
    for example in load_bfcl(categories):
        name = next(iter(example.ground_truth[0]))
        if "." in name:
            question = [m["content"] for m in example.messages if m["role"] == "user"][-1]
            tools = " ".join(re.sub(r"[_.]", " ", f["name"]) for f in example.functions)
            rows.append((f"{question}\ntools: {tools}", name.split(".")[0]))
    counts = collections.Counter(family for _, family in rows)
    rows = [(text, family) for text, family in rows if counts[family] >= 6]
    return [text for text, _ in rows], [family for _, family in rows]


def test_minilm_recovers_function_families(bfcl_families):
    texts, truth = bfcl_families
    labels = cluster_vectors(SentenceEmbedder().embed(texts), ClusterConfig())
    assert len(set(truth)) >= 10
    assert adjusted_rand_score(truth, labels) >= MINILM_ARI_FLOOR


def test_tfidf_recovers_function_families(bfcl_families):
    texts, truth = bfcl_families
    labels = cluster_vectors(TfidfEmbedder().embed(texts), ClusterConfig())
    assert adjusted_rand_score(truth, labels) >= TFIDF_ARI_FLOOR


def label_record(text: str, label: str) -> CallRecord:
    return CallRecord(
        messages=(Message("system", "Classify the request into one intent."), Message("user", f"Request: {text}")),
        response=Message("assistant", label),
        node="router",
        model="gpt-4o",
        usage=Usage(100, 2),
    )


def json_record(index: int, keys: tuple[str, ...]) -> CallRecord:
    return CallRecord(
        messages=(Message("user", f"Extract fields from order {index}"),),
        response=Message("assistant", json.dumps({key: index for key in keys})),
        node="extract",
    )


def test_label_calls_form_one_task():
    topics = ["card", "transfer", "exchange rate", "pin", "refund"]
    records = [label_record(f"question {i} about my {topics[i % 5]}", f"{topics[i % 5].replace(' ', '_')}_issue") for i in range(60)]
    records.append(label_record("was my payment reverted", "reverted_card_payment?"))
    analysis = cluster_records(records, embedder=TfidfEmbedder())
    assert [task.id for task in analysis.tasks] == ["router/0"]
    task = analysis.tasks[0]
    assert task.output_kind == "label"
    assert len(task.labels) == 6
    assert task.call_count == 61
    assert task.suitability >= 0.8
    assert task.cost_usd == pytest.approx(61 * (100 * 2.5 + 2 * 10.0) / 1e6)


def test_json_calls_group_by_key_set():
    records = [json_record(i, ("id", "total")) for i in range(8)] + [json_record(i, ("city", "zip")) for i in range(5)]
    analysis = cluster_records(records, embedder=TfidfEmbedder())
    assert sorted(task.call_count for task in analysis.tasks) == [5, 8]
    assert {task.output_kind for task in analysis.tasks} == {"json"}


def test_template_prefix_is_stripped():
    texts = ["where is my card", "I lost my PIN", "how do I top up", "refund please", "what is the rate"]
    records = [label_record(text, "card_arrival") for text in texts]
    template = find_template(records)
    assert template.varying_text(records[0]) == "where is my card"
    assert template.template_share(records[0]) > 0.5


def test_analysis_round_trip_and_task_records(tmp_path):
    records = [label_record(f"question {i}", f"label_{i % 3}") for i in range(12)]
    analysis = cluster_records(records, embedder=TfidfEmbedder())
    path = analysis.save(tmp_path)
    loaded = TaskAnalysis.load(tmp_path)
    assert path.name == "tasks.json"
    assert loaded.task("router/0").record_ids == analysis.task("router/0").record_ids

    found = list(records_for_task("router/0", analysis=loaded, source=records))
    assert [record.id for record in found] == [record.id for record in records]


def test_unknown_task_id_raises():
    analysis = cluster_records([label_record("q", "a")], embedder=TfidfEmbedder())
    with pytest.raises(KeyError, match="No task 'router/9'.*router/0"):
        analysis.task("router/9")


def test_tool_call_tasks_score_below_labels():
    calls = [
        CallRecord(
            messages=(Message("user", f"weather in city {i}"),),
            response=Message("assistant", "", tool_calls=(ToolCall("get_weather", {"city": str(i)}),)),
            node="tools",
        )
        for i in range(12)
    ]
    labels = [label_record(f"question {i}", "card_arrival") for i in range(12)]
    analysis = cluster_records(calls + labels, embedder=TfidfEmbedder())
    tool_tasks = [task for task in analysis.tasks_of("tools") if not task.is_noise]
    assert tool_tasks
    assert all(task.suitability < analysis.task("router/0").suitability for task in tool_tasks)
    assert tool_tasks[0].output_diversity["tool_names"] == ["get_weather"]


def test_price_table_file_rejects_bad_entry(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"my-model": [1.0]}}))
    with pytest.raises(ValueError, match=r"Invalid price models.my-model=\[1.0\]"):
        PriceTable.from_file(path)


def test_price_table_file_sets_model_price(tmp_path):
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": {"replay": [1.0, 2.0]}, "slm": [0.0, 0.0]}))
    table = PriceTable.from_file(path)
    assert table.price("replay-router").cost(1_000_000, 1_000_000) == pytest.approx(3.0)
    assert table.slm.cost(10, 10) == 0


def test_sampled_clustering_assigns_the_rest(bfcl_families):
    texts, truth = bfcl_families
    records = [
        CallRecord(
            messages=(Message("user", text),),
            response=Message("assistant", "", tool_calls=(ToolCall(family + ".call", {}),)),
            node="tools",
        )
        for text, family in zip(texts, truth)
    ]
    analysis = cluster_records(records, embedder=TfidfEmbedder(), config=ClusterConfig(max_fit_points=120))
    task_of = {record_id: task.id for task in analysis.tasks for record_id in task.record_ids}
    assert len(task_of) == len(records)
    found = [task_of[record.id] for record in records]
    assert adjusted_rand_score(truth, found) >= TFIDF_ARI_FLOOR - 0.15

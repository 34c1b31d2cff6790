"""Evaluation metrics per output kind, threshold choice and the promotion gate."""

import pytest

from slmshift.evaluation.compare import evaluate_slm, promotion_gate
from slmshift.evaluation.labels import agreement, choose_threshold, coverage_at
from slmshift.evaluation.runtime import Prices, percentile, slm_cost_per_1000, teacher_cost_per_1000
from slmshift.evaluation.structured import field_f1, schema_valid
from slmshift.evaluation.text import embedding_similarity, rouge_l
from slmshift.records import CallRecord, Message, ToolCall, Usage
from slmshift.slm.base import Generation, SLMManifest


def test_threshold_reaches_the_target_on_validation_then_reports_coverage():
    confidences = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    correct = [True, True, True, True, False, True, False, False]
    threshold = choose_threshold(confidences, correct, target=0.97)
    assert threshold == 0.8
    applied = coverage_at(confidences, correct, threshold)
    assert applied.coverage == 0.5 and applied.agreement == 1.0
    assert choose_threshold([0.9], [False], target=0.97) > 1.0


def test_agreement_rejects_lists_of_different_length():
    with pytest.raises(ValueError, match="Cannot compare 1 predictions with 2"):
        agreement(["a"], ["a", "b"])


def test_json_validity_and_field_f1():
    schema = {"type": "object", "required": ["intent"], "properties": {"intent": {"type": "string"}}}
    assert schema_valid({"intent": "x"}, schema) and not schema_valid({"x": 1}, schema)
    assert field_f1({"a": 1, "b": {"c": 2}}, {"a": 1, "b": {"c": 2}}) == 1.0
    assert field_f1({"a": 1, "b": 3}, {"a": 1, "b": 2}) == pytest.approx(0.5)


def test_text_metrics_rank_a_paraphrase_above_an_unrelated_reply():
    reference = "Your new card should arrive within five working days."
    close = "The new card will arrive in about five working days."
    far = "Exchange rates are updated every hour on weekdays."
    assert rouge_l(close, reference) > rouge_l(far, reference)
    similar, unrelated = embedding_similarity([close, far], [reference, reference])
    assert similar > unrelated + 0.2


def test_costs_and_percentiles():
    assert percentile([1, 2, 3, 4, 100], 0.5) == 3
    assert teacher_cost_per_1000(1000, 10, Prices(1.0, 2.0)) == pytest.approx(1.02)
    assert slm_cost_per_1000(36.0, Prices(slm_hourly=0.1)) == pytest.approx(0.001)


class FixedToolSLM:
    """An SLM double that answers with fixed tool calls (stands in for a fine-tuned model)."""

    name = "fixed"
    manifest = SLMManifest(kind="hf", base_model="none")

    def __init__(self, calls):
        self.calls = calls

    def generate(self, messages, *, tools=None, max_new_tokens=None):
        return Generation(Message("assistant", None, tool_calls=self.calls), output_tokens=5)


def test_tool_call_evaluation_uses_bfcl_matching():
    record = CallRecord(
        messages=(Message("user", "weather in Paris"),),
        response=Message("assistant", None, tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
        usage=Usage(100, 10),
        latency_ms=800.0,
    )
    good = evaluate_slm(FixedToolSLM((ToolCall("get_weather", {"city": "paris"}),)), [record])
    bad = evaluate_slm(FixedToolSLM((ToolCall("get_weather", {"city": "Rome"}),)), [record])
    assert good["quality"]["agreement"] == 1.0 and bad["quality"]["agreement"] == 0.0
    assert good["serving"]["teacher_latency"]["p50_ms"] == 800.0
    assert good["serving"]["cost_per_1000_calls_usd"]["teacher"] > 0


def test_gate_requires_beating_the_floor_on_both_figures():
    mine = {"model": "compact", "quality": {"agreement": 0.96, "coverage": 0.80}}
    floor = {"model": "classical", "quality": {"agreement": 0.95, "coverage": 0.85}}
    verdict = promotion_gate(mine, floor=floor, min_ratio=0.95)
    assert not verdict["promote"]
    assert any("coverage 80.0% does not beat" in reason for reason in verdict["reasons"])
    floor["quality"]["coverage"] = 0.7
    assert promotion_gate(mine, floor=floor)["promote"]
    assert not promotion_gate({"model": "x", "quality": {"agreement": 0.9}}, min_ratio=0.95)["promote"]


def test_gate_counts_agreement_above_the_threshold_when_one_was_chosen():
    quality = {"agreement": 0.91, "agreement_at_threshold": 0.97, "coverage": 0.84}
    verdict = promotion_gate({"model": "classical", "quality": quality}, min_ratio=0.95)
    assert verdict["promote"]
    assert verdict["reasons"][0] == "agreement above the threshold 97.0% >= 95.0% of the teacher's"
    assert "answers 84.0% of requests" in verdict["reasons"][1]

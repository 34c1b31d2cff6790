"""Compare an SLM with the teacher on held-out records, by output kind, and apply the gate.

`evaluate_slm` returns a plain dict (JSON-ready) with the quality figures for the task's output
kind, serving figures (latency, tokens per second, memory, cost per 1,000 calls) and, for
label tasks, the confidence threshold chosen on validation data and the coverage it gives on
the test records. `promotion_gate` decides whether the SLM may take the task over.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from slmshift.evaluation.labels import DEFAULT_TARGET_AGREEMENT, agreement, choose_threshold, coverage_at
from slmshift.evaluation.runtime import (
    Prices,
    latency_summary,
    peak_memory_mib,
    slm_cost_per_1000,
    teacher_cost_per_1000,
    tokens_per_second,
)
from slmshift.evaluation.structured import field_f1, parse_json, schema_valid
from slmshift.evaluation.tool_calls import match_calls
from slmshift.records import CallRecord
from slmshift.slm.base import Generation, SLMGenerator

logger = logging.getLogger(__name__)

DEFAULT_LATENCY_SAMPLE = 200
DEFAULT_MIN_RATIO = 0.95


def evaluate_slm(
    slm: SLMGenerator,
    test: Sequence[CallRecord],
    *,
    validation: Sequence[CallRecord] = (),
    output_kind: str | None = None,
    target_agreement: float = DEFAULT_TARGET_AGREEMENT,
    prices: Prices | None = None,
    latency_sample: int = DEFAULT_LATENCY_SAMPLE,
) -> dict[str, Any]:
    """Evaluate `slm` against the teacher's answers in `test` (validation picks the threshold).

    Label models with `label_probabilities` are scored in batches; every kind is also timed
    through `generate` on the first `latency_sample` test records, one call at a time.

    Raises:
        ValueError: `test` is empty or the output kind is unknown.
    """
    if not test:
        raise ValueError("No test records to evaluate on: the task's test split is empty.")
    kind = output_kind or test[0].output_kind or "text"
    prices = prices or Prices()
    timed = [_timed_generate(slm, record) for record in test[:latency_sample]]

    if kind == "label":
        quality = _label_quality(slm, test, validation, target_agreement)
    elif kind == "tool_call":
        quality = _tool_call_quality(slm, test, timed)
    elif kind == "json":
        quality = _json_quality(slm, test, timed)
    elif kind == "text":
        quality = _text_quality(slm, test, timed)
    else:
        raise ValueError(f"Unknown output kind {kind!r}: use label, tool_call, json or text.")
    return {
        "model": slm.name,
        "kind": slm.manifest.kind,
        "output_kind": kind,
        "test_records": len(test),
        "validation_records": len(validation),
        "quality": quality,
        "serving": _serving(timed, test, prices),
    }


def promotion_gate(
    result: dict[str, Any],
    *,
    floor: dict[str, Any] | None = None,
    min_ratio: float = DEFAULT_MIN_RATIO,
) -> dict[str, Any]:
    """Decide whether the SLM may replace the teacher, and say why.

    The SLM's agreement must reach `min_ratio` of the teacher's (the teacher agrees with itself,
    so `min_ratio` outright). When a confidence threshold was chosen, the agreement that counts
    is the one on the answers above it, because the fallback sends the rest to the teacher. For
    label tasks the SLM must also beat the classical `floor` on agreement and on coverage.
    """
    quality = result["quality"]
    thresholded = quality.get("agreement_at_threshold") is not None
    score = quality["agreement_at_threshold"] if thresholded else quality.get("agreement", quality.get("score"))
    measured = "agreement above the threshold" if thresholded else "agreement"
    passed = score is not None and score >= min_ratio
    reasons = [f"{measured} {_percent(score)} {'>=' if passed else '<'} {_percent(min_ratio)} of the teacher's"]
    if thresholded:
        reasons.append(f"answers {_percent(quality.get('coverage'))} of requests, the rest fall back")
    if floor is not None and floor.get("path", floor.get("model")) != result.get("path", result.get("model")):
        floor_quality = floor["quality"]
        for key in ("agreement", "coverage"):
            mine, theirs = quality.get(key), floor_quality.get(key)
            beats = mine is not None and theirs is not None and mine > theirs
            passed = passed and beats
            verdict = "beats" if beats else "does not beat"
            reasons.append(f"{key} {_percent(mine)} {verdict} the classical floor's {_percent(theirs)}")
    return {"promote": passed, "reasons": reasons}


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _timed_generate(slm: SLMGenerator, record: CallRecord) -> tuple[Generation, float]:
    started = time.perf_counter()
    generation = slm.generate(list(record.messages), tools=list(record.tools) or None)
    return generation, (time.perf_counter() - started) * 1000


def _answers(slm: SLMGenerator, records: Sequence[CallRecord]) -> tuple[list[str], list[float]]:
    if hasattr(slm, "label_probabilities"):
        from slmshift.training.dataset import input_text

        probabilities = slm.label_probabilities([input_text(record) for record in records])
        best = probabilities.argmax(axis=1)
        return [slm.labels[index] for index in best], [float(probabilities[row, index]) for row, index in enumerate(best)]
    answers, confidences = [], []
    for record in records:
        generation = slm.generate(list(record.messages))
        answers.append(generation.message.text.strip())
        confidences.append(generation.confidence if generation.confidence is not None else 0.0)
    return answers, confidences


def _label_quality(
    slm: SLMGenerator, test: Sequence[CallRecord], validation: Sequence[CallRecord], target: float
) -> dict[str, Any]:
    expected = [record.response.text.strip() for record in test]
    predicted, confidences = _answers(slm, test)
    correct = [p == e for p, e in zip(predicted, expected)]
    quality: dict[str, Any] = {"agreement": agreement(predicted, expected), "target_agreement": target}
    if validation:
        validation_expected = [record.response.text.strip() for record in validation]
        validation_predicted, validation_confidences = _answers(slm, validation)
        validation_correct = [p == e for p, e in zip(validation_predicted, validation_expected)]
        threshold = choose_threshold(validation_confidences, validation_correct, target=target)
        applied = coverage_at(confidences, correct, threshold)
        quality |= {
            "validation_agreement": sum(validation_correct) / len(validation_correct),
            "threshold": threshold,
            "coverage": applied.coverage,
            "agreement_at_threshold": applied.agreement,
            "answered": applied.answered,
        }
    else:
        quality["note"] = "no validation records: no confidence threshold chosen"
    return quality


def _teacher_calls(record: CallRecord) -> list[dict[str, dict[str, list[Any]]]]:
    truth = record.metadata.get("bfcl_ground_truth")
    if truth is not None:
        return truth
    return [{call.name: {key: [value] for key, value in call.arguments.items()}} for call in record.response.tool_calls]


def _tool_call_quality(
    slm: SLMGenerator, test: Sequence[CallRecord], timed: list[tuple[Generation, float]]
) -> dict[str, Any]:
    generations = [generation for generation, _ in timed] + [
        slm.generate(list(record.messages), tools=list(record.tools) or None) for record in test[len(timed):]
    ]
    matches = [
        match_calls([(call.name, call.arguments) for call in generation.message.tool_calls], _teacher_calls(record))
        for generation, record in zip(generations, test)
    ]
    reasons: dict[str, int] = {}
    for match in matches:
        if not match.matched:
            key = match.reason[:80]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "agreement": sum(match.matched for match in matches) / len(matches),
        "failure_examples": dict(sorted(reasons.items(), key=lambda item: -item[1])[:5]),
    }


def _json_quality(slm: SLMGenerator, test: Sequence[CallRecord], timed: list[tuple[Generation, float]]) -> dict[str, Any]:
    generations = [generation for generation, _ in timed] + [
        slm.generate(list(record.messages)) for record in test[len(timed):]
    ]
    valid, scores = 0, []
    for generation, record in zip(generations, test):
        value = parse_json(generation.message.text)
        schema = (record.response_format or {}).get("json_schema", {}).get("schema") if record.response_format else None
        if value is not None and schema_valid(value, schema):
            valid += 1
        scores.append(field_f1(value, parse_json(record.response.text)) if value is not None else 0.0)
    return {
        "schema_validity": valid / len(test),
        "field_f1": sum(scores) / len(scores),
        "agreement": sum(score == 1.0 for score in scores) / len(scores),
    }


def _text_quality(slm: SLMGenerator, test: Sequence[CallRecord], timed: list[tuple[Generation, float]]) -> dict[str, Any]:
    from slmshift.evaluation.text import embedding_similarity, rouge_l

    generations = [generation for generation, _ in timed] + [
        slm.generate(list(record.messages)) for record in test[len(timed):]
    ]
    predicted = [generation.message.text for generation in generations]
    expected = [record.response.text for record in test]
    similarities = embedding_similarity(predicted, expected)
    return {
        "rouge_l": sum(rouge_l(p, e) for p, e in zip(predicted, expected)) / len(expected),
        "embedding_similarity": sum(similarities) / len(similarities),
        "score": sum(similarities) / len(similarities),
    }


def _serving(timed: list[tuple[Generation, float]], test: Sequence[CallRecord], prices: Prices) -> dict[str, Any]:
    latencies = [milliseconds for _, milliseconds in timed]
    summary = latency_summary(latencies)
    teacher_latencies = [record.latency_ms for record in test if record.latency_ms is not None]
    inputs = [record.usage.input_tokens for record in test if record.usage.input_tokens is not None]
    outputs = [record.usage.output_tokens for record in test if record.usage.output_tokens is not None]
    estimated = not inputs or not outputs
    if estimated:
        # NOTE: without recorded usage, token counts are estimated as 4 characters per token.
        inputs = [sum(len(message.text) for message in record.messages) / 4 for record in test]
        outputs = [max(1.0, len(record.response.text) / 4) for record in test]
    mean_in, mean_out = sum(inputs) / len(inputs), sum(outputs) / len(outputs)
    return {
        "slm_latency": summary,
        "slm_tokens_per_second": tokens_per_second([g.output_tokens or 0 for g, _ in timed], latencies),
        "peak_memory_mib": round(peak_memory_mib(), 1),
        "teacher_latency": latency_summary(teacher_latencies) if teacher_latencies else None,
        "teacher_tokens_per_call": {"input": round(mean_in, 1), "output": round(mean_out, 1), "estimated": estimated},
        "cost_per_1000_calls_usd": {
            "teacher": teacher_cost_per_1000(mean_in, mean_out, prices),
            "slm": slm_cost_per_1000(summary["mean_ms"], prices),
            "prices": json.loads(json.dumps(prices.__dict__)),
        },
    }

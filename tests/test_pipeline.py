"""Pieces of the demo pipeline that need no training: step cache, plan history, workload split,
confidence floors and the demo command's option checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmshift.cli import main
from slmshift.demo.scoring import Answer, choose_min_confidence, score
from slmshift.demo.workload import build_workload, load_holdout, save_holdout
from slmshift.pipeline_cache import StepCache, fingerprint
from slmshift.plans import PlanEntry, PlanHistory, PlanHistoryError


def test_step_cache_hits_on_same_key(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "state")
    artifact = tmp_path / "report.html"
    artifact.write_text("report", encoding="utf-8")
    cache.save("analyze", "key-1", {"report_path": str(artifact), "calls": 3})

    assert cache.lookup("analyze", "key-1") == {"report_path": str(artifact), "calls": 3}
    assert cache.lookup("analyze", "key-2") is None


def test_step_cache_misses_when_artifact_deleted(tmp_path: Path) -> None:
    cache = StepCache(tmp_path / "state")
    models = tmp_path / "models"
    models.mkdir()
    cache.save("train", "key", {"models_dir": str(models), "nodes": {"router": {"model_dir": str(models)}}})
    models.rmdir()

    assert cache.lookup("train", "key") is None


def test_fingerprint_depends_on_every_value() -> None:
    assert fingerprint("capture", 100, 10) == fingerprint("capture", 100, 10)
    assert fingerprint("capture", 100, 10) != fingerprint("capture", 100, 11)


def test_plan_history_keeps_plans_and_rounds(tmp_path: Path) -> None:
    history = PlanHistory(tmp_path / "plans")
    assert history.next_number() == 1

    history.append(PlanEntry(number=1, path="plan-1.yaml", created_at="2026-01-01T00:00:00+00:00", source="demo"))
    history.append_round({"after_plan": 1, "plan_number": None})
    history.append(PlanEntry(number=2, path="plan-2.yaml", created_at="2026-01-02T00:00:00+00:00", source="refresh"))

    assert [entry.number for entry in history.entries()] == [1, 2]
    assert history.current().source == "refresh"
    assert history.rounds() == [{"after_plan": 1, "plan_number": None}]
    assert history.next_number() == 3


def test_plan_history_without_plan_raises(tmp_path: Path) -> None:
    with pytest.raises(PlanHistoryError, match="run `slmshift demo` first"):
        PlanHistory(tmp_path / "plans").current()


def test_invalid_plan_history_raises(tmp_path: Path) -> None:
    history = PlanHistory(tmp_path)
    history.history_path.write_text("{not json", encoding="utf-8")

    with pytest.raises(PlanHistoryError, match="Invalid plan history"):
        history.entries()


def test_workload_holds_out_unseen_requests(tmp_path: Path) -> None:
    workload = build_workload(400, 60, seed=3)

    captured = {example.text for example in workload.capture_banking}
    held_out = {example.text for example in workload.holdout_banking}
    assert workload.capture_size == 400
    assert workload.holdout_size == 60
    assert not {example.id for example in workload.capture_bfcl} & {example.id for example in workload.holdout_bfcl}
    assert not captured & held_out

    path = save_holdout(tmp_path / "holdout.jsonl", workload)
    banking, bfcl = load_holdout(path, seed=3)
    assert banking == workload.holdout_banking
    assert bfcl == workload.holdout_bfcl


def test_workload_too_large_raises() -> None:
    with pytest.raises(ValueError, match="the datasets allow at most"):
        build_workload(50_000, 100)


def test_confidence_floor_keeps_target_agreement() -> None:
    answers = [Answer(agreed=True, confidence=0.9, latency_ms=1.0)] * 8 + [
        Answer(agreed=False, confidence=0.4, latency_ms=1.0),
        Answer(agreed=True, confidence=0.3, latency_ms=1.0),
    ]

    floor = choose_min_confidence(answers, target=0.97)
    figures = score(answers, floor)

    assert floor == 0.9
    assert figures.coverage == 0.8
    assert figures.kept_agreement == 1.0
    assert figures.served_agreement == 1.0
    assert figures.agreement == 0.9


def test_confidence_floor_is_none_when_all_agree() -> None:
    answers = [Answer(agreed=True, confidence=0.5, latency_ms=None)] * 3

    assert choose_min_confidence(answers) is None


def test_demo_rejects_tiny_request_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--requests", "10"])

    assert exit_info.value.code == 2
    assert "--requests: invalid value '10': use a whole number of 50 or more" in capsys.readouterr().err


def test_demo_teacher_url_needs_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--teacher-base-url", "http://127.0.0.1:9/v1"]) == 2

    assert "--teacher-model" in capsys.readouterr().err


def test_refresh_without_plan_raises(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["refresh", "--store", str(tmp_path / "traces.db"), "--out", str(tmp_path)])

    assert code == 2
    assert "run `slmshift demo` first" in capsys.readouterr().err

"""`slmshift train` then `slmshift eval` on a slice of the real BANKING77 router traces."""

import json

import pytest

from slmshift.cli import main
from slmshift.demo.datasets import banking77_labels
from slmshift.demo.router_traces import banking77_router_records

INTENTS = set(banking77_labels()[:5])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    records = [r for r in banking77_router_records() if r.response.text in INTENTS]
    store = out / "traces.jsonl"
    store.write_text("".join(record.to_json() + "\n" for record in records))
    code = main(["train", "--store", str(store), "--out", str(out), "--task", "router",
                 "--compacts", "1", "--epochs", "3", "--threads", "1"])
    assert code == 0
    return store, out


def test_train_writes_candidates_and_a_selection(trained):
    _, out = trained
    selection = json.loads((out / "models" / "router-label" / "selected.json").read_text())
    assert set(selection["validation"]) == {"classical", "compact-0", "ensemble"}
    assert selection["chosen"] in selection["validation"]
    assert len(selection["split"]["test"]) == sum(1 for r in banking77_router_records(("test",)) if r.response.text in INTENTS)
    assert selection["reasons"]


def test_eval_reports_agreement_coverage_latency_and_cost(trained, capsys):
    store, out = trained
    assert main(["eval", "--store", str(store), "--out", str(out), "--task", "router", "--latency-sample", "20"]) == 0
    report = json.loads((out / "reports" / "eval-router-label.json").read_text())
    for result in report["results"]:
        assert 0.5 < result["quality"]["agreement"] <= 1.0
        assert 0.0 <= result["quality"]["coverage"] <= 1.0
        assert result["serving"]["slm_latency"]["p95_ms"] > 0
        assert result["serving"]["cost_per_1000_calls_usd"]["teacher"] > result["serving"]["cost_per_1000_calls_usd"]["slm"]
    assert "| model | kind | agreement |" in capsys.readouterr().out


def test_eval_without_training_names_the_fix(tmp_path, capsys):
    store = tmp_path / "traces.jsonl"
    store.write_text("".join(r.to_json() + "\n" for r in banking77_router_records(("test",), limit=30)))
    assert main(["eval", "--store", str(store), "--out", str(tmp_path)]) == 2
    assert "run `slmshift train` first" in capsys.readouterr().err

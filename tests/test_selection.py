"""The SLM catalog, memory estimates, ranking under constraints and the select command."""

import pytest

from slmshift.selection.catalog import load_catalog, memory_estimate
from slmshift.selection.rank import Constraints, TaskProfile, rank_candidates

REQUIRED_FAMILIES = {"phi", "nemotron-h", "smollm2", "hymba", "xlam", "deepseek-r1-distill", "retro",
                     "qwen2.5", "qwen3", "llama3.2", "gemma"}


def test_catalog_covers_the_families_and_sources_every_entry():
    catalog = load_catalog()
    assert REQUIRED_FAMILIES <= {candidate.family for candidate in catalog}
    for candidate in catalog:
        assert candidate.source.startswith("https://"), candidate.id
        assert candidate.tool_calling in ("native", "prompted", "none")


def test_memory_estimate_adds_weights_and_kv_cache():
    qwen = next(c for c in load_catalog() if c.id == "qwen2.5-0.5b-instruct")
    bf16 = memory_estimate(qwen, dtype="bf16", context_tokens=1024)
    # 0.49e9 * 2 bytes; KV: 2 * 24 layers * 2 heads * 64 dims * 2 bytes * 1024 tokens.
    assert bf16.weights_gib == pytest.approx(0.49e9 * 2 / 2**30, abs=1e-3)
    assert bf16.kv_cache_gib == pytest.approx(2 * 24 * 2 * 64 * 2 * 1024 / 2**30, abs=1e-3)
    assert memory_estimate(qwen, dtype="int4").weights_gib < bf16.weights_gib / 3
    with pytest.raises(ValueError, match="Unknown dtype 'fp8'"):
        memory_estimate(qwen, dtype="fp8")


def test_ranking_rejects_with_reasons_and_keeps_local_label_models():
    ranked = rank_candidates(
        TaskProfile("router/label", "label", context_tokens=400),
        Constraints(memory_budget_gib=2.0, allowed_licenses=("apache-2.0", "mit")),
    )
    by_id = {item.id: item for item in ranked}
    assert {"compact", "classical", "ensemble"} <= {item.id for item in ranked if item.kept}
    assert "budget 2.0 GiB" in by_id["phi-4-mini-instruct"].reasons[-1]
    assert "license 'llama3.2'" in by_id["llama-3.2-1b-instruct"].reasons[-1]
    assert not by_id["retro-style"].kept
    kept = [item for item in ranked if item.kept and item.kind == "lora"]
    assert kept and all(item.memory_gib <= 2.0 for item in kept)


def test_tool_call_tasks_need_tool_calling_and_prefer_native():
    ranked = rank_candidates(TaskProfile("tools/tool_call", "tool_call", context_tokens=1500))
    by_id = {item.id: item for item in ranked}
    assert not by_id["deepseek-r1-distill-qwen-1.5b"].kept
    kept = [item for item in ranked if item.kept]
    assert "compact" not in by_id
    assert by_id[kept[0].id].id in {c.id for c in load_catalog() if c.tool_calling == "native"}


def test_select_command_prints_ranking(tmp_path, capsys):
    from slmshift.cli import main
    from slmshift.demo.router_traces import banking77_router_records

    store = tmp_path / "traces.jsonl"
    store.write_text("".join(r.to_json() + "\n" for r in banking77_router_records(("test",), limit=40)))
    assert main(["select", "--store", str(store), "--out", str(tmp_path), "--memory-gib", "1.5"]) == 0
    output = capsys.readouterr().out
    assert "Task router/label" in output and "classical" in output and "rejected" in output
    assert (tmp_path / "selection.json").is_file()

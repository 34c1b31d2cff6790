"""The LlamaIndex example end to end: an AgentWorkflow captured, trained on and swapped.

The teacher is llama-index-core's MockFunctionCallingLLM answering with BANKING77's recorded
intents, because no hosted LLM can be reached here. The workflow, LlamaIndexTraceHandler,
curation, the classical trainer, ConversionPlan and swap_agent_models are the real code.
"""

from __future__ import annotations

import re
import runpy
from pathlib import Path

import pytest

from slmshift.store import TraceStore

pytestmark = pytest.mark.slow


def test_llama_index_example_swaps_router(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = runpy.run_path("examples/llama_index_agent/run.py")

    code = script["main"](["--requests", "600", "--holdout", "60", "--fast", "--out", str(tmp_path)])

    output = capsys.readouterr().out
    assert code == 0
    assert "MockFunctionCallingLLM" in output
    with TraceStore(tmp_path / "traces.db") as store:
        records = list(store.records(agent="llama-support"))
    assert len(records) == 600
    assert {record.node for record in records} == {"router"}
    assert (tmp_path / "plan.yaml").is_file()
    swapped = re.search(r"Swapped workflow: (\d+)/(\d+)", output)
    assert swapped is not None
    # About 8 requests per intent is little data: 30% is a floor far above the 1.3% of
    # guessing among 77 intents, and shows the swapped agent answers with the trained SLM.
    assert int(swapped.group(2)) == 60
    assert int(swapped.group(1)) >= 0.3 * 60

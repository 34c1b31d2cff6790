"""Tests of `slmshift analyze` on traces of the example agent over real data (300 BANKING77
requests, 200 BFCL questions), and of its report rendered in headless Chromium.

The agent's teacher is a replay model, since no hosted LLM can be reached here; the capture
handler, SQLite store, Presidio, the MiniLM embeddings and Chromium are real.
"""

from __future__ import annotations

import collections
import shutil
import stat
import subprocess

import numpy as np
import pytest

from slmshift import TraceStore
from slmshift.cli import main
from slmshift.clustering import TaskAnalysis, records_for_task
from slmshift.demo.datasets import load_banking77, load_bfcl
from slmshift.demo.support_agent import run_support_agent

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("analyze")
    store = TraceStore(folder / "traces.db")
    run_support_agent(store, banking=load_banking77("train", limit=300), bfcl=load_bfcl(limit=200))
    store.close()
    out = folder / "out"
    assert main(["analyze", "--store", str(folder / "traces.db"), "--out", str(out)]) == 0
    return out, TaskAnalysis.load(out)


def test_router_is_one_label_task(analyzed):
    out, analysis = analyzed
    router_tasks = analysis.tasks_of("router")
    assert [task.id for task in router_tasks] == ["router/0"]
    task = router_tasks[0]
    labels_present = {record.response.text for record in records_for_task(task, analysis=analysis)}
    assert task.output_kind == "label"
    assert len(task.labels) == len(labels_present)
    assert len(task.labels) >= 70
    assert task.suitability >= 0.8
    assert task.call_count >= 290


def test_bfcl_calls_group_by_function(analyzed):
    out, analysis = analyzed
    tasks = [task for task in analysis.tasks_of("tool_caller") if not task.is_noise]
    assert len(tasks) >= 5
    assert {task.output_kind for task in tasks} == {"tool_call"}

    # Records of one function must mostly land in one task: functions are not split across tasks.
    task_of = {}
    for task in tasks:
        for record in records_for_task(task, analysis=analysis):
            task_of[record.id] = (task.id, record.response.tool_calls[0].name)
    by_function = collections.defaultdict(list)
    for task_id, function in task_of.values():
        by_function[function].append(task_id)
    repeated = {name: ids for name, ids in by_function.items() if len(ids) >= 2}
    kept_together = sum(collections.Counter(ids).most_common(1)[0][1] for ids in repeated.values())
    assert repeated
    assert kept_together / sum(len(ids) for ids in repeated.values()) >= 0.8


def test_analyze_writes_private_curated_file(analyzed):
    out, analysis = analyzed
    curated = out / "curated.jsonl"
    assert stat.S_IMODE(curated.stat().st_mode) == 0o600
    assert analysis.curated_path == str(curated.resolve())
    assert analysis.records_analyzed == sum(1 for _ in curated.open())


def test_analyze_empty_store_fails(tmp_path, capsys):
    code = main(["analyze", "--store", str(tmp_path / "empty.db"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "No calls to analyse" in capsys.readouterr().err


def test_analyze_rejects_bad_traffic_days(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["analyze", "--store", str(tmp_path / "x.db"), "--out", str(tmp_path), "--traffic-days", "0"])
    assert exit_info.value.code == 2
    assert "--traffic-days: invalid value '0': use a number greater than 0" in capsys.readouterr().err


@pytest.mark.chromium
def test_report_renders_in_chromium(analyzed, tmp_path):
    from PIL import Image

    out, analysis = analyzed
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Chromium is missing: install Debian's `chromium` package"
    report = (out / "report.html").resolve()
    html = report.read_text(encoding="utf-8")
    assert "<script src=" not in html
    assert 'src="http' not in html
    assert "Plotly.newPlot" in html

    common = [chromium, *CHROMIUM_FLAGS, "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", report.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--user-data-dir={tmp_path / 'profile-shot'}", "--window-size=1280,1800", f"--screenshot={shot}", report.as_uri()],
        capture_output=True, timeout=120, check=True,
    )

    router = analysis.task("router/0")
    assert f'id="calls">{analysis.records_analyzed:,}<' in dom
    assert f"classify into {len(router.labels)} labels" in dom
    assert 'id="monthly-savings">$' in dom
    assert dom.count('class="main-svg"') >= 4, "plotly drew fewer than 4 plots"

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape[1] == 1280
    assert pixels.std() > 20, "the screenshot is blank"

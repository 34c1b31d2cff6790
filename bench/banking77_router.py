"""Train and evaluate the router's SLM on the real BANKING77 traces with `slmshift train` and
`slmshift eval`, timing each step; the figures go to docs/benchmarks.md (`## Training`).

Usage: python bench/banking77_router.py [--out DIR] [--compacts N] [--epochs N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from slmshift.cli import main
from slmshift.demo.router_traces import banking77_router_records


def export_records(path: Path) -> int:
    records = banking77_router_records()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json() + "\n")
    return len(records)


def run() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=".slmshift-bench/banking77")
    parser.add_argument("--compacts", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    out = Path(args.out)
    store = out / "router-traces.jsonl"
    print(f"{export_records(store)} router records written to {store}")

    started = time.perf_counter()
    code = main(["train", "--store", str(store), "--out", str(out), "--task", "router",
                 "--compacts", str(args.compacts), "--epochs", str(args.epochs), "--threads", str(args.threads)])
    train_seconds = time.perf_counter() - started
    assert code == 0, f"slmshift train failed with {code}"
    started = time.perf_counter()
    code = main(["eval", "--store", str(store), "--out", str(out), "--task", "router", "--all"])
    eval_seconds = time.perf_counter() - started
    assert code == 0, f"slmshift eval failed with {code}"
    print(json.dumps({"train_seconds": round(train_seconds, 1), "eval_seconds": round(eval_seconds, 1)}))


if __name__ == "__main__":
    run()

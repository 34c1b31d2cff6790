"""Measure the write and read throughput of the SQLite trace store, side by side in one run.

    python bench/store_throughput.py [--records N]

`add` is timed twice: until the last call returns (the caller's rate) and until `flush`
returns (the committed rate). `add_many` and `records` run on a second file. CPU seconds
are printed next to wall seconds, because on a busy machine wall time measures the load too.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slmshift.records import CallRecord, Message, Usage  # noqa: E402
from slmshift.store import TraceStore  # noqa: E402

logger = logging.getLogger(__name__)

START = datetime(2026, 1, 31, tzinfo=timezone.utc)


def make_records(count: int) -> list[CallRecord]:
    """Build classification calls the size of a BANKING77 intent request."""
    return [
        CallRecord(
            trace_id=f"trace-{number // 5}",
            agent="support-bot",
            node="classify",
            model="gpt-4o-mini",
            provider="openai",
            messages=(
                Message("system", "Classify the customer request into one of 77 banking intents."),
                Message(
                    "user", f"I still have not received my new card, it has been {number} days."
                ),
            ),
            response=Message("assistant", "card_arrival"),
            usage=Usage(input_tokens=60, output_tokens=3),
            latency_ms=300.0,
            started_at=START + timedelta(milliseconds=number),
            metadata={"thread_id": f"thread-{number % 100}"},
        )
        for number in range(count)
    ]


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Run `action`; return its wall and process CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000, help="records per measurement")
    count = parser.parse_args().records
    records = make_records(count)

    with tempfile.TemporaryDirectory() as folder:
        store = TraceStore(Path(folder) / "add.db")
        caller = timed(lambda: [store.add(record) for record in records])
        committed = timed(lambda: store.flush())
        dropped = store.stats["dropped"]
        store.close()

        other = TraceStore(Path(folder) / "add_many.db")
        bulk = timed(lambda: other.add_many(records))
        read = timed(lambda: sum(1 for _ in other.records()))
        other.close()

    print(f"{count} records, dropped by add: {dropped}")
    print(f"{'step':<26}{'records/s (wall)':>18}{'records/s (CPU)':>18}")
    rows = [
        ("add, caller returns", caller),
        ("add, committed (flush)", (caller[0] + committed[0], caller[1] + committed[1])),
        ("add_many", bulk),
        ("records() read", read),
    ]
    for name, (wall, cpu) in rows:
        print(f"{name:<26}{count / wall:>18,.0f}{count / max(cpu, 1e-9):>18,.0f}")


if __name__ == "__main__":
    main()

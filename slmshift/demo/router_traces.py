"""BANKING77 as router traces: the calls the example agent's router node makes, answered by the
dataset's labels (the teacher), shaped exactly as the agent sends them.

Rows from `train.csv` are pinned to `fit` (train or validation) and rows from `test.csv` to
`test`, so evaluation runs on the dataset's own 3,080 test requests.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from slmshift.demo.datasets import banking77_labels, load_banking77
from slmshift.demo.prompts import ROUTER_NODE, router_system_prompt
from slmshift.records import CallRecord, Message

logger = logging.getLogger(__name__)

AGENT = "support-bot"
TEACHER_MODEL = "banking77-labels"
_EPOCH = datetime(2026, 1, 1, tzinfo=timezone.utc)


def banking77_router_records(
    splits: tuple[str, ...] = ("train", "test"),
    *,
    limit: int | None = None,
    data_dir: Path | None = None,
) -> list[CallRecord]:
    """Router call records for the BANKING77 `splits`, with stable ids and start times."""
    labels = banking77_labels(data_dir)
    system = Message(role="system", content=router_system_prompt(labels))
    records = []
    for split in splits:
        for index, example in enumerate(load_banking77(split, limit=limit, data_dir=data_dir)):
            records.append(
                CallRecord(
                    id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"banking77/{split}/{index}/{example.text}")),
                    agent=AGENT,
                    node=ROUTER_NODE,
                    model=TEACHER_MODEL,
                    provider="replay",
                    messages=(system, Message(role="user", content=example.text)),
                    response=Message(role="assistant", content=example.label),
                    output_kind="label",
                    started_at=_EPOCH + timedelta(seconds=len(records)),
                    metadata={"split": "test" if split == "test" else "fit", "source": f"banking77/{split}"},
                )
            )
    return records

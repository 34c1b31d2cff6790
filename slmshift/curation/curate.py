"""The curation pass: filter, redact and deduplicate records, and report what was removed.

`curate(records)` returns the curated copies and a `CurationReport`. `curate_store` reads a
store and writes the curated copies to another store or a JSON Lines file; it never edits the
raw records in place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmshift.curation.dedupe import DEFAULT_NEAR_THRESHOLD, find_exact_duplicates, find_near_duplicates
from slmshift.curation.filters import RecordFilter, standard_filters
from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# Examples of removed record ids kept per filter in the report.
MAX_EXAMPLE_IDS = 5


@dataclass
class FilterCount:
    """How many records one filter removed, why, and a few of their ids."""

    name: str
    reason: str
    removed: int = 0
    example_ids: list[str] = field(default_factory=list)

    def add(self, record: CallRecord) -> None:
        self.removed += 1
        if len(self.example_ids) < MAX_EXAMPLE_IDS:
            self.example_ids.append(record.id)


@dataclass
class CurationReport:
    """Outcome of a curation pass: records in and out, removals per filter, redactions."""

    input_records: int = 0
    kept_records: int = 0
    filters: list[FilterCount] = field(default_factory=list)
    redacted_records: int = 0
    redacted_values: int = 0

    @property
    def removed(self) -> dict[str, int]:
        """Removed records per filter name."""
        return {count.name: count.removed for count in self.filters}

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_records": self.input_records,
            "kept_records": self.kept_records,
            "redacted_records": self.redacted_records,
            "redacted_values": self.redacted_values,
            "filters": [vars(count) for count in self.filters],
        }

    def summary(self) -> str:
        """Return one line per filter that removed records, after a totals line."""
        lines = [f"{self.kept_records} of {self.input_records} records kept, {self.redacted_values} values redacted"]
        for count in self.filters:
            if count.removed:
                lines.append(f"  {count.name}: {count.removed} removed ({count.reason})")
        return "\n".join(lines)


@dataclass(frozen=True)
class CurationConfig:
    """Settings of a curation pass.

    Attributes:
        redact: Redact personal data and secrets with a default `Redactor`.
        redactor: A redactor to use in place of the default; `None` with `redact=True` builds one.
        exclude_nodes: Nodes whose records are dropped.
        exclude_agents: Agents whose records are dropped.
        drop_exact_duplicates: Drop records identical to an earlier one.
        near_duplicate_threshold: Jaccard similarity of requests at which a record with the
            same node and output as an earlier one is dropped; `None` keeps near duplicates.
    """

    redact: bool = True
    redactor: Callable[[CallRecord], CallRecord] | None = None
    exclude_nodes: tuple[str, ...] = ()
    exclude_agents: tuple[str, ...] = ()
    drop_exact_duplicates: bool = True
    near_duplicate_threshold: float | None = DEFAULT_NEAR_THRESHOLD


def curate(
    records: Iterable[CallRecord],
    config: CurationConfig | None = None,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[list[CallRecord], CurationReport]:
    """Filter, redact and deduplicate `records`; return the curated copies and a report.

    Filters run first (failed, empty, truncated, refusal, excluded nodes and agents), then
    redaction, then exact and near deduplication, so records that differ only in a redacted
    value count as duplicates. `progress` is called with the number of records redacted so far.
    """
    config = config or CurationConfig()
    report = CurationReport()
    kept = _apply_filters(records, standard_filters(
        exclude_nodes=config.exclude_nodes, exclude_agents=config.exclude_agents
    ), report)

    redactor = config.redactor
    if redactor is None and config.redact:
        from slmshift.curation.redaction import Redactor

        redactor = Redactor()
    if redactor is not None:
        kept = _redact_all(kept, redactor, report, progress)

    if config.drop_exact_duplicates:
        kept = _drop(kept, find_exact_duplicates(kept), report,
                     "exact_duplicate", "identical to an earlier call of the same node")
    if config.near_duplicate_threshold is not None:
        near = find_near_duplicates(kept, threshold=config.near_duplicate_threshold)
        kept = _drop(kept, near, report, "near_duplicate",
                     f"request at least {config.near_duplicate_threshold:.0%} similar to an earlier one "
                     "with the same node and output")

    report.kept_records = len(kept)
    return kept, report


def curate_store(
    source: Any,
    destination: Any,
    config: CurationConfig | None = None,
    **filters: Any,
) -> CurationReport:
    """Curate the records of `source` matching `filters` into `destination`.

    `destination` is a `TraceStore` or the path of a JSON Lines file to write. The source's
    records are never edited; curated copies keep their ids, so curating twice into the same
    store adds nothing new.
    """
    if destination is source:
        raise ValueError(
            "The curation destination is the source store: pass another store or a .jsonl path, "
            "so the raw records stay as captured."
        )
    curated, report = curate(source.records(**filters), config)
    if isinstance(destination, (str, Path)):
        _write_jsonl(Path(destination), curated)
    else:
        destination.add_many(curated)
    return report


def _apply_filters(
    records: Iterable[CallRecord], filters: list[RecordFilter], report: CurationReport
) -> list[CallRecord]:
    counts = [FilterCount(record_filter.name, record_filter.reason) for record_filter in filters]
    report.filters.extend(counts)
    kept = []
    for record in records:
        report.input_records += 1
        for record_filter, count in zip(filters, counts):
            if record_filter.drops(record):
                count.add(record)
                break
        else:
            kept.append(record)
    return kept


def _redact_all(
    records: list[CallRecord],
    redactor: Callable[[CallRecord], CallRecord],
    report: CurationReport,
    progress: Callable[[int], None] | None,
) -> list[CallRecord]:
    redacted = []
    for index, record in enumerate(records, start=1):
        copy = redactor(record)
        if copy is not record:
            report.redacted_records += 1
            report.redacted_values += int(copy.metadata.get("redactions", 0))
        redacted.append(copy)
        if progress is not None and index % 1000 == 0:
            progress(index)
    return redacted


def _drop(
    records: list[CallRecord], indexes: set[int], report: CurationReport, name: str, reason: str
) -> list[CallRecord]:
    count = FilterCount(name, reason)
    report.filters.append(count)
    kept = []
    for index, record in enumerate(records):
        if index in indexes:
            count.add(record)
        else:
            kept.append(record)
    return kept


def _write_jsonl(path: Path, records: list[CallRecord]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(record.to_json())
            handle.write("\n")
    path.chmod(0o600)

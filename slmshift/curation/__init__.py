"""Curation: redaction of personal data and secrets, record filters and deduplication."""

from slmshift.curation.curate import CurationConfig, CurationReport, FilterCount, curate, curate_store
from slmshift.curation.filters import RecordFilter, standard_filters

__all__ = [
    "CurationConfig",
    "CurationReport",
    "FilterCount",
    "RecordFilter",
    "curate",
    "curate_store",
    "standard_filters",
]

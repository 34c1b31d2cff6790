"""Separation of a node's fixed prompt template from the part of each request that varies.

Within one node, a message position whose text is the same in most records (a system prompt,
an instruction) is template. In the other messages, the prefix and suffix that all records
share (such as "Customer request: ") are template too. What remains is what varies.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

# A message position whose most common text is in at least this share of records is template.
CONSTANT_SHARE = 0.9
# Prefixes and suffixes are computed on at most this many records.
SAMPLE_SIZE = 500


@dataclass(frozen=True)
class Template:
    """The fixed part of a node's prompts: constant messages, and a shared prefix and suffix."""

    constant: dict[int, str]
    prefix: str
    suffix: str

    def varying_text(self, record: CallRecord) -> str:
        """Return the parts of `record`'s messages that are not template."""
        parts = []
        for position, message in enumerate(record.messages):
            text = message.text
            if self.constant.get(position) == text:
                continue
            if self.prefix and text.startswith(self.prefix):
                text = text[len(self.prefix):]
            if self.suffix and text.endswith(self.suffix):
                text = text[: len(text) - len(self.suffix)]
            parts.append(text)
        return "\n".join(parts).strip()

    def template_share(self, record: CallRecord) -> float:
        """Return the share of the prompt's characters that are template, from 0 to 1."""
        total = sum(len(message.text) for message in record.messages)
        if total == 0:
            return 0.0
        return max(0.0, 1.0 - len(self.varying_text(record)) / total)


def find_template(records: Sequence[CallRecord]) -> Template:
    """Find the template shared by `records`, which should all come from one node."""
    sample = list(records[:SAMPLE_SIZE])
    if not sample:
        return Template({}, "", "")

    constant = {}
    positions = max(len(record.messages) for record in sample)
    for position in range(positions):
        texts = Counter(r.messages[position].text for r in sample if len(r.messages) > position)
        text, count = texts.most_common(1)[0]
        if count >= CONSTANT_SHARE * len(sample) and len(sample) > 1:
            constant[position] = text

    varying = [
        message.text
        for record in sample
        for position, message in enumerate(record.messages)
        if constant.get(position) != message.text
    ]
    if len(varying) < 2:
        return Template(constant, "", "")
    prefix = os.path.commonprefix(varying)
    suffix = os.path.commonprefix([text[::-1] for text in varying])[::-1]
    return Template(constant, _cut_to_word(prefix), _cut_suffix_to_word(suffix))


def _cut_to_word(prefix: str) -> str:
    """Shorten a shared prefix to end at whitespace, so no word is split."""
    if not prefix or prefix[-1].isspace():
        return prefix
    cut = max(prefix.rfind(" "), prefix.rfind("\n"))
    return prefix[: cut + 1] if cut >= 0 else ""


def _cut_suffix_to_word(suffix: str) -> str:
    if not suffix or suffix[0].isspace():
        return suffix
    cuts = [index for index in (suffix.find(" "), suffix.find("\n")) if index >= 0]
    return suffix[min(cuts):] if cuts else ""

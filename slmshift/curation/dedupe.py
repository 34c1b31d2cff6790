"""Exact and near-duplicate detection for call records.

Two records are duplicates only within the same node and with the same output: a request
phrased twice with the same answer teaches nothing new, while the same request with another
answer is kept (it may be a label change worth seeing). Near duplicates are found with
MinHash signatures over character 4-grams of the normalised request, candidate pairs from
locality-sensitive hashing (bands of rows), and a Jaccard check on the real shingle sets.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from slmshift.records import CallRecord

logger = logging.getLogger(__name__)

SHINGLE_CHARS = 4
NUM_PERMUTATIONS = 32
BANDS = 16
DEFAULT_NEAR_THRESHOLD = 0.85

_MERSENNE_PRIME = np.uint64((1 << 61) - 1)
_SPACES = re.compile(r"\s+")
_PUNCTUATION = re.compile(r"[^\w\s<>]")


def request_text(record: CallRecord) -> str:
    """Return the text of the non-system messages, the part of a request that varies most."""
    parts = [message.text for message in record.messages if message.role != "system"]
    return "\n".join(parts)


def output_key(record: CallRecord) -> str:
    """Return a canonical form of the record's output: its text and its tool calls."""
    response = record.response
    if response is None:
        return ""
    calls = [[call.name, call.arguments] for call in response.tool_calls]
    return json.dumps([response.text.strip(), calls], sort_keys=True, ensure_ascii=False, default=str)


def exact_key(record: CallRecord) -> str:
    """Return a digest of everything that makes a call: node, messages, tools and output."""
    payload = json.dumps(
        [
            record.node,
            [message.to_dict() for message in record.messages],
            [tool.to_dict() for tool in record.tools],
            output_key(record),
        ],
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.blake2b(payload.encode("utf-8"), digest_size=16).hexdigest()


def find_exact_duplicates(records: Sequence[CallRecord]) -> set[int]:
    """Return indexes of records identical to an earlier one."""
    seen: set[str] = set()
    duplicates = set()
    for index, record in enumerate(records):
        key = exact_key(record)
        if key in seen:
            duplicates.add(index)
        seen.add(key)
    return duplicates


def find_near_duplicates(
    records: Sequence[CallRecord], *, threshold: float = DEFAULT_NEAR_THRESHOLD, seed: int = 0
) -> set[int]:
    """Return indexes of records whose request is a near copy of an earlier record's.

    Only records of the same node with the same output are compared. A record is a near
    duplicate when the Jaccard similarity of its request's character 4-grams with an earlier
    kept record's is at least `threshold`.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"Invalid near-duplicate threshold {threshold!r}: use a number in (0, 1].")

    groups: dict[tuple[str | None, str], list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        groups[(record.node, output_key(record))].append(index)

    shingles = {}
    candidates = [indexes for indexes in groups.values() if len(indexes) > 1]
    for indexes in candidates:
        for index in indexes:
            shingles[index] = _shingles(request_text(records[index]))
    signatures = _minhash({index: shingles[index] for index in shingles}, seed=seed)

    duplicates: set[int] = set()
    for indexes in candidates:
        duplicates |= _near_in_group(indexes, shingles, signatures, threshold)
    return duplicates


def _near_in_group(
    indexes: list[int],
    shingles: dict[int, np.ndarray],
    signatures: dict[int, np.ndarray],
    threshold: float,
) -> set[int]:
    rows = NUM_PERMUTATIONS // BANDS
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    duplicates = set()
    for index in indexes:
        signature = signatures[index]
        keys = [(band, signature[band * rows : (band + 1) * rows].tobytes()) for band in range(BANDS)]
        earlier = {other for key in keys for other in buckets.get(key, ())}
        if any(_jaccard(shingles[index], shingles[other]) >= threshold for other in earlier):
            duplicates.add(index)
            continue
        for key in keys:
            buckets[key].append(index)
    return duplicates


def _normalise(text: str) -> str:
    return _SPACES.sub(" ", _PUNCTUATION.sub(" ", text.lower())).strip()


def _shingles(text: str) -> np.ndarray:
    text = _normalise(text)
    if len(text) <= SHINGLE_CHARS:
        grams = {text}
    else:
        grams = {text[start : start + SHINGLE_CHARS] for start in range(len(text) - SHINGLE_CHARS + 1)}
    hashes = np.fromiter((zlib.crc32(gram.encode("utf-8")) for gram in grams), dtype=np.uint64, count=len(grams))
    return np.unique(hashes)


def _minhash(shingles: dict[int, np.ndarray], *, seed: int) -> dict[int, np.ndarray]:
    """Compute MinHash signatures with universal hashing (a * x + b) mod a Mersenne prime."""
    generator = np.random.default_rng(seed)
    a = generator.integers(1, 1 << 31, size=NUM_PERMUTATIONS, dtype=np.uint64)
    b = generator.integers(0, 1 << 31, size=NUM_PERMUTATIONS, dtype=np.uint64)
    signatures = {}
    for index, values in shingles.items():
        # a < 2^31 and values < 2^32, so a * values + b stays below 2^64.
        hashed = (np.outer(values, a) + b) % _MERSENNE_PRIME
        signatures[index] = hashed.min(axis=0)
    return signatures


def _jaccard(left: np.ndarray, right: np.ndarray) -> float:
    union = np.union1d(left, right).size
    if union == 0:
        return 1.0
    return np.intersect1d(left, right, assume_unique=True).size / union

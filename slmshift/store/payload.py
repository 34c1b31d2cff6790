"""How every SQL backend splits a record into queryable columns and one payload, and back.

The columns (agent, node, model, times, tokens, ...) stay in clear so that filters and reports
work without a key. Everything else, the private part (messages, response, tools, error text,
metadata), goes into the payload: UTF-8 JSON, or AES-GCM ciphertext when the store is encrypted.

The store-level encryption mode is recorded in the store's meta table (`encryption` is
`none` or `aes-256-gcm`); `resolve_mode` decides, at open time, whether this process may read
and write the store with the keys it was given, so plaintext never lands beside ciphertext.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slmshift.records import CallRecord
from slmshift.store.encryption import (
    CIPHER_NAME,
    KEY_ENV,
    KEY_FILE_ENV,
    EncryptionError,
    MissingKeyError,
    PayloadCipher,
    StoreKey,
)

logger = logging.getLogger(__name__)

PLAINTEXT = "none"
ENCRYPTION_META_KEY = "encryption"

# Columns every SQL backend keeps in clear; the payload holds every other record field.
METADATA_COLUMNS: tuple[str, ...] = (
    "id",
    "trace_id",
    "parent_id",
    "agent",
    "node",
    "model",
    "provider",
    "output_kind",
    "started_at",
    "latency_ms",
    "input_tokens",
    "output_tokens",
    "finish_reason",
    "step",
    "schema_version",
)


@dataclass(frozen=True)
class EncodedRecord:
    """One row: clear `columns`, the `payload` bytes and the id of the key that sealed them."""

    columns: dict[str, Any]
    payload: bytes
    key_id: str | None


def encode_record(record: CallRecord, cipher: PayloadCipher | None) -> EncodedRecord:
    """Split `record` into columns and a payload, encrypting the payload when `cipher` is given."""
    data = record.to_dict()
    usage = data.pop("usage")
    columns = {name: data.pop(name) for name in METADATA_COLUMNS if name in data}
    columns["started_at"] = record.started_at
    columns["input_tokens"] = usage["input_tokens"]
    columns["output_tokens"] = usage["output_tokens"]
    plaintext = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if cipher is None:
        return EncodedRecord(columns, plaintext, None)
    return EncodedRecord(columns, cipher.encrypt(plaintext, record_id=record.id), cipher.key_id)


def decode_record(
    columns: Mapping[str, Any],
    payload: bytes,
    key_id: str | None,
    cipher: PayloadCipher | None,
) -> CallRecord:
    """Rebuild a record from a row written by `encode_record`.

    Raises:
        MissingKeyError: the payload is encrypted and `cipher` is None or lacks its key.
        EncryptionError: the payload failed authentication.
    """
    record_id = str(columns["id"])
    if key_id is not None:
        if cipher is None:
            raise MissingKeyError(missing_key_message(f"record {record_id}"))
        payload = cipher.decrypt(payload, key_id=key_id, record_id=record_id)
    data = json.loads(bytes(payload).decode("utf-8"))
    data.update({name: value for name, value in columns.items() if name in METADATA_COLUMNS})
    data["usage"] = {
        "input_tokens": columns.get("input_tokens"),
        "output_tokens": columns.get("output_tokens"),
    }
    started_at = columns["started_at"]
    data["started_at"] = started_at.isoformat() if isinstance(started_at, datetime) else started_at
    return CallRecord.from_dict(data)


def missing_key_message(what: str) -> str:
    return (
        f"The trace store holds encrypted payloads ({what}) but no key was given: set {KEY_ENV} "
        f"(base64 of 32 bytes) or {KEY_FILE_ENV} (a 0600 file holding it), or pass keys=[...]."
    )


def resolve_mode(
    stored_mode: str | None, *, has_records: bool, keys: Sequence[StoreKey], location: str
) -> tuple[str, PayloadCipher | None]:
    """Decide the store's encryption mode from the recorded mode and the keys given.

    Returns the mode to record (unchanged unless the store is new or empty) and the cipher to
    use, or None for a plaintext store.

    Raises:
        MissingKeyError: the store is encrypted and no key was given.
        EncryptionError: a key was given for a store that already holds plaintext records.
    """
    if stored_mode not in (None, PLAINTEXT, CIPHER_NAME):
        raise EncryptionError(
            f"Trace store {location} records encryption mode {stored_mode!r}, which this "
            f"slmshift does not know ({PLAINTEXT!r} or {CIPHER_NAME!r}): upgrade slmshift."
        )
    if stored_mode == CIPHER_NAME:
        if not keys:
            raise MissingKeyError(missing_key_message(location))
        return CIPHER_NAME, PayloadCipher(keys)
    if not keys:
        return PLAINTEXT, None
    if stored_mode == PLAINTEXT and has_records:
        raise EncryptionError(
            f"Trace store {location} holds plaintext records, and a key was given: new records "
            "would be encrypted beside plaintext ones. Open it without a key and call "
            "`store.rotate_key(key)` to encrypt every record, or unset the key."
        )
    return CIPHER_NAME, PayloadCipher(keys)

"""Encryption at rest for record payloads: AES-256-GCM with key ids stored per row.

Stores encrypt the payload of each record (messages, response, tools, metadata and the other
free-text fields) and leave the metadata columns (agent, node, model, times, tokens) in clear
so that queries still work. Each ciphertext is bound to its record id (GCM associated data),
so a payload copied onto another row fails to decrypt instead of being read as that row's.

The key comes from `SLMSHIFT_STORE_KEY` (base64 of 32 bytes) or from the file named by
`SLMSHIFT_STORE_KEY_FILE` (the same text, file mode 0600 or stricter). Older keys kept for
reading during a rotation go in `SLMSHIFT_STORE_OLD_KEYS` (comma-separated base64 keys).
Create a key with `python -c "import os,base64;print(base64.b64encode(os.urandom(32)).decode())"`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from slmshift.store.base import StoreError

logger = logging.getLogger(__name__)

KEY_ENV = "SLMSHIFT_STORE_KEY"
KEY_FILE_ENV = "SLMSHIFT_STORE_KEY_FILE"
OLD_KEYS_ENV = "SLMSHIFT_STORE_OLD_KEYS"
KEY_BYTES = 32
NONCE_BYTES = 12
CIPHER_NAME = "aes-256-gcm"
BLOB_VERSION = b"\x01"


class EncryptionError(StoreError):
    """A payload cannot be encrypted or decrypted, or a key is invalid."""


class MissingKeyError(EncryptionError):
    """The store contains ciphertext but no key was given to read or write it."""


@dataclass(frozen=True)
class StoreKey:
    """A 32-byte AES key; `key_id` is a short fingerprint stored beside each ciphertext."""

    secret: bytes = field(repr=False)
    key_id: str = ""

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise EncryptionError(
                f"An encryption key must be {KEY_BYTES} bytes, got {len(self.secret)}: "
                "create one with os.urandom(32) and pass it base64-encoded."
            )
        if not self.key_id:
            object.__setattr__(self, "key_id", hashlib.sha256(self.secret).hexdigest()[:16])

    @classmethod
    def from_base64(cls, text: str, *, source: str = "the key") -> StoreKey:
        """Parse a base64 key; the error names `source` (an env var or a file), never the key."""
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise EncryptionError(
                f"{source} is not valid base64 ({exc}): it must hold base64 of 32 random bytes."
            ) from exc
        if len(secret) != KEY_BYTES:
            raise EncryptionError(
                f"{source} decodes to {len(secret)} bytes; it must hold base64 of exactly "
                f"{KEY_BYTES} random bytes."
            )
        return cls(secret)

    @classmethod
    def generate(cls) -> StoreKey:
        return cls(os.urandom(KEY_BYTES))

    def to_base64(self) -> str:
        return base64.b64encode(self.secret).decode("ascii")


def read_key_file(path: str | Path) -> StoreKey:
    """Read a key file, refusing one that other users can read.

    Raises:
        EncryptionError: the file is missing, readable by group or others, or malformed.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise EncryptionError(f"Failed to read the key file {str(path)!r} ({exc}).") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise EncryptionError(
            f"Key file {str(path)!r} is readable by other users (mode {stat.S_IMODE(mode):o}): "
            f"run `chmod 600 {path}`."
        )
    return StoreKey.from_base64(path.read_text(encoding="ascii"), source=f"Key file {str(path)!r}")


def keys_from_env(environ: Mapping[str, str] | None = None) -> list[StoreKey]:
    """Return the active key, then older keys, from the environment; empty when none is set.

    Raises:
        EncryptionError: both the key and the key file are set, or either is malformed.
    """
    environ = os.environ if environ is None else environ
    inline, key_file = environ.get(KEY_ENV), environ.get(KEY_FILE_ENV)
    if inline and key_file:
        raise EncryptionError(f"Both {KEY_ENV} and {KEY_FILE_ENV} are set: keep only one.")
    keys = []
    if inline:
        keys.append(StoreKey.from_base64(inline, source=KEY_ENV))
    elif key_file:
        keys.append(read_key_file(key_file))
    for index, text in enumerate(filter(None, environ.get(OLD_KEYS_ENV, "").split(","))):
        keys.append(StoreKey.from_base64(text, source=f"{OLD_KEYS_ENV} entry {index + 1}"))
    return keys


def resolve_keys(keys: Sequence[StoreKey] | None) -> list[StoreKey]:
    """Return `keys` as a list, or the keys from the environment when `keys` is None.

    Raises:
        EncryptionError: `keys` is not a sequence of `StoreKey`; the message names the type
            only, since the value may be the secret itself.
    """
    if keys is None:
        return keys_from_env()
    if isinstance(keys, (str, bytes)) or not all(isinstance(key, StoreKey) for key in keys):
        raise EncryptionError(
            f"Invalid keys of type {type(keys).__name__}: pass a list of StoreKey, such as "
            f"[StoreKey.from_base64(text)], [] for no encryption, or None to read {KEY_ENV}."
        )
    return list(keys)


class PayloadCipher:
    """Encrypts payloads with the first key and decrypts with any key it holds, by key id.

    Thread contract: stateless after construction; safe to share between threads.
    """

    def __init__(self, keys: Sequence[StoreKey]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise MissingKeyError(f"No encryption key given: set {KEY_ENV} or {KEY_FILE_ENV}.")
        self._active = keys[0]
        self._aeads = {key.key_id: AESGCM(key.secret) for key in keys}

    @property
    def key_id(self) -> str:
        """Id of the key new payloads are encrypted with."""
        return self._active.key_id

    def knows(self, key_id: str) -> bool:
        return key_id in self._aeads

    def encrypt(self, plaintext: bytes, *, record_id: str) -> bytes:
        """Return version byte, nonce and ciphertext with tag, bound to `record_id`."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aeads[self._active.key_id].encrypt(nonce, plaintext, record_id.encode())
        return BLOB_VERSION + nonce + sealed

    def decrypt(self, blob: bytes, *, key_id: str, record_id: str) -> bytes:
        """Open a blob from `encrypt`.

        Raises:
            MissingKeyError: the blob's key is not among the keys given.
            EncryptionError: the blob was altered, moved to another row, or is not ours.
        """
        from cryptography.exceptions import InvalidTag

        aead = self._aeads.get(key_id)
        if aead is None:
            raise MissingKeyError(
                f"Record {record_id} is encrypted with key id {key_id!r}, which is not among the "
                f"keys given: set {KEY_ENV} to that key, or add it to {OLD_KEYS_ENV}."
            )
        blob = bytes(blob)
        if blob[:1] != BLOB_VERSION or len(blob) < 1 + NONCE_BYTES + 16:
            raise EncryptionError(f"Record {record_id} has a payload that is not slmshift ciphertext.")
        try:
            return aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], record_id.encode())
        except InvalidTag as exc:
            raise EncryptionError(
                f"Record {record_id}: payload failed authentication (altered, or copied from "
                "another row); it was not read."
            ) from exc


# -- store-level mode and row sealing ------------------------------------------------------

PLAINTEXT = "none"
ENCRYPTION_META_KEY = "encryption"


class PayloadCodec:
    """Seals the payload column of store rows, or passes it through for a plaintext store.

    Rows are in `slmshift.store._rows.COLUMNS` order: the record id first, the JSON payload
    last. A sealed row has one more value at the end, the key id (None for plaintext).
    """

    def __init__(self, cipher: PayloadCipher | None) -> None:
        self.cipher = cipher

    @property
    def mode(self) -> str:
        return PLAINTEXT if self.cipher is None else CIPHER_NAME

    def seal(self, row: Sequence[object]) -> tuple[object, ...]:
        if self.cipher is None:
            return (*row, None)
        payload = str(row[-1]).encode("utf-8")
        sealed = self.cipher.encrypt(payload, record_id=str(row[0]))
        return (*row[:-1], sealed, self.cipher.key_id)

    def open(self, row: Sequence[object]) -> tuple[object, ...]:
        """Return the row without its key id and with its payload as JSON text.

        Raises:
            MissingKeyError: the payload is sealed and this codec has no key for it.
            EncryptionError: the payload failed authentication.
        """
        *columns, key_id = row
        payload = columns[-1]
        if key_id is None:
            text = bytes(payload).decode("utf-8") if isinstance(payload, (bytes, memoryview)) else payload
            return (*columns[:-1], text)
        if self.cipher is None:
            raise MissingKeyError(missing_key_message(f"record {columns[0]}"))
        plaintext = self.cipher.decrypt(payload, key_id=str(key_id), record_id=str(columns[0]))
        return (*columns[:-1], plaintext.decode("utf-8"))


def missing_key_message(what: str) -> str:
    return (
        f"The trace store contains encrypted payloads ({what}) but no key was given: set {KEY_ENV} "
        f"(base64 of 32 bytes) or {KEY_FILE_ENV} (a 0600 file holding it), or pass keys=[...]."
    )


def resolve_mode(
    stored_mode: str | None, *, has_records: bool, keys: Sequence[StoreKey], location: str
) -> PayloadCodec:
    """Decide how this process reads and writes a store, from its recorded mode and the keys.

    A new or empty store takes the mode the keys ask for; the caller records `codec.mode`.

    Raises:
        MissingKeyError: the store is encrypted and no key was given.
        EncryptionError: a key was given for a store that already contains plaintext records,
            or the recorded mode is unknown.
    """
    if stored_mode not in (None, PLAINTEXT, CIPHER_NAME):
        raise EncryptionError(
            f"Trace store {location} records encryption mode {stored_mode!r}, which this "
            f"slmshift does not know ({PLAINTEXT!r} or {CIPHER_NAME!r}): upgrade slmshift."
        )
    if stored_mode == CIPHER_NAME:
        if not keys:
            raise MissingKeyError(missing_key_message(location))
        return PayloadCodec(PayloadCipher(keys))
    if not keys:
        return PayloadCodec(None)
    if stored_mode == PLAINTEXT and has_records:
        raise EncryptionError(
            f"Trace store {location} contains plaintext records, and a key was given: new records "
            "would be encrypted beside plaintext ones. Open it without a key and call "
            "`store.rotate_key(key)` to encrypt every record, or unset the key."
        )
    return PayloadCodec(PayloadCipher(keys))

"""Encryption of every payload Temporal stores: AES-256-GCM, several keys for rotation.

The case workflow's input, its activities' inputs and results, update requests and results and the
state carried over continue-as-new hold the caller's name, phone, identity number and story. The
data converter of every process (`disputeflow.temporal.data_converter`) runs them through
`EncryptionCodec`, so Temporal's database, its history API, `temporal workflow show` and the Web UI
only ever see ciphertext. Search attributes are not payloads the codec sees (the server must read
them): they carry stage, region, urgency and breached only.

An encrypted payload is

    metadata  encoding = "binary/encrypted", encryption-key-id = <id of the key>
    data      12-byte random nonce || AES-256-GCM(key, nonce, the whole original Payload proto,
                                                  associated data = the key id)

Keys: encrypt with the newest, decrypt with any known one; to rotate, add a key (it becomes the
newest) and keep the old ones as long as histories encrypted with them are kept. Where they come
from: `DISPUTEFLOW_PAYLOAD_KEYS` (`id:base64key,...`, newest last), else the key file
`DISPUTEFLOW_PAYLOAD_KEY_FILE`, else (the dev default) `$DISPUTEFLOW_DATA_DIR/keys/payload-keys.json`,
generated on first use (0600, in a 0700 folder). `disputeflow payload-key add` adds a key to the file.

**Payloads without the encryption marker decode as they are.** Histories recorded before
encryption (the committed `tests/histories/*.json`, which CI replays, and cases started before the
upgrade) keep replaying and reading; a payload that carries the marker but cannot be decrypted
(unknown key id, wrong key, altered bytes) is an error that says so, never garbage.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import json
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

from disputeflow.case_keys import CaseKey, CaseKeyError, CaseKeyStore, CaseKeyUnavailable
from disputeflow.keyfiles import KEYS_FOLDER, read_or_create, write_private

log = logging.getLogger(__name__)
CASE_WORKFLOW_PREFIX = "case-"  # disputeflow.contracts.workflow_id_for

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from disputeflow.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
CASE_ID = "encryption-case"  # the case whose data key encrypted the payload (not personal: case numbers are in URLs)
NONCE_BYTES = 12
KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PAYLOAD_KEY_FILE = "payload-keys.json"


class PayloadKeyError(ValueError):
    """The configured keys are unusable (bad length, bad id, duplicate, unreadable file)."""


class PayloadDecryptionError(Exception):
    """A payload carries the encryption marker but cannot be decrypted with the keys at hand."""


@dataclass(frozen=True)
class PayloadKey:
    id: str
    secret: bytes

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.fullmatch(self.id):
            raise PayloadKeyError(f"payload key id {self.id!r}: use 1-64 letters, digits, '.', '_' or '-'")
        if len(self.secret) != KEY_BYTES:
            raise PayloadKeyError(f"payload key {self.id!r}: an AES-256 key is {KEY_BYTES} bytes, "
                                  f"got {len(self.secret)}")

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return f"PayloadKey(id={self.id!r})"


def new_key(now: datetime | None = None) -> PayloadKey:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return PayloadKey(id=f"k{stamp}-{os.urandom(3).hex()}", secret=AESGCM.generate_key(bit_length=256))


ERASED_ENCODING = b"json/plain"
ERASED_MARK = "disputeflow-erased"  # metadata of the marker a destroyed case key decodes to
ERASED_DATA = b'"(erased)"'  # as disputeflow.privacy.ERASED, in JSON


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """AES-256-GCM over whole payloads; `keys` oldest first, the last one encrypts.

    With `case_keys` (a `CaseKeyStore`), a codec bound to a case workflow (`with_context`: the SDK
    binds it to the workflow a payload belongs to, `case-<case number>`, for the workflow's own
    payloads and its activities') encrypts with that case's data key instead and names the case in
    the metadata. Decoding needs no binding: the metadata says which key. A payload of an erased
    case (its key destroyed) decodes to a marker, `"(erased)"` with metadata `disputeflow-erased`,
    not an error: a whole history of several cases, or of an erased one, still reads."""

    def __init__(self, keys: Sequence[PayloadKey], case_keys: CaseKeyStore | None = None,
                 case_id: str | None = None) -> None:
        ids = [key.id for key in keys]
        if len(set(ids)) != len(ids):
            raise PayloadKeyError(f"payload key ids must be unique, got {', '.join(ids)}")
        self.keys = list(keys)
        self._ciphers = {key.id: AESGCM(key.secret) for key in keys}
        self.current = keys[-1] if keys else None
        self.case_keys = case_keys
        self.case_id = case_id

    def with_context(self, context: SerializationContext) -> EncryptionCodec:
        case_id = _case_of_workflow(getattr(context, "workflow_id", None)) if self.case_keys is not None else None
        if case_id == self.case_id:
            return self
        bound = copy.copy(self)
        bound.case_id = case_id
        return bound

    # The SDK's interface is async. AES-GCM is fast and CPU-bound, so the work is done inline; only a
    # case key not in memory is fetched from the database, in a thread.
    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self.case_id is not None and self.case_keys is not None and payloads:
            key = self.case_keys.cached(self.case_id)
            if key is None:
                key = await asyncio.to_thread(self._case_key_for_encoding)
            if key is not None:
                return self._encode_with_case_key(key, payloads)
        return self.encode_sync(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        store = self.case_keys
        if store is not None:
            wanted = {case_id for p in payloads if (case_id := p.metadata.get(CASE_ID))}
            missing = [c.decode(errors="replace") for c in wanted if store.cached(c.decode(errors="replace")) is None]
            if missing:
                await asyncio.to_thread(store.load, missing)
        return self.decode_sync(payloads)

    def _case_key_for_encoding(self) -> CaseKey | None:
        """The bound case's key, made on first use. None (the shared key encrypts) when the database
        cannot be reached: a case's deadlines do not wait for it (docs/data-protection.md)."""
        assert self.case_id is not None and self.case_keys is not None
        try:
            key = self.case_keys.get(self.case_id, create=True)
        except CaseKeyUnavailable as error:
            log.warning("payloads of case %s encrypted with the shared payload key: %s", self.case_id, error)
            return None
        if key is not None and key.destroyed:
            raise PayloadKeyError(f"case {self.case_id} was erased: nothing is written for it any more")
        return key

    def _encode_with_case_key(self, key: CaseKey, payloads: Sequence[Payload]) -> list[Payload]:
        assert key.cipher is not None
        key_id, case_id = key.key_id.encode(), key.case_id.encode()
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            data = nonce + key.cipher.encrypt(nonce, payload.SerializeToString(), key_id + b"@" + case_id)
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id, CASE_ID: case_id}, data=data))
        return encoded

    def encode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        """With the shared (newest master) key, whatever the binding."""
        if self.current is None:
            raise PayloadKeyError("no payload key to encrypt with")
        key_id = self.current.id.encode()
        cipher = self._ciphers[self.current.id]
        encoded = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            data = nonce + cipher.encrypt(nonce, payload.SerializeToString(), key_id)
            encoded.append(Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=data))
        return encoded

    def decode_sync(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(payload) for payload in payloads]

    def decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            # No marker: written before payloads were encrypted (old cases, the committed test
            # histories). Passed through unchanged, so they keep replaying and reading.
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        case_id = case_of(payload)
        if case_id is not None:
            return self._decode_case_payload(payload, case_id, key_id)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            known = ", ".join(key.id for key in self.keys) or "none"
            raise PayloadDecryptionError(
                f"a payload is encrypted with key {key_id!r}, which is not among the configured payload keys "
                f"(known: {known}); add it to DISPUTEFLOW_PAYLOAD_KEYS or the key file")
        data = payload.data
        try:
            plain = cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(
                f"a payload encrypted with key {key_id!r} does not decrypt: the configured key of that id is "
                "not the one it was encrypted with, or the payload was altered") from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded

    def _decode_case_payload(self, payload: Payload, case_id: str, key_id: str) -> Payload:
        if self.case_keys is None:
            raise PayloadDecryptionError(f"a payload of case {case_id} is encrypted with the case's data key "
                                         f"{key_id!r}, which lives in the database: without the payload keys and the "
                                         "database (the worker's settings) it cannot be read")
        try:
            key = self.case_keys.get(case_id)
        except CaseKeyError as error:
            raise PayloadDecryptionError(str(error)) from None
        if key is None:
            raise PayloadDecryptionError(f"a payload of case {case_id} is encrypted with data key {key_id!r}, "
                                         "and the database has no data key for that case")
        if key.destroyed:
            return erased_marker(case_id)
        if key.key_id != key_id:
            raise PayloadDecryptionError(f"a payload of case {case_id} names data key {key_id!r}; the case's key "
                                         f"is {key.key_id!r}")
        assert key.cipher is not None
        data = payload.data
        try:
            plain = key.cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:],
                                       key_id.encode() + b"@" + case_id.encode())
        except InvalidTag:
            raise PayloadDecryptionError(f"a payload of case {case_id} does not decrypt with the case's data key: "
                                         "it was altered") from None
        decoded = Payload()
        decoded.ParseFromString(plain)
        return decoded

    def erased_cases(self, payloads: Iterable[Payload]) -> list[str]:
        """The cases among these payloads' whose data key was destroyed (synchronous: may read the database)."""
        if self.case_keys is None:
            return []
        found = []
        for case_id in dict.fromkeys(c for c in (case_of(p) for p in payloads if is_encrypted(p)) if c):
            try:
                key = self.case_keys.get(case_id)
            except CaseKeyError:
                continue
            if key is not None and key.destroyed:
                found.append(case_id)
        return found


def erased_marker(case_id: str) -> Payload:
    return Payload(metadata={"encoding": ERASED_ENCODING, ERASED_MARK: case_id.encode()}, data=ERASED_DATA)


def is_erased_marker(payload: Payload) -> bool:
    return ERASED_MARK in payload.metadata


def _case_of_workflow(workflow_id: str | None) -> str | None:
    """`case-370102-20261202-0001` -> `370102-20261202-0001`; None for any other workflow."""
    if workflow_id and workflow_id.startswith(CASE_WORKFLOW_PREFIX) and len(workflow_id) > len(CASE_WORKFLOW_PREFIX):
        return workflow_id[len(CASE_WORKFLOW_PREFIX):]
    return None


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def case_of(payload: Payload) -> str | None:
    """The case whose data key encrypted `payload`, as its metadata names it; None for the shared keys."""
    case_id = payload.metadata.get(CASE_ID)
    return case_id.decode(errors="replace") if case_id else None


# -- Where the keys come from ---------------------------------------------------------------------


def parse_key_list(text: str) -> list[PayloadKey]:
    """`id:base64key,id:base64key` (newest last), as in DISPUTEFLOW_PAYLOAD_KEYS."""
    keys = []
    for index, item in enumerate(part.strip() for part in text.split(",")):
        if not item:
            continue
        key_id, sep, encoded = item.partition(":")
        if not sep:
            raise PayloadKeyError(f"DISPUTEFLOW_PAYLOAD_KEYS item {index + 1}: write id:base64key")
        keys.append(PayloadKey(key_id.strip(), _b64(encoded.strip(), key_id)))
    if not keys:
        raise PayloadKeyError("DISPUTEFLOW_PAYLOAD_KEYS is set but holds no key")
    return keys


def _b64(text: str, key_id: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PayloadKeyError(f"payload key {key_id!r}: not base64") from None


def read_key_file(path: Path) -> list[PayloadKey]:
    """A key file: `{"keys": [{"id": ..., "key": <base64>, "created": ...}, ...]}`, newest last."""
    try:
        document = json.loads(path.read_bytes())
        return [PayloadKey(str(item["id"]), _b64(str(item["key"]), str(item["id"]))) for item in document["keys"]]
    except OSError as error:
        raise PayloadKeyError(f"payload key file {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError) as error:
        if isinstance(error, PayloadKeyError):
            raise
        raise PayloadKeyError(f"payload key file {path}: not a key file ({type(error).__name__})") from None


def _key_file_document(keys: Sequence[PayloadKey]) -> bytes:
    items = [{"id": k.id, "key": base64.b64encode(k.secret).decode()} for k in keys]
    return (json.dumps({"keys": items}, indent=1) + "\n").encode()


def default_key_file(settings: Settings) -> Path:
    return settings.payload_key_file or settings.data_dir / KEYS_FOLDER / PAYLOAD_KEY_FILE


def load_keys(settings: Settings) -> list[PayloadKey]:
    """The payload keys, oldest first. The dev default file is generated on first use."""
    if settings.payload_keys is not None:
        return parse_key_list(settings.payload_keys.get_secret_value())
    path = default_key_file(settings)
    if settings.payload_key_file is None:
        read_or_create(path, lambda: _key_file_document([new_key()]))
    keys = read_key_file(path)
    if not keys:
        raise PayloadKeyError(f"payload key file {path} holds no key")
    return keys


def add_key(path: Path) -> PayloadKey:
    """Add a new key to a key file (created if missing): it encrypts from now on; the old ones still decrypt."""
    keys = read_key_file(path) if path.exists() else []
    key = new_key()
    write_private(path, _key_file_document([*keys, key]))
    return key


def codec_for(settings: Settings, *, case_keys: bool = True) -> EncryptionCodec:
    """The codec of every process: the payload keys, and (unless `case_keys=False`) the case data keys
    in the settings' database, read on first use."""
    keys = load_keys(settings)
    if not case_keys:
        return EncryptionCodec(keys)
    url = settings.effective_database_url

    def engine() -> Engine:
        from disputeflow.db.engine import engine_for

        return engine_for(url)

    store = CaseKeyStore(engine, [(k.id, k.secret) for k in keys], ttl=settings.case_key_cache_seconds, url=url)
    return EncryptionCodec(keys, case_keys=store)

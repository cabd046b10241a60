"""Each case's own data key, for crypto-erasure: destroy the key and what it encrypted is gone.

A case's payloads in Temporal (`disputeflow.codec`) and the free text of its audit entries
(`disputeflow.db.audit`) are encrypted with a random 256-bit key of that case alone. The key is
stored in the database (`case_data_keys`) only **wrapped**: AES-256-GCM under the newest payload
master key (`DISPUTEFLOW_PAYLOAD_KEYS` or the key file), associated data `case-data-key:<case>`, the
master key's id beside it. Neither half is enough: the database without the master keys, or the
master keys without the database row, decrypt nothing.

Erasing a case destroys its key (`destroy`): the wrapped key becomes NULL and `destroyed_at` is set,
in the erasure's transaction. No copy of the plain key is ever written anywhere; processes keep
unwrapped keys in memory only (`CaseKeyStore`), for `DISPUTEFLOW_CASE_KEY_CACHE_SECONDS`, so an
erasure made elsewhere is seen within that time (at once in the process that erased: `forget`).
When the database cannot be read and a key is cached but stale, the stale key is used: a case's
deadlines must not wait for the database.

Rotation of the master keys: old wrapped keys name their master key id and keep unwrapping as long
as that key is configured (the same rule as for payloads); keys are created under the newest.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from disputeflow.db.models import CaseDataKey

log = logging.getLogger(__name__)
KEYS = CaseDataKey.__table__  # read and written through Core: one row, no ORM identity map

NONCE_BYTES = 12
CACHE_SIZE = 10_000  # unwrapped keys kept per process (32 bytes each, plus the cipher)


class CaseKeyError(Exception):
    """A case's data key cannot be had: its master key is not configured, or the row was altered."""


class CaseKeyUnavailable(CaseKeyError):
    """The database could not be read (or written) and no copy of the key is in memory."""


@dataclass(frozen=True)
class CaseKey:
    case_id: str
    key_id: str
    cipher: AESGCM | None  # None: destroyed (the case was erased)
    destroyed_at: datetime | None = None
    secret: bytes | None = dataclasses.field(default=None, repr=False)  # for the audit text's nonces

    @property
    def destroyed(self) -> bool:
        return self.cipher is None

    def __repr__(self) -> str:  # never the key
        return f"CaseKey({self.case_id!r}, {self.key_id!r}, destroyed={self.destroyed})"


def _aad(case_id: str) -> bytes:
    return b"case-data-key:" + case_id.encode()


def wrap(master_id: str, master_secret: bytes, case_id: str, data_key: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(master_secret).encrypt(nonce, data_key, _aad(case_id) + b":" + master_id.encode())


def unwrap(master_id: str, master_secret: bytes, case_id: str, wrapped: bytes) -> bytes:
    try:
        return AESGCM(master_secret).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:],
                                             _aad(case_id) + b":" + master_id.encode())
    except InvalidTag:
        raise CaseKeyError(f"case {case_id}: its data key does not unwrap with master key {master_id!r} "
                           "(a different key of that id, or the row was altered)") from None


_STORES: weakref.WeakSet[CaseKeyStore] = weakref.WeakSet()


def forget_everywhere(case_ids: Iterable[str]) -> None:
    """Drop these cases' keys from every store of this process (after an erasure committed)."""
    case_ids = list(case_ids)
    for store in list(_STORES):
        store.forget(case_ids)


class CaseKeyStore:
    """The case data keys of one database, unwrapped with `masters` (id -> secret, newest last) and
    cached in memory for `ttl` seconds. Thread-safe; every call that may reach the database is
    synchronous (call it from a thread in async code)."""

    def __init__(self, engine: Callable[[], Engine], masters: Sequence[tuple[str, bytes]], *, ttl: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, url: str | None = None) -> None:
        self._engine = engine
        self.url = url  # the database's, for `store_for`
        self._masters = dict(masters)
        self._newest = masters[-1] if masters else None
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, CaseKey]] = OrderedDict()
        _STORES.add(self)

    # -- the cache --------------------------------------------------------------------------------

    def cached(self, case_id: str, *, stale: bool = False) -> CaseKey | None:
        # Lock-free: a dict read is atomic in CPython, and this runs for every payload. The cache
        # drops its oldest entries when full (by insertion, not by use: a key read again after its
        # time is inserted again).
        hit = self._cache.get(case_id)
        if hit is None:
            return None
        fetched, key = hit
        if not stale and self._clock() - fetched > self._ttl:
            return None
        return key

    def _remember(self, key: CaseKey) -> CaseKey:
        with self._lock:
            self._cache.pop(key.case_id, None)
            self._cache[key.case_id] = (self._clock(), key)
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return key

    def forget(self, case_ids: Iterable[str]) -> None:
        with self._lock:
            for case_id in case_ids:
                self._cache.pop(case_id, None)

    # -- the database -------------------------------------------------------------------------------

    def _from_row(self, row: Any) -> CaseKey:  # a CaseDataKey or a Core row of its table
        if row.wrapped_key is None:
            return CaseKey(row.case_id, row.key_id, None, row.destroyed_at)
        secret = self._masters.get(row.master_key_id or "")
        if secret is None:
            raise CaseKeyError(f"case {row.case_id}: its data key is wrapped by payload key {row.master_key_id!r}, "
                               "which is not among the configured payload keys")
        data_key = unwrap(row.master_key_id or "", secret, row.case_id, row.wrapped_key)
        return CaseKey(row.case_id, row.key_id, AESGCM(data_key), secret=data_key)

    def get(self, case_id: str, *, create: bool = False) -> CaseKey | None:
        """The case's key (destroyed or not), from memory while fresh, else from the database; with
        `create`, made (under the newest master key) when the case has none. None: no key and not
        created. Raises `CaseKeyUnavailable` when the database fails and nothing is in memory."""
        key = self.cached(case_id)
        if key is not None:
            return key
        try:
            with self._engine().connect() as conn:  # Core, not a Session: this runs once per case per process
                row = conn.execute(select(KEYS).where(KEYS.c.case_id == case_id)).first()
            if row is None and create:
                row = self._create(case_id)
        except SQLAlchemyError as error:
            stale = self.cached(case_id, stale=True)
            if stale is not None:
                return stale  # the database is away: the key it gave us before is still the key
            raise CaseKeyUnavailable(f"case {case_id}: its data key cannot be read "
                                     f"(database: {type(error).__name__})") from None
        return None if row is None else self._remember(self._from_row(row))

    def _create(self, case_id: str) -> Any:
        if self._newest is None:
            raise CaseKeyError("no payload master key to wrap a case data key with")
        master_id, master_secret = self._newest
        data_key = AESGCM.generate_key(bit_length=256)
        values = {"case_id": case_id, "key_id": f"dk-{os.urandom(6).hex()}", "master_key_id": master_id,
                  "wrapped_key": wrap(master_id, master_secret, case_id, data_key), "created_at": datetime.now(UTC)}
        with self._engine().begin() as conn:
            insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
            # Another process may make it first: then theirs is the key, read back either way.
            conn.execute(insert(KEYS).values(values).on_conflict_do_nothing(index_elements=["case_id"]))
            return conn.execute(select(KEYS).where(KEYS.c.case_id == case_id)).one()

    def prepare(self, case_ids: Sequence[str]) -> None:
        """Make the keys of cases about to be opened (intake's next block of case numbers) in one
        transaction, and keep them in memory: their first payloads then need no database write of
        their own. A key that exists already is kept (the database's wins); failures are left to
        the first encode, which makes the key itself."""
        if self._newest is None or not case_ids:
            return
        master_id, master_secret = self._newest
        now = datetime.now(UTC)
        rows = [{"case_id": c, "key_id": f"dk-{os.urandom(6).hex()}", "master_key_id": master_id,
                 "wrapped_key": wrap(master_id, master_secret, c, AESGCM.generate_key(bit_length=256)),
                 "created_at": now} for c in case_ids]
        try:
            engine = self._engine()
            insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
            with engine.begin() as conn:  # Core, as `get`: no ORM objects for rows only read once
                conn.execute(insert(KEYS).values(rows).on_conflict_do_nothing(index_elements=["case_id"]))
            with engine.connect() as conn:
                stored = list(conn.execute(select(KEYS).where(KEYS.c.case_id.in_(list(case_ids)))))
        except SQLAlchemyError as error:
            log.warning("case data keys not made ahead (%s): each case makes its own", type(error).__name__)
            return
        for row in stored:  # read back after the commit: only what the database holds is used
            try:
                self._remember(self._from_row(row))
            except CaseKeyError:
                pass  # `get` reports it when the key is used

    def load(self, case_ids: Iterable[str]) -> None:
        """Bring these cases' keys into memory (one query for those not fresh), so that a decode
        that follows finds them without the database. Failures are left to the decode."""
        missing = [c for c in dict.fromkeys(case_ids) if self.cached(c) is None]
        if not missing:
            return
        try:
            with Session(self._engine()) as session:
                rows = list(session.exec(select(CaseDataKey).where(CaseDataKey.case_id.in_(missing))))
        except SQLAlchemyError:
            return  # stale copies (if any) serve; `get` reports the rest
        for row in rows:
            try:
                self._remember(self._from_row(row))
            except CaseKeyError:
                pass  # `get` reports it when the payload is decoded


def destroy(session: Session, case_id: str, *, now: datetime) -> bool:
    """Destroy the case's data key inside the caller's transaction (an erasure's): the wrapped key is
    overwritten with NULL and `destroyed_at` set. True if there was a live key. Call
    `forget_everywhere([case_id])` once the transaction has committed."""
    result = session.execute(update(CaseDataKey).where(CaseDataKey.case_id == case_id,
                                                        CaseDataKey.wrapped_key.is_not(None))
                             .values(wrapped_key=None, destroyed_at=now))
    if result.rowcount:
        return True
    if session.get(CaseDataKey, case_id) is None:
        # A case whose key was never made (its payloads were written before case keys, or with the
        # shared keys): a destroyed row stops any later use of a key for it.
        session.add(CaseDataKey(case_id=case_id, key_id="dk-none", master_key_id=None, wrapped_key=None,
                                created_at=now, destroyed_at=now))
    return False


def store_for(engine: Engine) -> CaseKeyStore | None:
    """A key store of this process for `engine`'s database (the API's, the CLI's), if any."""
    from sqlalchemy.engine import make_url

    for store in list(_STORES):
        if store.url is not None and make_url(store.url) == engine.url:
            return store
    return None


# -- Free text in the audit chain -------------------------------------------------------------------
#
# The audit log is append-only and hash-chained: an erasure cannot change it. So the free text of an
# entry (notes, reasons, comments, names: every string that is not a plain token, as the erasure
# decides in the read model) is stored encrypted with the case's data key, `enc:<key id>:<base64>`,
# and the hash covers that ciphertext. Once the key is destroyed the text is gone, and the chain
# still verifies without any key. The nonce is derived from the key and the text (HMAC-SHA256, as in
# SIV), so a retried projection writes the very same entry (the chain's idempotence compares texts).

PLAIN_TOKEN = re.compile(r"^[A-Za-z0-9_:.+\-]{0,64}$")  # disputeflow.db.erasure.TOKEN: ids, enum values, times
SEALED = "enc:"
ERASED_TEXT = "(erased)"  # disputeflow.privacy.ERASED


def _text_aad(case_id: str, seq: int) -> bytes:
    return f"audit:{case_id}:{seq}".encode()


def seal_free_text(value: Any, key: CaseKey, seq: int) -> Any:
    """`value` (an event's JSON data) with every string that is not a plain token encrypted."""
    if isinstance(value, str):
        if PLAIN_TOKEN.match(value) and not value.startswith(SEALED):  # "enc:..." is always ciphertext
            return value
        if key.cipher is None or key.secret is None:
            return ERASED_TEXT  # the case was erased: nothing of it is written any more
        aad, plain = _text_aad(key.case_id, seq), value.encode()
        nonce = hmac.new(key.secret, b"nonce\0" + aad + b"\0" + plain, hashlib.sha256).digest()[:NONCE_BYTES]
        sealed = base64.b64encode(nonce + key.cipher.encrypt(nonce, plain, aad)).decode()
        return f"{SEALED}{key.key_id}:{sealed}"
    if isinstance(value, list):
        return [seal_free_text(v, key, seq) for v in value]
    if isinstance(value, dict):
        return {k: seal_free_text(v, key, seq) for k, v in value.items()}
    return value


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(SEALED)


def open_free_text(value: Any, key: CaseKey | None, seq: int) -> Any:
    """`value` with its sealed strings decrypted; `(erased)` where the key is destroyed (or missing)."""
    if is_sealed(value):
        key_id, _, sealed = value[len(SEALED):].partition(":")
        if key is None or key.cipher is None or key.key_id != key_id:
            return ERASED_TEXT
        data = base64.b64decode(sealed)
        try:
            return key.cipher.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], _text_aad(key.case_id, seq)).decode()
        except InvalidTag:
            raise CaseKeyError(f"case {key.case_id}: an audit entry's text does not decrypt (event {seq})") from None
    if isinstance(value, list):
        return [open_free_text(v, key, seq) for v in value]
    if isinstance(value, dict):
        return {k: open_free_text(v, key, seq) for k, v in value.items()}
    return value


def contains_sealed(value: Any) -> bool:
    if is_sealed(value):
        return True
    if isinstance(value, list):
        return any(contains_sealed(v) for v in value)
    if isinstance(value, dict):
        return any(contains_sealed(v) for v in value.values())
    return False

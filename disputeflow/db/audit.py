"""The tamper-evident audit log: every domain event, in one global SHA-256 hash chain.

Each `AuditEntry` stores the canonical JSON text of one event (see `entry_document`) and

    hash = chain_hash(prev_hash, canonical) = SHA-256(prev_hash + "\\n" + canonical)

where `prev_hash` is the previous entry's hash (`GENESIS_HASH` for entry 1). Entry ids are
assigned here, contiguously from 1 (not by the database sequence, which leaves gaps on rollback
in PostgreSQL), so a deleted row shows up as a gap. Altering any entry's text breaks its hash;
recomputing that hash breaks the next entry's `prev_hash`; only rewriting the whole suffix (or
cutting off the tail) goes unnoticed by the chain itself — hence auditors should record the head
hash that `verify-audit` prints and later check it with `verify-audit --expect-head`.

The database refuses UPDATE and DELETE on `audit_log` (`install_append_only_guards`); the chain
is what still catches someone with the rights to disable those triggers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session

from disputeflow.db.engine import is_sqlite
from disputeflow.db.models import AuditEntry

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64

# pg_advisory_xact_lock keys: the ASCII bytes of "auditlog" / "auditgrd" as big-endian int64s.
# Constants, so every process of every version takes the same lock.
APPEND_LOCK_KEY = int.from_bytes(b"auditlog", "big")  # 7022344802737892199
GUARD_LOCK_KEY = int.from_bytes(b"auditgrd", "big")

# -- Canonical form ----------------------------------------------------------------------------


def _json_ready(value: Any, path: str = "$") -> Any:
    """`value` as plain JSON data (dict with str keys, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return _json_ready(value.value, path)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{path}: NaN and infinities have no JSON form")
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{path}: naive datetime {value!r}: the audit log needs an aware one")
        return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    if isinstance(value, BaseModel):
        return _json_ready(value.model_dump(mode="python"), path)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if isinstance(key, Enum):
                key = key.value
            if not isinstance(key, str):
                raise TypeError(f"{path}: key {key!r} is not a string")
            out[key] = _json_ready(item, f"{path}.{key}")
        return out
    if isinstance(value, (list, tuple)):
        return [_json_ready(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [_json_ready(item, f"{path}[]") for item in value]
        return sorted(items, key=lambda item: json.dumps(item, sort_keys=True, ensure_ascii=False))
    raise TypeError(f"{path}: {type(value).__name__} has no canonical JSON form")


def canonical_json(event: Mapping[str, Any]) -> str:
    """The one text form of `event`, identical in every process and Python run.

    Rules: JSON with object keys sorted by code point and no whitespace (separators "," and ":");
    non-ASCII characters written as themselves, not \\u escapes (Chinese stays readable; the hash
    is over the UTF-8 bytes); integers as integers, floats in Python's shortest round-trip form
    (NaN/infinity rejected); aware datetimes converted to UTC and written with microseconds and
    a "Z", e.g. "2024-05-01T02:03:04.000000Z" (naive datetimes are rejected: their instant is
    unknown); dates and times in ISO 8601; enums as their value; Decimal and UUID as strings;
    tuples as lists; sets as lists in sorted order; pydantic models as their fields. Keys must be
    strings (or string enums). Text is not Unicode-normalised: it is recorded as given.
    """
    return json.dumps(
        _json_ready(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def chain_hash(prev_hash: str, canonical: str) -> str:
    """SHA-256 (hex) of `prev_hash + "\\n" + canonical`, encoded as UTF-8."""
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


# -- Appending -------------------------------------------------------------------------------


class AuditEvent(BaseModel):
    """One domain event to record."""

    case_id: str
    event_seq: int
    event_type: str
    payload: dict[str, Any]  # the full domain event as JSON-able data


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware one (UTC)")
    return moment.astimezone(dt.timezone.utc)


def entry_document(event: AuditEvent, recorded_at: dt.datetime) -> dict[str, Any]:
    """What an entry's canonical text (and so its hash) covers: the event and when it was recorded."""
    return {
        "case_id": event.case_id,
        "event_seq": event.event_seq,
        "event_type": event.event_type,
        "payload": event.payload,
        "recorded_at": _utc(recorded_at),
    }


def _lock_for_append(conn: Connection) -> None:
    """Serialise appenders. PostgreSQL: a transaction-scoped advisory lock, released at commit or
    rollback. SQLite: the caller's `write_session` already holds the write lock (BEGIN IMMEDIATE)."""
    if conn.dialect.name != "sqlite":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})


_AUDIT = AuditEntry.__table__
_HEAD = select(_AUDIT.c.id, _AUDIT.c.hash).order_by(_AUDIT.c.id.desc()).limit(1)
_INSERT = _AUDIT.insert()
_LOGGED = select(_AUDIT.c.event_seq, _AUDIT.c.canonical).where(
    _AUDIT.c.case_id == bindparam("case_id"), _AUDIT.c.event_seq.in_(bindparam("seqs", expanding=True)))


def _head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(_HEAD).first()
    return (0, GENESIS_HASH) if row is None else (row[0], row[1])


def _existing(conn: Connection, events: Sequence[AuditEvent]) -> dict[tuple[str, int], str]:
    """(case_id, event_seq) -> canonical text, for those of `events` already in the log."""
    seqs_by_case: dict[str, set[int]] = {}
    for ev in events:
        seqs_by_case.setdefault(ev.case_id, set()).add(ev.event_seq)
    found: dict[tuple[str, int], str] = {}
    for case_id, seqs in seqs_by_case.items():
        rows = conn.execute(_LOGGED, {"case_id": case_id, "seqs": sorted(seqs)})
        for seq, canonical in rows:
            found[(case_id, seq)] = canonical
    return found


def _same_event(canonical: str, event: AuditEvent) -> bool:
    recorded = json.loads(canonical)
    recorded.pop("recorded_at", None)
    new = {"case_id": event.case_id, "event_seq": event.event_seq, "event_type": event.event_type,
           "payload": event.payload}
    return canonical_json(recorded) == canonical_json(new)


def append_rows(conn: Connection, events: Sequence[AuditEvent], *, now: dt.datetime) -> list[dict[str, Any]]:
    """`append_events` on a connection, in Core statements (the projection's path): the rows added,
    as column name -> value. The caller's transaction must already see everything it wrote before."""
    if not events:
        return []
    recorded_at = _utc(now)
    _lock_for_append(conn)
    done = _existing(conn, events)
    last_id, prev_hash = _head(conn)
    added: list[dict[str, Any]] = []
    for event in events:
        key = (event.case_id, event.event_seq)
        if key in done:
            if not _same_event(done[key], event):
                log.warning(
                    "audit: event %s #%s already logged with different content; keeping the logged one",
                    event.case_id, event.event_seq,
                )
            continue
        canonical = canonical_json(entry_document(event, recorded_at))
        entry_hash = chain_hash(prev_hash, canonical)
        last_id += 1
        added.append({
            "id": last_id, "case_id": event.case_id, "event_seq": event.event_seq, "event_type": event.event_type,
            "canonical": canonical, "prev_hash": prev_hash, "hash": entry_hash, "recorded_at": recorded_at,
        })
        done[key] = canonical
        prev_hash = entry_hash
    if added:
        conn.execute(_INSERT, added)
    return added


def append_events(session: Session, events: Sequence[AuditEvent], *, now: dt.datetime) -> list[AuditEntry]:
    """Append `events`, in order, to the global chain inside the caller's transaction.

    Use a `write_session` (the caller commits). Events whose (case_id, event_seq) is already
    logged — or repeated within `events` — are skipped, so a retried activity writes nothing
    twice; a skipped event whose content differs from the logged one is reported in the log
    (the logged entry stands). Returns the entries added, written (ids and hashes set).
    """
    if not events:
        return []
    conn = session.connection()
    _lock_for_append(conn)  # before the flush, as ever (append_rows takes it again: it is re-entrant)
    session.flush()  # entries added earlier in this session count as part of the chain
    return [AuditEntry(**row) for row in append_rows(conn, events, now=now)]


# -- Verifying -------------------------------------------------------------------------------


class BrokenLink(BaseModel):
    entry_id: int
    case_id: str
    event_seq: int
    reason: str


class ChainReport(BaseModel):
    ok: bool
    checked: int  # entries found intact (when broken: those before the first broken link)
    head_hash: str | None  # hash of the last intact entry; None when there is none
    first_broken: BrokenLink | None = None


REASON_GAP = "entry ids are not contiguous: a row was deleted"
REASON_START = "the chain does not start at entry 1: a row was deleted"
REASON_PREV = "prev_hash does not point at the previous entry"
REASON_HASH = "hash does not match the entry's content"
REASON_COLUMNS = "the entry's columns do not match its hashed content"
REASON_UNREADABLE = "the entry's content is not valid JSON"


def _as_utc(moment: dt.datetime) -> dt.datetime:
    # SQLite hands back the stored UTC time without a zone.
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _columns_match(doc: Any, case_id: str, event_seq: int, event_type: str, recorded_at: dt.datetime) -> bool:
    if not isinstance(doc, dict):
        return False
    return (
        doc.get("case_id") == case_id
        and doc.get("event_seq") == event_seq
        and doc.get("event_type") == event_type
        and doc.get("recorded_at") == _json_ready(_as_utc(recorded_at))
    )


def count_entries(session: Session) -> int:
    return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def verify_chain(session: Session, *, batch_size: int = 1000, progress: Callable[[int], None] | None = None,
                 on_batch: Callable[[int], None] | None = None) -> ChainReport:
    """Walk the whole log in id order, `batch_size` rows at a time, recomputing every hash.

    Stops at the first broken link. Memory use does not grow with the log. After each batch,
    `progress` is told how many entries were checked so far (a job's progress) and `on_batch` how
    many this batch checked (a progress bar).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    columns = (
        AuditEntry.id, AuditEntry.case_id, AuditEntry.event_seq, AuditEntry.event_type,
        AuditEntry.canonical, AuditEntry.prev_hash, AuditEntry.hash, AuditEntry.recorded_at,
    )
    checked = 0
    prev_id = 0
    prev_hash = GENESIS_HASH
    head: str | None = None
    while True:
        rows = session.execute(
            select(*columns).where(AuditEntry.id > prev_id).order_by(AuditEntry.id).limit(batch_size)
        ).all()
        for entry_id, case_id, event_seq, event_type, canonical, row_prev, row_hash, recorded_at in rows:
            reason: str | None = None
            if entry_id != prev_id + 1:
                reason = REASON_START if prev_id == 0 else REASON_GAP
            elif row_prev != prev_hash:
                reason = REASON_PREV
            elif row_hash != chain_hash(prev_hash, canonical):
                reason = REASON_HASH
            else:
                try:
                    doc = json.loads(canonical)
                except ValueError:
                    reason = REASON_UNREADABLE
                else:
                    if not _columns_match(doc, case_id, event_seq, event_type, recorded_at):
                        reason = REASON_COLUMNS
            if reason is not None:
                return ChainReport(
                    ok=False, checked=checked, head_hash=head,
                    first_broken=BrokenLink(entry_id=entry_id, case_id=case_id, event_seq=event_seq, reason=reason),
                )
            checked += 1
            prev_id, prev_hash, head = entry_id, row_hash, row_hash
        if progress is not None:
            progress(checked)
        if on_batch is not None:
            on_batch(len(rows))
        if len(rows) < batch_size:
            return ChainReport(ok=True, checked=checked, head_hash=head)


def entries_for_case(session: Session, case_id: str) -> list[AuditEntry]:
    """One case's entries, in event order (the auditor's view; verify the chain for integrity)."""
    return list(
        session.execute(
            select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(AuditEntry.event_seq, AuditEntry.id)
        ).scalars()
    )


class Discrepancy(BaseModel):
    event_seq: int
    problem: str


class SourceComparison(BaseModel):
    """The audit log of one case held against the events its workflow history says it projected."""

    case_id: str
    events_in_history: int
    entries_in_log: int
    discrepancies: list[Discrepancy]

    @property
    def ok(self) -> bool:
        return not self.discrepancies


def _case_key_for(case_id: str, entries: Sequence[AuditEntry]) -> Any:
    """The case's data key, from this process's key store for the entries' database (None: none)."""
    from sqlalchemy.orm import object_session

    from disputeflow.case_keys import CaseKeyError, store_for

    session = object_session(entries[0]) if entries else None
    if session is None:
        return None
    bind = session.get_bind()
    store = store_for(getattr(bind, "engine", bind))
    if store is None:
        return None
    try:
        return store.get(case_id)
    except CaseKeyError:
        return None


_FIND_KEY: Any = object()


def readable_payload(entry: AuditEntry, key: Any) -> Any:
    """The event an entry records, its free text decrypted with the case's data key `key`
    (`(erased)` where the key is destroyed); None if the entry is unreadable JSON."""
    from disputeflow.case_keys import open_free_text

    try:
        payload = json.loads(entry.canonical)["payload"]
    except (ValueError, KeyError, TypeError):
        return None
    return open_free_text(payload, key, entry.event_seq)


def compare_with_source(case_id: str, entries: Sequence[AuditEntry], events: Sequence[Mapping[str, Any]],
                        *, key: Any = _FIND_KEY) -> SourceComparison:
    """Compare a case's log entries with the domain events (JSON form) from its Temporal history.

    Entries keep their free text encrypted with the case's data key (`disputeflow.case_keys`): it is
    decrypted with `key` (a `CaseKey`), by default the one this process's key store for the entries'
    database holds.

    The hash chain proves the log was not changed after it was written, unless someone rewrote it
    and recomputed every later hash. Temporal's history is kept by another system: an entry that
    says something other than the event the workflow projected, a missing entry or an invented one
    shows here, however consistent the chain.
    """
    # Negative event numbers are records made outside the workflow (an erasure): not in its history.
    logged = {e.event_seq: e for e in entries if e.event_seq > 0}
    if key is _FIND_KEY:  # only entries with encrypted text need the key
        sealed = any('"enc:' in e.canonical for e in logged.values())
        key = _case_key_for(case_id, list(logged.values())) if sealed else None
    source = {int(event["seq"]): event for event in events}
    problems: list[Discrepancy] = []
    for seq in sorted(source.keys() | logged.keys()):
        entry, event = logged.get(seq), source.get(seq)
        if entry is None:
            problems.append(Discrepancy(event_seq=seq, problem="in the workflow history but missing from the audit log"))
        elif event is None:
            problems.append(Discrepancy(event_seq=seq, problem="in the audit log but not in the workflow history"))
        else:
            payload = readable_payload(entry, key)
            if payload is None or canonical_json(payload) != canonical_json(event):
                problems.append(Discrepancy(
                    event_seq=seq, problem=f"the audit entry ({entry.event_type}) differs from the event the "
                                           f"workflow recorded ({event.get('type')})"))
    return SourceComparison(case_id=case_id, events_in_history=len(source), entries_in_log=len(logged),
                            discrepancies=problems)


def entry_with_hash(session: Session, entry_hash: str) -> AuditEntry | None:
    """The entry whose hash is `entry_hash` (an anchor an auditor recorded earlier), if any."""
    return session.execute(select(AuditEntry).where(AuditEntry.hash == entry_hash)).scalars().first()


# -- Append-only in the database -------------------------------------------------------------

_PG_GUARDS = [
    """
    CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION USING
            MESSAGE = 'audit_log is append-only: ' || TG_OP || ' rejected',
            ERRCODE = 'restrict_violation';
    END;
    $$
    """,
    """
    CREATE OR REPLACE TRIGGER audit_log_append_only
        BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()
    """,
    """
    CREATE OR REPLACE TRIGGER audit_log_no_truncate
        BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()
    """,
]

_SQLITE_GUARDS = [
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE rejected'); END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: DELETE rejected'); END
    """,
]


def install_append_only_guards(engine: Engine) -> None:
    """Make the database reject UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) on audit_log.

    Idempotent and safe when several processes start at once (PostgreSQL: under an advisory
    lock; CREATE OR REPLACE TRIGGER needs PostgreSQL 14+). Rejections raise IntegrityError.
    """
    # SQLite: BEGIN IMMEDIATE, or a process starting alongside could commit first and leave this
    # transaction's snapshot stale (SQLITE_BUSY_SNAPSHOT, which no busy timeout waits out).
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if is_sqlite(engine):
            for ddl in _SQLITE_GUARDS:
                conn.exec_driver_sql(ddl)
        else:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GUARD_LOCK_KEY})
            for ddl in _PG_GUARDS:
                conn.exec_driver_sql(ddl)

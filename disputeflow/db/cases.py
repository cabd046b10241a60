"""Writes of the read model: a case, its tasks, clocks and events, its notifications and audit entries.

`apply_projection` is idempotent: the workflow's activity may be retried after a partial failure
or a lost response, and a second application must write nothing twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.engine import Connection
from sqlmodel import Session

from disputeflow.case_keys import CaseKey, seal_free_text
from disputeflow.contracts import Projection
from disputeflow.db import compliance
from disputeflow.db.audit import AuditEvent, append_rows
from disputeflow.db.models import (
    CaseEventRecord, CaseRecord, CaseTaskRecord, ClockRecord, OutboxMessage, phone_digits,
)

# Core statements, not the ORM: the same rows, at a fraction of the CPU (benchmarks/projection_cost.py:
# the ORM's unit of work, attribute events and SQLModel's constructors were most of ~12 ms a snapshot).
# The compliance counters, which the ORM's flush hook keeps for sessions, are kept here explicitly.
CASES, TASKS, CLOCKS = CaseRecord.__table__, CaseTaskRecord.__table__, ClockRecord.__table__
EVENTS, OUTBOX = CaseEventRecord.__table__, OutboxMessage.__table__

_CASE_COUNT = select(CASES.c.event_count).where(CASES.c.case_id == bindparam("case_id"))
_TASK_FIELDS = ("title", "assignee_id", "due_at", "status", "completed_at")
_TASKS_OF = select(TASKS.c.task_id, *(TASKS.c[n] for n in _TASK_FIELDS)).where(TASKS.c.case_id == bindparam("case_id"))
_TASK_UPDATE = update(TASKS).where(TASKS.c.task_id == bindparam("b_task_id"))
_CLOCK_FIELDS = ("assignee_id", "due_at", "status", "next_warning_at", "breached", "breached_at", "met_at",
                 "ended_at", "warnings_fired", "paused_at", "pause_reason")
_CLOCKS_OF = select(CLOCKS.c.clock_id, CLOCKS.c.name, CLOCKS.c.region_code, CLOCKS.c.started_at,
                    *(CLOCKS.c[n] for n in _CLOCK_FIELDS)).where(CLOCKS.c.case_id == bindparam("case_id"))
_CLOCK_UPDATE = update(CLOCKS).where(CLOCKS.c.clock_id == bindparam("b_clock_id"))
_CASE_UPDATE = update(CASES).where(CASES.c.case_id == bindparam("b_case_id"))
_EVENTS_HAVE = select(EVENTS.c.seq).where(EVENTS.c.case_id == bindparam("case_id"),
                                          EVENTS.c.seq.in_(bindparam("seqs", expanding=True)))
_OUTBOX_HAVE = select(OUTBOX.c.dedupe_key).where(OUTBOX.c.dedupe_key.in_(bindparam("keys", expanding=True)))
_INSERT_CASE, _INSERT_TASKS, _INSERT_CLOCKS = insert(CASES), insert(TASKS), insert(CLOCKS)
_INSERT_EVENTS, _INSERT_OUTBOX = insert(EVENTS), insert(OUTBOX)


def apply_projection(session: Session, p: Projection, *, now: datetime, key: CaseKey | None = None) -> int:
    """Bring the read model up to date with `p`; returns how many new events were written.

    `key`: the case's data key; the free text of the audit entries is stored encrypted with it
    (`disputeflow.case_keys.seal_free_text`), so that destroying it erases that text. Without one
    (tests of the read model alone), the entries hold the event as it is.

    Written with Core statements on the session's connection, in its transaction (objects the
    session holds are flushed first); the session's identity map does not see these writes."""
    session.flush()
    conn = session.connection()
    intake = p.intake
    last_seq = max((e.seq for e in p.events), default=0)
    stored_count = conn.execute(_CASE_COUNT, {"case_id": p.case_id}).scalar()
    if stored_count is not None and last_seq and last_seq < stored_count:
        return 0  # an older projection arriving late: the row already shows a newer state
    values = {
        "stage": p.stage.value, "phase": p.phase, "mediator_id": p.mediator_id, "lawyer_id": p.lawyer_id,
        "updated_at": p.updated_at, "closed_at": p.closed_at,
        "final_outcome": p.final_outcome.value if p.final_outcome else None,
        "satisfaction": p.satisfaction, "breached": p.breached,
        "event_count": max(stored_count or 0, last_seq),
    }
    if stored_count is None:
        conn.execute(_INSERT_CASE, [{
            "case_id": p.case_id, "workflow_id": p.workflow_id, "region_code": intake.region_code,
            "channel": intake.channel.value, "category": intake.category.value,
            "dispute_type": intake.dispute_type.value, "urgency": intake.urgency.value,
            "special_groups": [g.value for g in intake.special_groups], "caller_name": intake.caller.name,
            "caller_phone": intake.caller.phone, "caller_phone_digits": phone_digits(intake.caller.phone),
            "description": intake.description, "opened_at": p.opened_at, "policy_version": p.policy_version,
            **values,
        }])
    else:
        conn.execute(_CASE_UPDATE, [{"b_case_id": p.case_id, **values}])

    _project_tasks(conn, p, now)
    _project_clocks(conn, p)
    new_events = _project_events(conn, p)
    _project_notifications(conn, p, now)
    append_rows(
        conn,
        [AuditEvent(case_id=p.case_id, event_seq=e["seq"], event_type=e["type"],
                    payload=_sealed(e, key, e["seq"]))
         for e in new_events],
        now=now,
    )
    return len(new_events)


def _sealed(payload: dict, key: CaseKey | None, seq: int) -> dict:
    return payload if key is None else seal_free_text(payload, key, seq)


def _project_tasks(conn: Connection, p: Projection, now: datetime) -> None:
    current = {f"{p.case_id}:{t.key}": t for t in p.tasks}
    stored = {row[0]: row[1:] for row in conn.execute(_TASKS_OF, {"case_id": p.case_id})}
    changed: list[dict[str, Any]] = []
    for task_id, (*_, status, _completed) in stored.items():
        if status == "open" and task_id not in current:
            changed.append({"b_task_id": task_id, "title": stored[task_id][0], "assignee_id": stored[task_id][1],
                            "due_at": stored[task_id][2], "status": "done", "completed_at": now})
    new: list[dict[str, Any]] = []
    for task_id, task in current.items():
        fields = (task.title, task.assignee_id, task.due_at, "open", None)
        before = stored.get(task_id)
        if before is None:
            new.append({"task_id": task_id, "case_id": p.case_id, "kind": task.kind,
                        "assignee_role": task.assignee_role.value, "region_code": p.intake.region_code,
                        "created_at": task.created_at, **dict(zip(_TASK_FIELDS, fields, strict=True))})
        elif tuple(before) != fields:
            changed.append({"b_task_id": task_id, **dict(zip(_TASK_FIELDS, fields, strict=True))})
    if changed:
        conn.execute(_TASK_UPDATE, changed)
    if new:
        conn.execute(_INSERT_TASKS, new)


def _project_clocks(conn: Connection, p: Projection) -> None:
    stored = {row[0]: row._mapping for row in conn.execute(_CLOCKS_OF, {"case_id": p.case_id})}
    assignee = p.mediator_id if p.stage.value in ("mediation", "agreement") else None
    counters = compliance.Counters()
    new: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for clock in p.clocks:
        clock_id = f"{p.case_id}:{clock.clock_id}"
        record = stored.get(clock_id)
        if record is not None and not clock.open and record["status"] == clock.status.value:
            continue  # ended and already recorded as ended
        unfired = [w.at for w in clock.warnings if w.fired_at is None]
        paused = clock.pauses[-1] if clock.paused and clock.pauses else None
        values = {
            "assignee_id": assignee if clock.open else (None if record is None else record["assignee_id"]),
            "due_at": clock.due_at, "status": clock.status.value,
            "next_warning_at": min(unfired) if unfired and clock.open else None,
            "breached": clock.breached, "breached_at": clock.breached_at,
            "met_at": clock.ended_at if clock.status.value == "met" else None,
            "ended_at": clock.ended_at,
            "warnings_fired": sum(1 for w in clock.warnings if w.fired_at is not None),
            "paused_at": paused.started_at if paused else None,
            "pause_reason": paused.reason if paused else None,
        }
        if record is None:
            new.append({"clock_id": clock_id, "case_id": p.case_id, "name": clock.name, "title": clock.title,
                        "stage": clock.stage.value, "region_code": p.intake.region_code,
                        "unit": clock.target.unit.value, "target": clock.target.amount,
                        "started_at": clock.started_at, "policy_version": p.policy_version, **values})
            counters.add(clock.name, p.intake.region_code, clock.started_at, _outcome(values), +1, started=True)
            continue
        if all(record[n] == values[n] for n in _CLOCK_FIELDS):
            continue
        changed.append({"b_clock_id": clock_id, **values})
        before, after = _outcome(record), _outcome(values)
        if before != after:  # name, region and start do not change
            counters.add(record["name"], record["region_code"], record["started_at"], before, -1, started=True)
            counters.add(record["name"], record["region_code"], record["started_at"], after, +1, started=True)
    if changed:
        conn.execute(_CLOCK_UPDATE, changed)
    if new:
        conn.execute(_INSERT_CLOCKS, new)
    counters.write(conn)


def _outcome(values: Any) -> str:
    return compliance.outcome(values["status"], bool(values["breached"]), values["due_at"],
                              values["ended_at"] or values["met_at"])


def _project_events(conn: Connection, p: Projection) -> list[dict[str, Any]]:
    """Writes the events the read model lacks; returns them as JSON data (what the audit log records)."""
    if not p.events:
        return []
    have = set(conn.execute(_EVENTS_HAVE, {"case_id": p.case_id, "seqs": [e.seq for e in p.events]}).scalars())
    new = [e for e in p.events if e.seq not in have]
    if new:
        conn.execute(_INSERT_EVENTS, [{
            "case_id": p.case_id, "seq": e.seq, "type": e.type, "at": e.at, "stage": e.stage.value,
            "actor_id": e.actor.user_id if e.actor else None, "actor_role": e.actor.role.value if e.actor else None,
            "data": e.data,
        } for e in new])
    return [e.model_dump(mode="json") for e in new]


def _project_notifications(conn: Connection, p: Projection, now: datetime) -> None:
    if not p.notifications:
        return
    keys = [n.key for n in p.notifications]
    have = set(conn.execute(_OUTBOX_HAVE, {"keys": keys}).scalars())
    rows = []
    for n in p.notifications:
        if n.key in have:
            continue
        rows.append({"dedupe_key": n.key, "case_id": p.case_id, "kind": n.kind,
                     "recipient_role": n.recipient_role.value, "recipient_id": n.recipient_id,
                     "region_code": p.intake.region_code, "payload": {"event_seq": n.event_seq, **n.payload},
                     "created_at": now, "sent_at": None})
    if rows:
        conn.execute(_INSERT_OUTBOX, rows)

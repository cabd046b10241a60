"""Writes of the read model: a case, its tasks, clocks and events, its notifications and audit entries.

`apply_projection` is idempotent: the workflow's activity may be retried after a partial failure
or a lost response, and a second application must write nothing twice.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from disputeflow.case_keys import CaseKey, seal_free_text
from disputeflow.contracts import Projection
from disputeflow.db.audit import AuditEvent, append_events
from disputeflow.domain.case import CaseEvent
from disputeflow.db.models import (
    CaseEventRecord, CaseRecord, CaseTaskRecord, ClockRecord, OutboxMessage, phone_digits,
)


def apply_projection(session: Session, p: Projection, *, now: datetime, key: CaseKey | None = None) -> int:
    """Bring the read model up to date with `p`; returns how many new events were written.

    `key`: the case's data key; the free text of the audit entries is stored encrypted with it
    (`disputeflow.case_keys.seal_free_text`), so that destroying it erases that text. Without one
    (tests of the read model alone), the entries hold the event as it is."""
    intake = p.intake
    case = session.get(CaseRecord, p.case_id)
    if case is None:
        case = CaseRecord(
            case_id=p.case_id, workflow_id=p.workflow_id, region_code=intake.region_code,
            channel=intake.channel.value, category=intake.category.value, dispute_type=intake.dispute_type.value,
            urgency=intake.urgency.value, special_groups=[g.value for g in intake.special_groups],
            caller_name=intake.caller.name, caller_phone=intake.caller.phone,
            caller_phone_digits=phone_digits(intake.caller.phone), description=intake.description,
            opened_at=p.opened_at, updated_at=p.updated_at, stage=p.stage.value, phase=p.phase,
            policy_version=p.policy_version,
        )
        session.add(case)
    last_seq = max((e.seq for e in p.events), default=0)
    if last_seq and last_seq < case.event_count:
        return 0  # an older projection arriving late: the row already shows a newer state
    case.stage, case.phase = p.stage.value, p.phase
    case.mediator_id, case.lawyer_id = p.mediator_id, p.lawyer_id
    case.updated_at, case.closed_at = p.updated_at, p.closed_at
    case.final_outcome = p.final_outcome.value if p.final_outcome else None
    case.satisfaction, case.breached = p.satisfaction, p.breached
    case.event_count = max(case.event_count, last_seq)

    _project_tasks(session, p, now)
    _project_clocks(session, p)
    new_events = _project_events(session, p)
    _project_notifications(session, p, now)
    append_events(
        session,
        [AuditEvent(case_id=p.case_id, event_seq=e.seq, event_type=e.type,
                    payload=_sealed(e.model_dump(mode="json"), key, e.seq))
         for e in new_events],
        now=now,
    )
    return len(new_events)


def _sealed(payload: dict, key: CaseKey | None, seq: int) -> dict:
    return payload if key is None else seal_free_text(payload, key, seq)


def _project_tasks(session: Session, p: Projection, now: datetime) -> None:
    current = {f"{p.case_id}:{t.key}": t for t in p.tasks}
    stored = {r.task_id: r for r in session.exec(select(CaseTaskRecord).where(CaseTaskRecord.case_id == p.case_id))}
    for task_id, record in stored.items():
        if record.status == "open" and task_id not in current:
            record.status, record.completed_at = "done", now
    for task_id, task in current.items():
        record = stored.get(task_id)
        if record is None:
            record = CaseTaskRecord(task_id=task_id, case_id=p.case_id, kind=task.kind, title=task.title,
                                    assignee_role=task.assignee_role.value, region_code=p.intake.region_code,
                                    created_at=task.created_at)
            session.add(record)
        record.title, record.assignee_id, record.due_at = task.title, task.assignee_id, task.due_at
        record.status, record.completed_at = "open", None


def _project_clocks(session: Session, p: Projection) -> None:
    stored = {r.clock_id: r for r in session.exec(select(ClockRecord).where(ClockRecord.case_id == p.case_id))}
    assignee = p.mediator_id if p.stage.value in ("mediation", "agreement") else None
    for clock in p.clocks:
        clock_id = f"{p.case_id}:{clock.clock_id}"
        record = stored.get(clock_id)
        if record is None:
            record = ClockRecord(clock_id=clock_id, case_id=p.case_id, name=clock.name, title=clock.title,
                                 stage=clock.stage.value, region_code=p.intake.region_code,
                                 unit=clock.target.unit.value, target=clock.target.amount,
                                 started_at=clock.started_at, due_at=clock.due_at, status=clock.status.value,
                                 policy_version=p.policy_version)
            session.add(record)
        elif not clock.open and record.status == clock.status.value:
            continue  # ended and already recorded as ended
        if clock.open:
            record.assignee_id = assignee
        unfired = [w.at for w in clock.warnings if w.fired_at is None]
        record.due_at, record.status = clock.due_at, clock.status.value
        record.next_warning_at = min(unfired) if unfired and clock.open else None
        record.breached, record.breached_at = clock.breached, clock.breached_at
        record.met_at = clock.ended_at if clock.status.value == "met" else None
        record.ended_at = clock.ended_at
        record.warnings_fired = sum(1 for w in clock.warnings if w.fired_at is not None)
        paused = clock.pauses[-1] if clock.paused and clock.pauses else None
        record.paused_at = paused.started_at if paused else None
        record.pause_reason = paused.reason if paused else None


def _project_events(session: Session, p: Projection) -> list[CaseEvent]:
    if not p.events:
        return []
    seqs = [e.seq for e in p.events]
    have = set(session.exec(
        select(CaseEventRecord.seq).where(CaseEventRecord.case_id == p.case_id, CaseEventRecord.seq.in_(seqs))
    ))
    new = [e for e in p.events if e.seq not in have]
    for e in new:
        session.add(CaseEventRecord(
            case_id=p.case_id, seq=e.seq, type=e.type, at=e.at, stage=e.stage.value,
            actor_id=e.actor.user_id if e.actor else None, actor_role=e.actor.role.value if e.actor else None,
            data=e.data,
        ))
    return new


def _project_notifications(session: Session, p: Projection, now: datetime) -> None:
    if not p.notifications:
        return
    keys = [n.key for n in p.notifications]
    have = set(session.exec(select(OutboxMessage.dedupe_key).where(OutboxMessage.dedupe_key.in_(keys))))
    for n in p.notifications:
        if n.key in have:
            continue
        session.add(OutboxMessage(
            dedupe_key=n.key, case_id=p.case_id, kind=n.kind, recipient_role=n.recipient_role.value,
            recipient_id=n.recipient_id, region_code=p.intake.region_code,
            payload={"event_seq": n.event_seq, **n.payload}, created_at=now,
        ))

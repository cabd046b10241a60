"""Erasure: a supervisor erases one closed case on a verified request; the retention sweep (the
workflow the daily Schedule starts) erases closed cases past the policy's retention. The audit chain
still verifies afterwards and records the erasure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

from sqlmodel import Session, select

from disputeflow.db import audit
from disputeflow.db.erasure import ERASED, anonymised
from disputeflow.db.models import AuditEntry, CaseEventRecord, CaseRecord, OutboxMessage
from tests.api.conftest import AUDITOR, OPERATOR, OTHER_SUPERVISOR, SUPERVISOR, Stack
from workflows.retention import RetentionSweepWorkflow

ERASE = {"reason": "data_subject_request", "reference": "DSR-2026-0042"}


def test_anonymised_keeps_tokens_and_erases_free_text() -> None:
    data = {"mediator_id": "med-370102-01", "at": "2026-12-02T06:00:00+00:00", "note": "张三说他明天来",
            "reason": "caller abroad", "count": 3, "missing": ["身份证", "income_proof"], "ok": True}
    assert anonymised(data) == {"mediator_id": "med-370102-01", "at": "2026-12-02T06:00:00+00:00", "note": ERASED,
                                "reason": ERASED, "count": 3, "missing": [ERASED, "income_proof"], "ok": True}


async def test_a_supervisor_erases_a_closed_case_and_the_chain_still_verifies(stack: Stack) -> None:
    phone = f"139{uuid.uuid4().int % 10**8:08d}"
    secret = f"拖欠工资{uuid.uuid4().hex[:6]}"
    case = await stack.open_case(caller={"name": "钱九", "phone": phone}, description=secret)
    case_id = case["case_id"]
    url = f"/cases/{case_id}/erase"
    # an open case cannot be erased
    refused = await stack.http.post(url, json=ERASE, headers=stack.auth(SUPERVISOR))
    assert refused.status_code == 409 and "open" in refused.json()["detail"]
    await stack.act(case_id, "withdraw", {"reason": f"来电人钱九撤回 {phone}"}, SUPERVISOR)
    await stack.projected(case_id, lambda r: r.closed_at is not None)
    # supervisors only, of the case's region; a free-text reason is refused
    assert (await stack.http.post(url, json=ERASE, headers=stack.auth(OPERATOR))).status_code == 403
    assert (await stack.http.post(url, json=ERASE, headers=stack.auth(OTHER_SUPERVISOR))).status_code == 404
    assert (await stack.http.post(url, json={"reason": "他要求删除", "reference": "x"},
                                  headers=stack.auth(SUPERVISOR))).status_code == 422

    done = await stack.http.post(url, json=ERASE, headers=stack.auth(SUPERVISOR))
    assert done.status_code == 200, done.text
    assert done.json()["erased_now"] is True and done.json()["events"] >= 2
    with Session(stack.engine) as session:
        record = session.get(CaseRecord, case_id)
        events = session.exec(select(CaseEventRecord).where(CaseEventRecord.case_id == case_id)).all()
        outbox = session.exec(select(OutboxMessage).where(OutboxMessage.case_id == case_id)).all()
        erased_entries = session.exec(select(AuditEntry).where(AuditEntry.case_id == case_id,
                                                               AuditEntry.event_type == "case_erased")).all()
        report = audit.verify_chain(session)
    rows = f"{record.model_dump()} {[e.data for e in events]} {[m.payload for m in outbox]}"
    for personal in ("钱九", phone, secret):
        assert personal not in rows
    assert record.caller_name == ERASED and record.stage == "closed" and record.final_outcome == "withdrawn"
    assert report.ok, report
    [entry] = erased_entries
    assert entry.event_seq == -1 and "DSR-2026-0042" in entry.canonical and SUPERVISOR[0] in entry.canonical
    assert "钱九" not in entry.canonical and phone not in entry.canonical
    # asking again changes nothing; the case reads as erased; the erasure does not upset the audit check
    again = await stack.http.post(url, json=ERASE, headers=stack.auth(SUPERVISOR))
    assert again.json()["erased_now"] is False
    detail = (await stack.http.get(f"/cases/{case_id}", headers=stack.auth(SUPERVISOR))).json()
    assert detail["caller"] == {"name": ERASED, "phone": ERASED} and detail["description"] == ERASED
    # its history can no longer be decrypted (its data key is destroyed): the routes that read it say so
    for route in ("audit/check", "timeline"):
        gone = await stack.http.get(f"/cases/{case_id}/{route}", headers=stack.auth(AUDITOR))
        assert gone.status_code == 410 and "erased" in gone.json()["detail"], (route, gone.text)
    gone = await stack.http.post(f"/cases/{case_id}/replay", headers=stack.auth(AUDITOR))
    assert gone.status_code == 410 and "erased" in gone.json()["detail"], gone.text


async def test_the_erasure_check_compares_what_is_left_before_the_key_goes(stack: Stack) -> None:
    """Before an erasure the audit check holds the chain against the history; the erasure's own entry
    (a negative event number) is not in the history and is not reported as missing from it."""
    case_id = (await stack.open_case())["case_id"]
    assert (await stack.act(case_id, "withdraw", {"reason": "来电人撤回"}, SUPERVISOR)).status_code == 200
    await stack.projected(case_id, lambda r: r.closed_at is not None)
    check = (await stack.http.get(f"/cases/{case_id}/audit/check", headers=stack.auth(AUDITOR))).json()
    assert check["discrepancies"] == [], check


async def test_the_retention_sweep_erases_closed_cases_past_retention_only(stack: Stack) -> None:
    now = datetime.now(timezone.utc)
    old, recent = f"T-old-{uuid.uuid4().hex[:8]}", f"T-new-{uuid.uuid4().hex[:8]}"
    with Session(stack.engine) as session:
        for case_id, closed_at in ((old, now - timedelta(days=1200)), (recent, now - timedelta(days=30))):
            session.add(CaseRecord(
                case_id=case_id, workflow_id=f"case-{case_id}", stage="closed", phase="closed", region_code="370102",
                channel="hotline", category="dispute", dispute_type="neighbours", urgency="normal",
                caller_name="孙十", caller_phone="+8613900000001", caller_phone_digits="13900000001",
                description="邻居噪音", opened_at=closed_at - timedelta(days=40), updated_at=closed_at,
                closed_at=closed_at, final_outcome="withdrawn", policy_version="2026.1"))
        session.commit()
    erased = await stack.env.client.execute_workflow(
        RetentionSweepWorkflow.run, id=f"retention-test-{uuid.uuid4().hex[:6]}",
        task_queue=stack.settings.temporal_task_queue)
    assert erased >= 1
    with Session(stack.engine) as session:
        assert session.get(CaseRecord, old).caller_name == ERASED
        assert session.get(CaseRecord, recent).caller_name == "孙十"  # closed 30 days ago: kept
        assert audit.verify_chain(session).ok

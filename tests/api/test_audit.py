"""Auditors: the timeline from Temporal's history, the raw history export, replay, the case's
audit entries and the whole chain's verification. All read-only."""

from __future__ import annotations

import asyncio

import json

from temporalio.client import WorkflowHistory

from disputeflow.db.models import CaseEventRecord
from tests.api.conftest import AUDITOR, OTHER_AUDITOR, SUPERVISOR, Stack


async def _case_with_history(stack: Stack) -> dict:
    case = await stack.open_in_mediation()
    mediator = (case["mediator"]["id"], "mediator", "370102")
    response = await stack.act(case["case_id"], "record_mediation_session", {"outcome": "agreement", "notes": "达成"},
                               mediator)
    assert response.status_code == 200
    return response.json()


async def test_timeline_history_replay_and_audit_entries(stack: Stack) -> None:
    case = await _case_with_history(stack)
    case_id = case["case_id"]
    headers = stack.auth(AUDITOR)

    timeline = (await stack.http.get(f"/cases/{case_id}/timeline", headers=headers)).json()
    assert timeline["runs"] == 1
    kinds = [e["kind"] for e in timeline["entries"]]
    assert kinds[0] == "case_opened" and "timer_started" in kinds
    actions = [e for e in timeline["entries"] if e["kind"] == "action"]
    assert [(a["actor"]["user_id"], a["actor"]["role"]) for a in actions] == [
        ("op-1", "operator"), (case["mediator"]["id"], "mediator")]

    response = await stack.http.get(f"/cases/{case_id}/history", headers=headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    assert response.headers["X-Case-Runs"] == "1"
    document = json.loads(response.text)
    assert document["events"][0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    history = WorkflowHistory.from_json(f"case-{case_id}", response.text)
    assert len(history.events) == len(document["events"])
    past = await stack.http.get(f"/cases/{case_id}/history", params={"run": 2}, headers=headers)
    assert past.status_code == 404 and "no run 2" in past.json()["detail"]  # nothing there, like an unknown case

    verdict = (await stack.http.post(f"/cases/{case_id}/replay", headers=headers)).json()
    assert verdict["ok"] is True and [r["ok"] for r in verdict["results"]] == [True]

    await stack.projected(case_id, lambda r: r.stage == "agreement")
    audit = (await stack.http.get(f"/cases/{case_id}/audit", headers=headers)).json()
    entries = audit["entries"]
    assert [e["event_seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert len(entries) == stack.count(CaseEventRecord, CaseEventRecord.case_id == case_id)
    assert [e["event_type"] for e in entries] == stack.events(case_id)
    assert json.loads(entries[0]["canonical"])["event_type"] == "case_registered"
    check = (await stack.http.get(f"/cases/{case_id}/audit/check", headers=headers)).json()
    assert check["discrepancies"] == [] and check["entries_in_log"] == len(entries) == check["events_in_history"]

    started = await stack.http.post("/audit/verify", headers=headers)
    assert started.status_code == 202, started.text
    assert started.headers["Location"] == f"/audit/jobs/{started.json()['job_id']}"
    job = started.json()
    for _ in range(200):
        if job["status"] != "running":
            break
        await asyncio.sleep(0.05)
        job = (await stack.http.get(started.headers["Location"], headers=headers)).json()
    assert job["status"] == "done" and job["done"] == job["total"] == job["result"]["checked"]
    report = job["result"]
    assert report["ok"] is True and report["checked"] >= len(entries) and report["first_broken"] is None
    # the job is its starter's: another auditor's request for it is 404
    other = await stack.http.get(started.headers["Location"], headers=stack.auth(("aud-2", "auditor", "37")))
    assert other.status_code == 404


async def test_supervisors_read_their_region_auditors_theirs(stack: Stack) -> None:
    case = await stack.open_case()
    for who, status in ((SUPERVISOR, 200), (AUDITOR, 200), (OTHER_AUDITOR, 404)):
        response = await stack.http.get(f"/cases/{case['case_id']}/timeline", headers=stack.auth(who))
        assert response.status_code == status, (who, response.text)
    assert (await stack.http.post("/audit/verify", headers=stack.auth(SUPERVISOR))).status_code == 403


async def test_unknown_case_is_404_for_history_routes(stack: Stack) -> None:
    for method, path in (("GET", "timeline"), ("GET", "history"), ("POST", "replay"), ("GET", "audit")):
        response = await stack.http.request(method, f"/cases/370102-20000101-0077/{path}",
                                            headers=stack.auth(AUDITOR))
        assert response.status_code == 404 and response.json() == {"detail": "case 370102-20000101-0077 not found"}

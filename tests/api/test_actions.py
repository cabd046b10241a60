"""The action routes: the `act` update, its idempotency, refusals (409) and the actor from the token."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlmodel import Session, select

from disputeflow.db.models import CaseEventRecord, CaseRecord
from disputeflow.db.reference import MEDIATION_STAGES
from tests.api.conftest import OFFICER, OPERATOR, SUPERVISOR, Stack


async def test_an_action_answers_the_new_state_and_records_the_token_actor(stack: Stack) -> None:
    case = await stack.open_case()
    response = await stack.act(case["case_id"], "send_to_mediation", {"note": "双方同意调解"})
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["stage"] == "mediation" and after["mediator"]["id"].startswith("med-370102-")
    event = next(e for e in after["timeline"] if e["type"] == "sent_to_mediation")
    assert (event["actor_id"], event["actor_role"]) == ("op-1", "operator")
    assert uuid.UUID(hex=response.headers["Idempotency-Key"])  # generated, and said so


async def test_the_body_cannot_name_an_actor_or_another_action(stack: Stack) -> None:
    case = await stack.open_case()
    for extra in ({"actor": {"user_id": "sup-1", "role": "supervisor"}}, {"type": "withdraw"},
                  {"request_id": "r-1"}):
        response = await stack.act(case["case_id"], "send_to_mediation", extra)
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", next(iter(extra))]


async def test_a_retry_with_the_same_key_changes_the_case_once(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    key = f"session-{uuid.uuid4()}"
    body = {"outcome": "partial", "notes": "第一次调解，部分达成"}
    mediator = (case["mediator"]["id"], "mediator", "370102")
    first = await stack.act(case["case_id"], "record_mediation_session", body, mediator, key=key)
    assert first.status_code == 200, first.text
    events = stack.count(CaseEventRecord, CaseEventRecord.case_id == case["case_id"])
    for _ in range(2):
        again = await stack.act(case["case_id"], "record_mediation_session", body, mediator, key=key)
        assert again.status_code == 200 and again.headers["Idempotency-Key"] == key
        assert again.json()["timeline"] == first.json()["timeline"]
        assert len(again.json()["progress"]["mediation"]["sessions"]) == 1
    assert stack.count(CaseEventRecord, CaseEventRecord.case_id == case["case_id"]) == events
    # without a key, each request is a new action
    for _ in range(2):
        assert (await stack.act(case["case_id"], "record_mediation_session", body, SUPERVISOR)).status_code == 200
    detail = (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(SUPERVISOR))).json()
    assert len(detail["progress"]["mediation"]["sessions"]) == 3


async def test_409_with_the_workflows_reason(stack: Stack) -> None:
    case = await stack.open_case()
    response = await stack.act(case["case_id"], "record_referral_outcome", {"accepted": True})
    assert response.status_code == 409
    assert response.json() == {"detail": "cannot record whether a referral was accepted while the case is in stage "
                                         "'triage' (allowed in: referred)"}
    response = await stack.act(case["case_id"], "pause_clock", {"clock_id": "nope-9", "reason": "awaiting_party"},
                               SUPERVISOR)
    assert response.status_code == 409 and "has no clock 'nope-9'" in response.json()["detail"]
    response = await stack.act(case["case_id"], "reassign_mediator", {"mediator_id": "med-110105-01",
                                                                      "reason": "换人"}, SUPERVISOR)
    assert response.status_code == 409  # wrong stage before anything is looked up
    # nothing of it reached the history
    detail = (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(OPERATOR))).json()
    assert [e["type"] for e in detail["timeline"]] == [e["type"] for e in case["timeline"]]


async def test_a_closed_case_refuses_new_actions_but_a_retry_still_answers(stack: Stack) -> None:
    case = await stack.open_case(category="consultation")
    await stack.act(case["case_id"], "answer_consultation", {"answer": "可向劳动仲裁委申请仲裁"})
    key = f"visit-{uuid.uuid4()}"
    closed = await stack.act(case["case_id"], "record_return_visit", {"satisfaction": 5}, key=key)
    assert closed.json()["stage"] == "closed"
    await stack.projected(case["case_id"], lambda r: r.closed_at is not None)
    retry = await stack.act(case["case_id"], "record_return_visit", {"satisfaction": 5}, key=key)
    assert retry.status_code == 200 and retry.json()["stage"] == "closed"
    response = await stack.act(case["case_id"], "withdraw", {"reason": "来电人撤回"})
    assert response.status_code == 409 and "is closed" in response.json()["detail"]


async def test_supervisor_reassigns_the_mediator(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    previous = case["mediator"]["id"]
    other = next(m for m in ("med-370102-01", "med-370102-02", "med-370102-03") if m != previous)
    response = await stack.act(case["case_id"], "reassign_mediator", {"mediator_id": other, "reason": "回避"},
                               SUPERVISOR)
    assert response.status_code == 200, response.text
    assert response.json()["mediator"]["id"] == other
    await stack.projected(case["case_id"], lambda r: r.mediator_id == other)
    new, old = (other, "mediator", "370102"), (previous, "mediator", "370102")
    assert (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(new))).status_code == 200
    assert (await stack.http.get(f"/cases/{case['case_id']}", headers=stack.auth(old))).status_code == 404
    # The case's notifications go with it: the new mediator is told, the old one no longer sees its notes.
    async def notes(who) -> list[str]:
        response = await stack.http.get("/me/notifications", params={"case_id": case["case_id"]},
                                        headers=stack.auth(who))
        assert response.status_code == 200, response.text
        return [(n["kind"], n["recipient_id"]) for n in response.json()["items"]]

    assert await notes(new) == [("case_assigned", other)]
    assert await notes(old) == []
    # a named mediator from another region is refused by the workflow
    response = await stack.act(case["case_id"], "reassign_mediator", {"mediator_id": "med-110105-01",
                                                                      "reason": "换人"}, SUPERVISOR)
    assert response.status_code == 409 and "serves the city of region 370102" in response.json()["detail"]


async def test_supervisor_extends_and_pauses_a_clock(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    clock = next(c for c in case["clocks"] if c["name"] == "mediation_conclusion" and c["status"] == "running")
    response = await stack.act(case["case_id"], "extend_clock", {
        "clock_id": clock["clock_id"], "by": {"amount": 15, "unit": "calendar_days"}, "reason": "案情复杂"}, SUPERVISOR)
    assert response.status_code == 200, response.text
    extended = next(c for c in response.json()["clocks"] if c["clock_id"] == clock["clock_id"])
    assert extended["due_at"] > clock["due_at"]
    response = await stack.act(case["case_id"], "pause_clock", {
        "clock_id": clock["clock_id"], "reason": "awaiting_party", "note": "当事人住院"}, SUPERVISOR)
    assert response.status_code == 200, response.text
    paused = next(c for c in response.json()["clocks"] if c["clock_id"] == clock["clock_id"])
    assert paused["status"] == "paused" and paused["pause_reason"] == "awaiting_party"


async def test_a_mediator_asks_for_more_time_and_the_supervisor_approves(stack: Stack) -> None:
    case = await stack.open_in_mediation()
    case_id, mediator = case["case_id"], (case["mediator"]["id"], "mediator", "370102")
    clock = next(c for c in case["clocks"] if c["name"] == "mediation_conclusion" and c["status"] == "running")
    ask = {"clock_id": clock["clock_id"], "by": {"amount": 5, "unit": "working_days"}, "reason": "当事人需补充证据"}

    response = await stack.act(case_id, "request_extension", ask, mediator)
    assert response.status_code == 200, response.text
    (pending,) = response.json()["extension_requests"]
    assert (pending["clock_id"], pending["by"], pending["requested_by"]["id"]) == (
        clock["clock_id"], "5 working days", mediator[0])
    assert next(c for c in response.json()["clocks"] if c["clock_id"] == clock["clock_id"])["due_at"] == clock["due_at"]
    again = await stack.act(case_id, "request_extension", ask, mediator)
    assert again.status_code == 409 and "already awaits a supervisor's decision" in again.json()["detail"]

    # The supervisors of the region have it in their inbox, due when the deadline is, and are told.
    await stack.projected(case_id, lambda r: r.event_count >= response.json()["timeline"][-1]["seq"])
    inbox = (await stack.http.get("/me/tasks", params={"limit": 100}, headers=stack.auth(SUPERVISOR))).json()
    (task,) = [t["task"] for t in inbox["items"] if t["case_id"] == case_id and t["task"]["kind"] == "decide_extension"]
    assert task["due_at"] == clock["due_at"] and "当事人需补充证据" in task["title"]
    notes = (await stack.http.get("/me/notifications", params={"case_id": case_id},
                                  headers=stack.auth(SUPERVISOR))).json()["items"]
    assert [n["kind"] for n in notes] == ["extension_requested"] and notes[0]["payload"]["requested_by"] == mediator[0]

    decided = await stack.act(case_id, "decide_extension",
                              {"clock_id": clock["clock_id"], "approve": True, "reason": "同意"}, SUPERVISOR)
    assert decided.status_code == 200, decided.text
    extended = next(c for c in decided.json()["clocks"] if c["clock_id"] == clock["clock_id"])
    assert extended["due_at"] > clock["due_at"] and decided.json()["extension_requests"] == []
    await stack.projected(case_id, lambda r: r.event_count >= decided.json()["timeline"][-1]["seq"])
    told = (await stack.http.get("/me/notifications", params={"case_id": case_id, "kind": "extension_approved"},
                                 headers=stack.auth(mediator))).json()["items"]
    assert len(told) == 1 and told[0]["recipient_id"] == mediator[0]
    inbox = (await stack.http.get("/me/tasks", params={"limit": 100}, headers=stack.auth(SUPERVISOR))).json()
    assert not [t for t in inbox["items"] if t["case_id"] == case_id and t["task"]["kind"] == "decide_extension"]


async def test_legal_aid_officer_acts_on_legal_aid(stack: Stack) -> None:
    case = await stack.open_case(category="legal_aid")
    response = await stack.act(case["case_id"], "open_legal_aid", {}, OFFICER)
    assert response.status_code == 200 and response.json()["stage"] == "legal_aid_review"
    response = await stack.act(case["case_id"], "assess_eligibility", {"monthly_income_per_capita": 900}, OFFICER)
    assert response.status_code == 200, response.text
    assert response.json()["progress"]["legal_aid"]["assessment"]["eligible"] is True


async def test_invalid_action_fields_are_named(stack: Stack) -> None:
    case = await stack.open_case()
    cases = [
        ("refer", {"body": "nowhere", "organisation": "x"}, ["body", "body"]),
        ("refer", {"body": "court"}, ["body", "organisation"]),
        ("record_return_visit", {"satisfaction": 6}, ["body", "satisfaction"]),
        ("record_return_visit", {"satisfaction": 10 ** 40}, ["body", "satisfaction"]),
        ("extend_clock", {"clock_id": "a-1", "by": {"amount": 1.5, "unit": "working_days"}, "reason": "x"},
         ["body", "by"]),
        ("extend_clock", {"clock_id": "a-1", "by": {"amount": 1, "unit": "fortnights"}, "reason": "x"},
         ["body", "by", "unit"]),
    ]
    for action, body, loc in cases:
        response = await stack.act(case["case_id"], action, body, SUPERVISOR)
        assert response.status_code == 422, (action, response.text)
        assert response.json()["detail"][0]["loc"] == loc, response.json()


LABOUR_MEDIATORS_OF_370102 = ("med-370102-01", "med-370102-02", "med-370102-03")


def _mediation_loads(stack: Stack) -> Counter:
    with Session(stack.engine) as session:
        rows = session.exec(select(CaseRecord.mediator_id).where(
            CaseRecord.stage.in_(MEDIATION_STAGES), CaseRecord.mediator_id.in_(LABOUR_MEDIATORS_OF_370102)))
        return Counter(rows)


async def test_ten_cases_sent_to_mediation_at_once_go_where_the_loads_say(stack: Stack) -> None:
    """Ten concurrent requests: each choice sees the ones made before it, so the ten fill up the
    least-loaded mediators one by one, exactly as if they had come one after another."""
    cases = [await stack.open_case(dispute_type="labour_wages") for _ in range(10)]
    load = _mediation_loads(stack)
    expected: Counter = Counter()
    for _ in cases:  # what ten requests in a row would give: the least loaded each time, ties by id
        least = min(LABOUR_MEDIATORS_OF_370102, key=lambda m: (load[m], m))
        load[least] += 1
        expected[least] += 1

    responses = await asyncio.gather(*(stack.act(c["case_id"], "send_to_mediation") for c in cases))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert Counter(r.json()["mediator"]["id"] for r in responses) == expected
    assert _mediation_loads(stack) == load

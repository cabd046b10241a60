"""The process rules without Temporal: who may do what, when, and what it changes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from disputeflow.domain import lifecycle
from disputeflow.domain.actions import COMMAND_TYPES, ActionRequest, Actor
from disputeflow.domain.enums import Role, Stage
from tests.test_projection import NOW, opened_case
from disputeflow.domain.case import Assignee
from tests.workflows.conftest import OPERATOR, SUPERVISOR, mediator

AUDITOR = Actor(user_id="aud-1", role=Role.auditor, region_code="37")
MEDIATOR = mediator("med-370102-01")


def request(actor: Actor, command: dict, request_id: str = "r") -> ActionRequest:
    return ActionRequest.model_validate({"request_id": request_id, "actor": actor.model_dump(), "command": command})


def test_every_command_has_rules_and_auditors_can_do_none() -> None:
    assert set(lifecycle.RULES) == set(COMMAND_TYPES)
    for command, (stages, roles, what) in lifecycle.RULES.items():
        assert Role.auditor not in roles and Role.system not in roles, command
        assert stages and what


def test_auditor_is_refused_with_a_reason() -> None:
    state, _ = opened_case(urgency="normal")
    with pytest.raises(lifecycle.Refused, match="an auditor cannot send a case to mediation"):
        lifecycle.check(state, request(AUDITOR, {"type": "send_to_mediation"}))


def test_a_closed_case_refuses_everything() -> None:
    state, cal = opened_case(urgency="normal")
    lifecycle.apply(state, request(OPERATOR, {"type": "withdraw", "reason": "来电人撤回"}), NOW, cal)
    assert state.stage is Stage.closed and state.final_outcome == "withdrawn"
    assert all(c.status == "cancelled" for c in state.clocks)
    with pytest.raises(lifecycle.Refused, match="closed"):
        lifecycle.check(state, request(SUPERVISOR, {"type": "send_to_mediation"}))


def test_applying_records_the_request_and_events_in_order() -> None:
    state, cal = opened_case(urgency="normal")
    lifecycle.apply(state, request(OPERATOR, {"type": "open_legal_aid"}, "req-9"), NOW + timedelta(minutes=3), cal)
    assert state.stage is Stage.legal_aid_review
    assert state.applied_requests == {"req-9": state.timeline[-1].seq}
    types = [e.type for e in state.timeline]
    assert types[0] == "case_registered"
    assert types[-3:] == ["clock_met", "legal_aid_opened", "clock_started"]
    assert [e.seq for e in state.timeline] == list(range(1, len(types) + 1))
    assert [t.kind for t in lifecycle.open_tasks(state)] == ["decide_legal_aid"]


def test_emergency_breach_escalates_and_notifies_once() -> None:
    state, cal = opened_case(urgency="emergency")
    due = lifecycle.next_alarm_at(state)
    assert due is not None
    late = NOW + timedelta(hours=2)
    assert lifecycle.fire_alarms(state, late, cal)
    assert state.stage is Stage.escalated
    breaches = [e for e in state.timeline if e.type == "clock_breached"]
    assert len(breaches) == 1 and breaches[0].data["clock"] == "emergency_response"
    kinds = [n.kind for n in state.outbox]
    assert kinds.count("deadline_breached") == 1 and kinds.count("case_escalated") == 1
    # firing again at the same or a later time repeats nothing
    before = len(state.timeline)
    lifecycle.fire_alarms(state, late, cal)
    assert len([e for e in state.timeline[before:] if e.type in ("clock_breached", "clock_warning")]) == 0


def _in_mediation() -> tuple:
    state, cal = opened_case(urgency="normal")
    lifecycle.apply(state, request(OPERATOR, {"type": "send_to_mediation"}, "r-send"), NOW, cal)
    lifecycle.assign_mediator(state, Assignee(id="med-370102-01", name="李秀兰", region_code="370102"), NOW, cal)
    clock = next(c for c in state.open_clocks if c.name == "mediation_conclusion")
    return state, cal, clock


def test_a_requested_extension_waits_for_the_supervisor_then_moves_the_deadline() -> None:
    state, cal, clock = _in_mediation()
    asked_at = NOW + timedelta(days=3)
    ask = {"type": "request_extension", "clock_id": clock.clock_id,
           "by": {"amount": 5, "unit": "working_days"}, "reason": "当事人需补充证据"}
    lifecycle.check(state, request(MEDIATOR, ask))
    lifecycle.apply(state, request(MEDIATOR, ask, "r-ask"), asked_at, cal)
    assert state.clock(clock.clock_id).due_at == clock.due_at  # nothing moves until a supervisor decides
    assert [e.type for e in state.timeline][-1] == "extension_requested"
    note = state.outbox[-1]
    assert (note.kind, note.recipient_role, note.recipient_id) == ("extension_requested", Role.supervisor, None)
    (task,) = [t for t in lifecycle.open_tasks(state) if t.kind == "decide_extension"]
    assert task.assignee_role is Role.supervisor and task.due_at == clock.due_at and "当事人需补充证据" in task.title
    with pytest.raises(lifecycle.Refused, match="already awaits a supervisor's decision"):
        lifecycle.check(state, request(MEDIATOR, ask, "r-again"))
    with pytest.raises(lifecycle.Refused, match="a supervisor cannot request an extension"):
        lifecycle.check(state, request(SUPERVISOR, ask, "r-sup"))
    with pytest.raises(lifecycle.Refused, match="a mediator cannot decide a requested extension"):
        lifecycle.check(state, request(MEDIATOR, {"type": "decide_extension", "clock_id": clock.clock_id,
                                                  "approve": True, "reason": "自己批准"}))

    approve = {"type": "decide_extension", "clock_id": clock.clock_id, "approve": True, "reason": "同意延长"}
    lifecycle.apply(state, request(SUPERVISOR, approve, "r-ok"), asked_at + timedelta(hours=1), cal)
    extended = state.clock(clock.clock_id)
    assert extended.due_at == cal.end_of_nth_working_day_after(clock.due_at, 5)
    assert extended.extensions[-1].approved_by == SUPERVISOR.user_id
    assert extended.extensions[-1].reason == "当事人需补充证据"  # the reason given for the extension
    assert [e.type for e in state.timeline][-2:] == ["clock_extended", "extension_approved"]
    note = state.outbox[-1]
    assert (note.kind, note.recipient_role, note.recipient_id) == ("extension_approved", Role.mediator, "med-370102-01")
    assert not state.extension_requests and not [t for t in lifecycle.open_tasks(state) if t.kind == "decide_extension"]
    with pytest.raises(lifecycle.Refused, match="no extension of clock .* awaits a decision"):
        lifecycle.check(state, request(SUPERVISOR, approve, "r-twice"))


def test_a_refused_extension_leaves_the_deadline_and_one_lapses_with_its_clock() -> None:
    state, cal, clock = _in_mediation()
    ask = {"type": "request_extension", "clock_id": clock.clock_id,
           "by": {"amount": 10, "unit": "calendar_days"}, "reason": "调解员出差"}
    lifecycle.apply(state, request(MEDIATOR, ask, "r-ask"), NOW, cal)
    lifecycle.apply(state, request(SUPERVISOR, {"type": "decide_extension", "clock_id": clock.clock_id,
                                                "approve": False, "reason": "可另派调解员"}, "r-no"), NOW, cal)
    assert state.clock(clock.clock_id).due_at == clock.due_at and not state.clock(clock.clock_id).extensions
    assert state.timeline[-1].type == "extension_refused" and state.outbox[-1].kind == "extension_refused"

    lifecycle.apply(state, request(MEDIATOR, ask, "r-ask-2"), NOW, cal)  # asked again, then the case ends
    lifecycle.apply(state, request(OPERATOR, {"type": "withdraw", "reason": "来电人撤回"}, "r-w"), NOW, cal)
    assert not state.extension_requests
    assert "extension_request_lapsed" in [e.type for e in state.timeline]

"""The process rules without Temporal: who may do what, when, and what it changes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from disputeflow.domain import lifecycle
from disputeflow.domain.actions import COMMAND_TYPES, ActionRequest, Actor
from disputeflow.domain.enums import Role, Stage
from tests.test_projection import NOW, opened_case
from tests.workflows.conftest import OPERATOR, SUPERVISOR

AUDITOR = Actor(user_id="aud-1", role=Role.auditor, region_code="37")


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

"""Clock drills: the alarms still to come, by the workflow's own rules, on a copy of the case."""

from __future__ import annotations

from datetime import timedelta

import pytest

from disputeflow.domain import drills, lifecycle
from disputeflow.domain.actions import ActionRequest, Actor
from disputeflow.domain.case import Assignee
from disputeflow.domain.enums import Stage
from tests.test_projection import NOW, opened_case
from tests.workflows.conftest import OPERATOR, SUPERVISOR, mediator

MEDIATOR = mediator("med-370102-01")


def request(actor: Actor, command: dict, request_id: str = "drill") -> ActionRequest:
    return ActionRequest.model_validate({"request_id": request_id, "actor": actor.model_dump(), "command": command})


def emergency_clock(state) -> str:
    return next(c.clock_id for c in state.open_clocks if c.name == "emergency_response")


def test_an_emergency_warns_at_30_minutes_breaches_and_escalates_at_60() -> None:
    state, cal = opened_case("emergency")
    before = state.model_dump()
    drill = drills.drill(state, cal, NOW)
    assert state.model_dump() == before  # the case itself is untouched
    em = [e for e in drill.events if e.clock == "emergency_response"]
    assert [(e.kind, e.at - NOW) for e in em] == [("warning", timedelta(minutes=30)), ("breach", timedelta(hours=1))]
    assert em[1].actions == ["notify_supervisor", "escalate"] and em[1].stage_after is Stage.escalated
    (escalation,) = [e for e in drill.events if e.kind == "escalation"]
    assert escalation.at == NOW + timedelta(hours=1) and escalation.stage_after is Stage.escalated
    # then the supervisor's own emergency clock: 4 calendar hours, warned at half
    esc = [(e.kind, e.at - NOW) for e in drill.events if e.clock == "escalation_response" and e.kind != "clock_started"]
    assert esc == [("warning", timedelta(hours=3)), ("breach", timedelta(hours=5))]
    assert drill.first_breach_at == NOW + timedelta(hours=1)
    assert drill.ends == "no_alarm_left" and drill.stage_after_action is Stage.triage
    assert [e.at for e in drill.events] == sorted(e.at for e in drill.events)


def test_from_a_later_instant_only_what_is_still_to_come() -> None:
    state, cal = opened_case("emergency")
    lifecycle.fire_alarms(state, NOW + timedelta(minutes=40), cal)  # the workflow's timer fired the warning
    drill = drills.drill(state, cal, NOW + timedelta(minutes=40))
    em = [(e.kind, e.at - NOW) for e in drill.events if e.clock == "emergency_response"]
    assert em == [("breach", timedelta(hours=1))]


def test_an_extension_moves_the_breach_and_the_unfired_warning() -> None:
    state, cal = opened_case("emergency")
    clock_id = emergency_clock(state)
    extend = request(SUPERVISOR, {"type": "extend_clock", "clock_id": clock_id,
                                  "by": {"amount": 2, "unit": "calendar_hours"}, "reason": "当事人已由民警陪同"})
    answer = drills.answer(state, cal, NOW + timedelta(minutes=10), extend)
    assert answer.refused is None and answer.if_you_act.action == "extend_clock"
    em = [(e.kind, e.at - NOW) for e in answer.if_you_act.events if e.clock == "emergency_response"]
    # budget 60 min grown by 120: the 50% warning moves later by 60 min, the due time by 120
    assert em == [("warning", timedelta(minutes=90)), ("breach", timedelta(hours=3))]
    base = [(e.kind, e.at - NOW) for e in answer.if_nobody_acts.events if e.clock == "emergency_response"]
    assert base == [("warning", timedelta(minutes=30)), ("breach", timedelta(hours=1))]
    assert state.clock(clock_id).due_at == NOW + timedelta(hours=1) and not state.clock(clock_id).extensions


def test_a_pause_removes_the_paused_clocks_alarms() -> None:
    state, cal = opened_case("emergency")
    pause = request(SUPERVISOR, {"type": "pause_clock", "clock_id": emergency_clock(state),
                                 "reason": "awaiting_party", "note": "等待当事人到场"})
    drill = drills.drill(state, cal, NOW, pause)
    assert not [e for e in drill.events if e.clock == "emergency_response"]
    assert not [e for e in drill.events if e.kind == "escalation"]
    (paused,) = [c for c in drill.open_clocks if c.clock == "emergency_response"]
    assert paused.status == "paused" and paused.next_alarm_at is None
    # the triage clock still runs: it warns and breaches (notify only), and the case stays in triage
    triage = [e for e in drill.events if e.clock == "triage_response"]
    assert triage and triage[-1].kind == "breach" and triage[-1].stage_after is Stage.triage
    assert state.clock(emergency_clock(state)).status == "running"


def test_an_action_the_person_could_not_do_is_refused_in_the_rules_words() -> None:
    state, cal = opened_case("emergency")
    extend = request(OPERATOR, {"type": "extend_clock", "clock_id": emergency_clock(state),
                                "by": {"amount": 2, "unit": "calendar_hours"}, "reason": "x"})
    with pytest.raises(lifecycle.Refused, match="an operator cannot extend a deadline"):
        drills.drill(state, cal, NOW, extend)
    answer = drills.answer(state, cal, NOW, extend)
    assert answer.refused and "cannot extend a deadline" in answer.refused
    assert answer.if_you_act is None and answer.if_nobody_acts is not None


def _in_mediation():
    state, cal = opened_case("normal")
    lifecycle.apply(state, request(OPERATOR, {"type": "send_to_mediation"}, "r-send"), NOW, cal)
    lifecycle.assign_mediator(state, Assignee(id="med-370102-01", name="李秀兰", region_code="370102"), NOW, cal)
    return state, cal


def test_a_third_failed_session_escalates_now_and_starts_the_supervisors_clock() -> None:
    state, cal = _in_mediation()
    for n in range(2):
        lifecycle.apply(state, request(MEDIATOR, {"type": "record_mediation_session", "outcome": "no_agreement"},
                                       f"s{n}"), NOW + timedelta(days=n + 1), cal)
    at = NOW + timedelta(days=3)
    session = request(MEDIATOR, {"type": "record_mediation_session", "outcome": "party_absent"})
    drill = drills.drill(state, cal, at, session)
    assert drill.stage_after_action is Stage.escalated
    assert [c.clock for c in drill.open_clocks] == ["escalation_response"]
    assert not [e for e in drill.events if e.clock == "mediation_conclusion"]  # met by leaving mediation
    assert drill.events[-1].kind == "breach" and drill.events[-1].clock == "escalation_response"
    baseline = drills.drill(state, cal, at)
    breach = next(e for e in baseline.events if e.kind == "breach")
    assert breach.clock == "mediation_conclusion" and breach.at == NOW + timedelta(days=30)
    assert breach.stage_after is Stage.escalated


def test_a_reassignment_assumes_the_mediator_found_and_says_so() -> None:
    state, cal = _in_mediation()
    drill = drills.drill(state, cal, NOW + timedelta(days=1), request(SUPERVISOR, {
        "type": "reassign_mediator", "reason": "原调解员回避"}))
    assert any("mediator" in text and "found" in text for text in drill.assumptions)
    assert drill.stage_after_action is Stage.mediation
    waits = drills.drill(state, cal, NOW + timedelta(days=1), request(SUPERVISOR, {
        "type": "reassign_mediator", "reason": "原调解员回避"}), assume_found=False)
    assert any("waits for a mediator" in text for text in waits.assumptions)
    assert state.mediator is not None and state.mediator.id == "med-370102-01"


def test_the_horizon_and_the_step_limit_bound_a_drill() -> None:
    state, cal = _in_mediation()
    short = drills.drill(state, cal, NOW, horizon=timedelta(days=2))
    assert short.ends == "horizon" and all(e.at <= NOW + timedelta(days=2) for e in short.events)
    capped = drills.drill(state, cal, NOW, max_alarms=1)
    assert capped.ends == "step_limit"


def test_a_closed_case_has_nothing_to_drill() -> None:
    state, cal = opened_case("normal")
    lifecycle.apply(state, request(OPERATOR, {"type": "withdraw", "reason": "来电人撤回"}, "w"), NOW, cal)
    answer = drills.answer(state, cal, NOW)
    assert answer.refused and "closed" in answer.refused and answer.if_nobody_acts is None

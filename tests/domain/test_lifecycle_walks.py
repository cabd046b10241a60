"""Random walks through the process rules: any sequence of people's actions (allowed or not, by
any role) and of time passing (days or weeks at a time), on cases of every urgency.

What must hold after every step, whatever the walk:
- an action is either refused with a reason by `check`, or applied by `apply` without error;
- the timeline is numbered 1, 2, 3... and never goes back in time; each applied request points
  at its event;
- a closed case has its final outcome and no clock running; an open case's running clocks are
  its current stage's;
- once the due alarms have fired, none is still due; a warning fires once per threshold and due
  time, a breach once per due time (an extension re-arms it): no alert storm;
- a clock's due time never moves earlier (pauses and extensions only push it back);
- each notification is written once (its key is unique for the whole case);
- an extension request waits only while its clock runs, one per clock, each a supervisor's task.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from disputeflow.domain import lifecycle
from disputeflow.domain.actions import COMMAND_TYPES, ActionRequest, Actor
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState
from disputeflow.domain.clocks import due_alarms
from disputeflow.domain.enums import ExternalForum, PauseReason, Role, SessionOutcome, Stage
from tests.test_projection import NOW, opened_case
from tests.workflows.conftest import OFFICER, OPERATOR, SUPERVISOR, mediator

AUDITOR = Actor(user_id="aud-1", role=Role.auditor, region_code="37")
MEDIATORS = [Assignee(id=f"med-370102-0{i}", name=f"调解员{i}", region_code="370102") for i in (1, 2, 3)]
LAWYER = Assignee(id="law-370102-01", name="律师", region_code="370102")
CLOCK = "<a clock of the case>"  # filled in with one of the case's clocks (or an unknown id)

# Bodies for each action, covering each branch it can take.
BODIES: dict[str, list[dict[str, Any]]] = {
    "answer_consultation": [{"answer": "已答复"}],
    "refer": [{"body": "court", "organisation": "历下区人民法院"}],
    "record_referral_outcome": [{"accepted": True}, {"accepted": False}],
    "send_to_mediation": [{}],
    "open_legal_aid": [{}],
    "record_mediation_session": [{"outcome": o.value} for o in SessionOutcome],
    "extend_mediation": [{"both_parties_consent": True, "reason": "双方同意延长"}],
    "record_judicial_confirmation": [{"applied": True}, {"applied": False}],
    "record_performance": [{"performed": True}, {"performed": False}],
    "escalate": [{"reason": "需要协调"}],
    "reassign_mediator": [{"reason": "回避"}, {"reason": "指定", "mediator_id": MEDIATORS[1].id}],
    "send_to_legal_aid": [{"reason": "转法律援助"}],
    "refer_out": [{"forum": f.value, "legal_aid_offered": offered} for f in ExternalForum for offered in (True, False)],
    "request_materials": [{"missing": ["收入证明"]}],
    "materials_supplied": [{}],
    "assess_eligibility": [{"monthly_income_per_capita": 600}, {"monthly_income_per_capita": 90_000},
                           {"monthly_income_per_capita": 600, "limitation_deadline": "2026-12-02"}],
    "decide_legal_aid": [{"approve": True, "reason": "符合条件"}, {"approve": False, "reason": "不符合条件"}],
    "request_review": [{"reason": "申请复议"}],
    "decide_review": [{"overturn": True, "reason": "撤销"}, {"overturn": False, "reason": "维持"}],
    "assign_lawyer": [{"lawyer_id": LAWYER.id}],
    "record_legal_aid_outcome": [{"outcome": "胜诉"}],
    "record_return_visit": [{"satisfaction": s} for s in range(1, 6)],
    "complete_review": [{"resolution": "已处理"}],
    "pause_clock": [{"clock_id": CLOCK, "reason": r.value} for r in PauseReason],
    "resume_clock": [{"clock_id": CLOCK}],
    "extend_clock": [{"clock_id": CLOCK, "by": {"amount": 2, "unit": "working_days"}, "reason": "案情复杂"},
                     {"clock_id": CLOCK, "by": {"amount": 3, "unit": "calendar_hours"}, "reason": "等待当事人"}],
    "request_extension": [{"clock_id": CLOCK, "by": {"amount": 5, "unit": "working_days"}, "reason": "需补充证据"}],
    "decide_extension": [{"clock_id": CLOCK, "approve": True, "reason": "同意"},
                         {"clock_id": CLOCK, "approve": False, "reason": "不同意"}],
    "withdraw": [{"reason": "来电人撤回"}],
}
assert set(BODIES) == set(COMMAND_TYPES)
WAITS = [timedelta(minutes=m) for m in (1, 31, 90, 60 * 8, 60 * 24, 60 * 24 * 4, 60 * 24 * 12, 60 * 24 * 35)]


class Walk:
    def __init__(self, state: CaseState, cal: BusinessCalendar) -> None:
        self.state, self.cal, self.now = state, cal, NOW
        self.keys: set[str] = set()
        self.due_times: dict[str, datetime] = {}
        self.requests = 0
        self.collect_notifications()
        self.check(after_alarms=False)

    def actors(self) -> list[Actor]:
        people = [OPERATOR, SUPERVISOR, OFFICER, AUDITOR, mediator("med-370102-09")]
        return people + ([mediator(self.state.mediator.id)] if self.state.mediator is not None else [])

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        clocks = [c.clock_id for c in self.state.clocks] + ["no-such-clock-1"]
        return [body | {"clock_id": clock_id} if body.get("clock_id") == CLOCK else body
                for body in BODIES[kind] for clock_id in (clocks if body.get("clock_id") == CLOCK else [None])]

    def request(self, kind: str, body: dict[str, Any], actor: Actor) -> ActionRequest:
        self.requests += 1
        return ActionRequest.model_validate({"request_id": f"r{self.requests}", "actor": actor.model_dump(),
                                             "command": {"type": kind, **body}})

    def allowed(self) -> dict[str, list[ActionRequest]]:
        """Every action some actor may take now, by kind."""
        found: dict[str, list[ActionRequest]] = {}
        for kind in sorted(BODIES):
            for body in self.bodies(kind):
                for actor in self.actors():
                    request = self.request(kind, body, actor)
                    try:
                        lifecycle.check(self.state, request)
                    except lifecycle.Refused:
                        continue
                    found.setdefault(kind, []).append(request)
        return found

    def act(self, data: st.DataObject) -> None:
        """Mostly an action someone may take now (each kind as likely), else any action at all."""
        state = self.state
        allowed = self.allowed()
        if allowed and data.draw(st.sampled_from([True, True, True, False]), label="allowed?"):
            kinds = sorted(allowed)
            if len(kinds) > 1 and data.draw(st.integers(0, 9), label="not withdrawing") > 0:
                kinds.remove("withdraw")  # always allowed: a walk would rarely get far otherwise
            request = data.draw(st.sampled_from(allowed[data.draw(st.sampled_from(kinds), label="action")]))
        else:
            kind = data.draw(st.sampled_from(sorted(BODIES)), label="action")
            request = self.request(kind, data.draw(st.sampled_from(self.bodies(kind)), label="body"),
                                   data.draw(st.sampled_from(self.actors()), label="actor"))
        kind, body = request.command.type, request.command.model_dump()
        try:
            lifecycle.check(state, request)
        except lifecycle.Refused as refusal:
            assert str(refusal).strip(), "a refusal must say why"
            return
        self.now += timedelta(seconds=1)
        named = MEDIATORS[1] if body.get("mediator_id") else LAWYER if kind == "assign_lawyer" else None
        effects = lifecycle.apply(state, request, self.now, self.cal, chosen=named)
        assert state.applied_requests[request.request_id] == state.timeline[-1].seq
        if effects.assign_mediator:
            free = [m for m in MEDIATORS if m.id not in effects.exclude_mediators] + [None]
            lifecycle.assign_mediator(state, data.draw(st.sampled_from(free), label="mediator"), self.now, self.cal)
        if effects.assign_lawyer:
            lifecycle.assign_lawyer(state, data.draw(st.sampled_from([LAWYER, None]), label="lawyer"), self.now, self.cal)
        self.collect_notifications()
        self.check(after_alarms=False)

    def wait(self, data: st.DataObject) -> None:
        self.now += data.draw(st.sampled_from(WAITS), label="wait")
        lifecycle.fire_alarms(self.state, self.now, self.cal)
        self.collect_notifications()
        self.check(after_alarms=True)

    def collect_notifications(self) -> None:
        """Take the case's new notifications, as the workflow hands them to the outbox."""
        for note in self.state.outbox:
            assert note.key not in self.keys, f"notification written twice: {note.key}"
            self.keys.add(note.key)
        self.state.outbox = []

    def check(self, *, after_alarms: bool) -> None:
        state, timeline = self.state, self.state.timeline
        assert [e.seq for e in timeline] == list(range(1, len(timeline) + 1))
        assert all(a.at <= b.at for a, b in zip(timeline, timeline[1:])), "the timeline went back in time"
        assert state.closed == (state.stage is Stage.closed)
        running = [c for c in state.clocks if c.open]
        if state.closed:
            assert state.final_outcome is not None and state.closed_at is not None
            assert not running, f"clocks still running on a closed case: {[c.clock_id for c in running]}"
        for clock in running:
            assert clock.stage is state.stage, f"{clock.clock_id} of stage {clock.stage} runs in {state.stage}"
        if after_alarms:
            assert not [a for c in running for a in due_alarms(c, self.now)], "an alarm is due but did not fire"
        for clock in state.clocks:
            before = self.due_times.get(clock.clock_id)
            assert before is None or clock.due_at >= before, f"{clock.clock_id} due time moved earlier"
            self.due_times[clock.clock_id] = clock.due_at
        breaches = Counter(e.data["clock_id"] for e in timeline if e.type == "clock_breached")
        for clock in state.clocks:
            assert breaches[clock.clock_id] <= 1 + len(clock.extensions), f"{clock.clock_id} breached again"
        warnings = Counter((e.data["clock_id"], e.data["fraction"], e.data["due_at"])
                           for e in timeline if e.type == "clock_warning")
        assert all(n == 1 for n in warnings.values()), f"a warning fired twice: {warnings}"
        asked = [r.clock_id for r in state.extension_requests]
        assert len(asked) == len(set(asked)), "two pending extension requests for one clock"
        assert all(state.clock(c) is not None and state.clock(c).open for c in asked), "a request outlived its clock"
        decide = sorted(t.key.split("-decide_extension-", 1)[1]
                        for t in lifecycle.open_tasks(state) if t.kind == "decide_extension")
        assert decide == sorted(asked), "each pending request is a supervisor's task"
        view = lifecycle.view(state)
        assert view.stage == state.stage


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), urgency=st.sampled_from(["normal", "urgent", "emergency"]))
def test_any_walk_keeps_the_case_consistent(data: st.DataObject, urgency: str) -> None:
    walk = Walk(*opened_case(urgency=urgency))
    for _ in range(data.draw(st.integers(5, 60), label="steps")):
        if walk.state.closed:
            break
        step = data.draw(st.sampled_from([walk.act, walk.act, walk.act, walk.wait]), label="step")
        step(data)

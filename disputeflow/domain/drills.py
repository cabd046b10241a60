"""Clock drills: what a case's deadlines will do from now on, if nobody acts, or after a proposed action.

A drill runs the very rules the workflow runs (`lifecycle.check`, `lifecycle.apply`,
`lifecycle.next_alarm_at`, `lifecycle.fire_alarms`) on a deep copy of the case's state, so the
answer is what the workflow's timers would do, and nothing of the case changes: no event, no
notification, no history. It is pure (no I/O, no clock: `now` is passed in), which lets the
workflow answer it from a query.

Two assumptions, both stated in the answer:

- nobody acts after the proposed action (or at all): every alarm still to come fires at its time,
  breaches escalate or lapse as the policy says, and the clocks of the stages they lead to run out
  in turn;
- a mediator or lawyer the case waits for is found at once (the workflow usually finds one within
  seconds); with `assume_found=False` the case waits instead, and the drill says so.

The drill stops when no alarm is left, at the horizon (a year by default), or after `max_alarms`
alarm instants, and says which.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

from disputeflow.domain import actions as a
from disputeflow.domain import lifecycle
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState
from disputeflow.domain.clocks import Clock
from disputeflow.domain.clocks import next_alarm_at as clock_next_alarm_at
from disputeflow.domain.enums import Stage

HORIZON = timedelta(days=366)
MAX_ALARMS = 200

Kind = Literal["warning", "breach", "escalation", "lapse", "clock_started", "stage_changed"]

# Timeline events a drill reports, and the kind each is; events not named here are not reported.
_KINDS: dict[str, Kind] = {
    "clock_warning": "warning",
    "clock_breached": "breach",
    "escalated": "escalation",
    "review_window_lapsed": "lapse",
    "clock_started": "clock_started",
}


class DrillEvent(BaseModel):
    """One thing the case's clocks will do, with its instant and where the case stands after it."""

    at: datetime
    kind: Kind
    clock_id: str | None = None
    clock: str | None = None
    fraction: float | None = None  # a warning's share of the budget
    due_at: datetime | None = None  # the clock's due time (a breach: the deadline missed)
    actions: list[str] = Field(default_factory=list)  # a breach's on-breach actions
    stage_after: Stage
    text: str


class ClockDue(BaseModel):
    """An open clock as the drill starts (after the proposed action, if any)."""

    clock_id: str
    clock: str
    title: str
    status: str
    due_at: datetime
    next_alarm_at: datetime | None


class Drill(BaseModel):
    action: str | None = None  # the proposed command's type; None: if nobody acts
    stage_after_action: Stage
    open_clocks: list[ClockDue]
    events: list[DrillEvent]
    first_breach_at: datetime | None = None
    ends: Literal["no_alarm_left", "case_closed", "horizon", "step_limit"]
    assumptions: list[str] = Field(default_factory=list)


class DrillAnswer(BaseModel):
    """What the workflow's `drill` query (and `POST /cases/{id}/drill`) answers."""

    case_id: str
    now: datetime
    stage: Stage
    if_nobody_acts: Drill | None = None
    if_you_act: Drill | None = None
    refused: str | None = None  # the rule's words when the proposed action is not allowed now


class DrillRequest(BaseModel):
    """The `drill` query's input: the instant to run from (the caller's clock) and an optional action."""

    now: datetime
    request: a.ActionRequest | None = None
    horizon_days: int = Field(default=HORIZON.days, ge=1, le=3660)


def drill(state: CaseState, cal: BusinessCalendar, now: datetime, request: a.ActionRequest | None = None, *,
          horizon: timedelta = HORIZON, max_alarms: int = MAX_ALARMS, assume_found: bool = True) -> Drill:
    """Every warning, breach, escalation and lapse still to come, in order. Raises `lifecycle.Refused`
    (and changes nothing) if `request` is not allowed now. `state` itself is never changed."""
    s = state.model_copy(deep=True)
    assumptions: list[str] = []
    if request is not None:
        lifecycle.check(s, request)
        lifecycle.apply(s, request, now, cal)
        assumptions.append(f"{request.actor.user_id} does '{request.command.type}' at {now.isoformat()}; "
                           "nobody acts after that")
    else:
        assumptions.append("nobody acts on the case from now on")
    events: list[DrillEvent] = []
    _find_wanted(s, cal, now, assume_found, assumptions, events)
    opened = [ClockDue(clock_id=c.clock_id, clock=c.name, title=c.title, status=c.status.value, due_at=c.due_at,
                       next_alarm_at=_next(c)) for c in s.open_clocks]
    stage_after_action = s.stage
    end = now + horizon
    steps = 0
    ends = "no_alarm_left"
    while True:
        if s.closed:
            ends = "case_closed"
            break
        due = lifecycle.next_alarm_at(s)
        if due is None:
            break
        if due > end:
            ends = "horizon"
            break
        if steps >= max_alarms:
            ends = "step_limit"
            break
        steps += 1
        at = max(due, now)
        before = len(s.timeline)
        lifecycle.fire_alarms(s, at, cal)
        events.extend(_reported(s, before))
        _find_wanted(s, cal, at, assume_found, assumptions, events)
    first_breach = next((e.at for e in events if e.kind == "breach"), None)
    return Drill(action=request.command.type if request else None, stage_after_action=stage_after_action,
                 open_clocks=opened, events=events, first_breach_at=first_breach, ends=ends, assumptions=assumptions)


def answer(state: CaseState, cal: BusinessCalendar, now: datetime, request: a.ActionRequest | None = None, *,
           horizon: timedelta = HORIZON) -> DrillAnswer:
    """Both drills: if nobody acts, and (with a request) if the action is done now; a refusal in words."""
    result = DrillAnswer(case_id=state.case_id, now=now, stage=state.stage)
    if state.closed:
        result.refused = f"case {state.case_id} is closed; its clocks have ended"
        return result
    result.if_nobody_acts = drill(state, cal, now, horizon=horizon)
    if request is not None:
        try:
            result.if_you_act = drill(state, cal, now, request, horizon=horizon)
        except lifecycle.Refused as refusal:
            result.refused = str(refusal)
    return result


def _next(clock: Clock) -> datetime | None:
    return clock_next_alarm_at(clock)


def _find_wanted(s: CaseState, cal: BusinessCalendar, at: datetime, assume_found: bool, assumptions: list[str],
                 events: list[DrillEvent]) -> None:
    """The person the case waits for, assumed found at `at` (the workflow's search takes seconds)."""
    wanted = s.wanted
    if wanted is None:
        return
    who = "mediator" if wanted.kind == "mediator" else "legal-aid lawyer"
    if not assume_found:
        note = f"the case waits for a {who}; nobody is assumed found"
        if note not in assumptions:
            assumptions.append(note)
        return
    person = wanted.person_id or f"(the least-loaded {who})"
    placeholder = Assignee(id=person, name=person, region_code=s.intake.region_code)
    before = len(s.timeline)
    lifecycle.fill(s, wanted, placeholder, at, cal)
    assumptions.append(f"a {who} ({person}) is found at {at.isoformat()}")
    events.extend(_reported(s, before))


def _reported(s: CaseState, since: int) -> list[DrillEvent]:
    out: list[DrillEvent] = []
    new = s.timeline[since:]
    for event in new:
        kind = _KINDS.get(event.type)
        if kind is None and "from_stage" in event.data:
            kind = "stage_changed"
        if kind is None:
            continue
        d = event.data
        # Where the case stands once this instant's changes are done: the stage of the last event
        # recorded at the same instant.
        stage_after = next((e.stage for e in reversed(new) if e.at == event.at), event.stage)
        if kind in ("escalation", "lapse", "stage_changed"):
            stage_after = event.stage
        out.append(DrillEvent(
            at=event.at, kind=kind, clock_id=d.get("clock_id"), clock=d.get("clock"), fraction=d.get("fraction"),
            due_at=datetime.fromisoformat(d["due_at"]) if d.get("due_at") else None,
            actions=list(d.get("actions") or []), stage_after=stage_after, text=_text(kind, event.type, d, event.stage),
        ))
    return out


def _text(kind: Kind, type_: str, d: dict, stage: Stage) -> str:
    clock = d.get("clock") or ""
    match kind:
        case "warning":
            return f"warning: {round(100 * (d.get('fraction') or 0))}% of {clock} gone"
        case "breach":
            then = " and ".join(x.replace("_", " ") for x in d.get("actions") or []) or "nothing more"
            return f"breach: {clock} missed; {then}"
        case "escalation":
            return f"escalated ({d.get('reason')})"
        case "lapse":
            return f"{clock} lapsed; the case goes to {stage.value.replace('_', ' ')}"
        case "clock_started":
            return f"{clock} starts, due {d.get('due_at')}"
        case _:
            return f"{type_.replace('_', ' ')}: now in {stage.value.replace('_', ' ')}"

"""The dispute process as pure rules: the one door the workflows and the API use.

The workflow holds a `CaseState` and calls into this module; nothing here does I/O or reads a
clock (`now` is always passed in), so every rule is unit-testable and replay-safe. The commands
and their rules live with their part of the process (`disputeflow.domain.process`); this module
opens a case, checks and applies an action, records the person a case waited for, fires due
alarms, and shows the case.
"""

from __future__ import annotations

from datetime import datetime

from disputeflow.domain import actions as a
from disputeflow.domain.calendar import BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState, CaseView, PersonWanted
from disputeflow.domain.enums import Role, Stage
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CasePolicy
from disputeflow.domain.process import changes
from disputeflow.domain.process.command import OPEN_STAGES, STAFF, Change, Effects, Refused
from disputeflow.domain.process.deadlines import fire_alarms, next_alarm_at
from disputeflow.domain.process.legal_aid import assign_lawyer, represent
from disputeflow.domain.process.mediation import assign_mediator
from disputeflow.domain.process.tasks import TASK_CLOCKS, open_tasks

# command type -> (stages where it is allowed, roles that may do it, what it does in words)
RULES: dict[str, tuple[frozenset[Stage], frozenset[Role], str]] = {
    kind: (command.stages, command.roles, command.what) for kind, command in a.COMMAND_TYPES.items()
}

__all__ = [
    "OPEN_STAGES", "RULES", "STAFF", "TASK_CLOCKS", "Effects", "Refused", "apply", "assign_lawyer", "assign_mediator",
    "check", "fill", "offered", "fire_alarms", "next_alarm_at", "open_case", "open_tasks", "view",
]


def open_case(case_id: str, intake: Intake, policy: CasePolicy, now: datetime, cal: BusinessCalendar,
              *, registered_by: a.Actor | None = None) -> CaseState:
    state = CaseState(case_id=case_id, intake=intake, policy=policy, opened_at=now, stage_entered_at=now)
    event = changes.emit(
        state, "case_registered", now, registered_by,
        channel=intake.channel, category=intake.category, dispute_type=intake.dispute_type,
        urgency=intake.urgency, region_code=intake.region_code, policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
    )
    changes.start_stage_clocks(state, now, cal)
    if intake.urgency == "emergency":  # the case number and kind only: the story stays with the case
        changes.notify(state, event, "emergency_registered", Role.supervisor, None,
                       dispute_type=intake.dispute_type.value, region_code=intake.region_code)
    return state


def check(state: CaseState, request: a.ActionRequest) -> None:
    """Raise `Refused` unless this actor may do this now. Writes nothing."""
    _check_door(state.case_id, state.closed, state.stage, state.mediator.id if state.mediator else None,
                state.intake.region_code, type(request.command), request.actor)
    request.command.guard(state, request.actor)


def offered(actor: a.Actor, *, case_id: str, stage: Stage, closed: bool, mediator_id: str | None,
            region_code: str) -> list[str]:
    """The command types `actor` may try on this case now: those `check` lets past its role, scope
    and stage rules (from a case's view, or its detail as the API shows it). A command's own guard,
    which needs its fields and the whole state, still decides when it is sent."""
    found = []
    for kind, command in a.COMMAND_TYPES.items():
        try:
            _check_door(case_id, closed or stage is Stage.closed, stage, mediator_id, region_code, command, actor)
        except Refused:
            continue
        found.append(kind)
    return found


def _check_door(case_id: str, closed: bool, stage: Stage, mediator_id: str | None, region_code: str,
                command: type[a.CommandBase], actor: a.Actor) -> None:
    if closed:
        raise Refused(f"case {case_id} is closed; nothing more can be done to it", code="case_closed", case=case_id)
    if actor.role not in command.roles:
        allowed = ", ".join(sorted(r.value for r in command.roles))
        article = "an" if actor.role.value[0] in "aeiou" else "a"
        raise Refused(f"{article} {actor.role.value} cannot {command.what}; this needs one of: {allowed}",
                      code="role_not_allowed", role=actor.role, action=command.model_fields["type"].default,
                      roles=sorted(r.value for r in command.roles))
    _check_scope(case_id, mediator_id, region_code, actor)
    if stage not in command.stages:
        allowed = ", ".join(sorted(s.value for s in command.stages))
        raise Refused(f"cannot {command.what} while the case is in stage '{stage.value}' (allowed in: {allowed})",
                      code="stage_not_allowed", action=command.model_fields["type"].default, stage=stage,
                      stages=sorted(s.value for s in command.stages))


def _check_scope(case_id: str, mediator_id: str | None, region_code: str, actor: a.Actor) -> None:
    if actor.role is Role.mediator:
        if mediator_id is None or mediator_id != actor.user_id:
            raise Refused(f"mediator {actor.user_id} is not assigned to case {case_id}", code="not_assigned_mediator",
                          user=actor.user_id, case=case_id)
    elif actor.region_code and not region_code.startswith(actor.region_code):
        raise Refused(
            f"case {case_id} belongs to region {region_code}, "
            f"outside your region {actor.region_code}",
            code="outside_region", case=case_id, region=region_code, yours=actor.region_code,
        )


def apply(state: CaseState, request: a.ActionRequest, now: datetime, cal: BusinessCalendar, *,
          chosen: Assignee | None = None) -> Effects:
    """Apply a checked action. `chosen`: the mediator or lawyer the action names, looked up
    beforehand (the legacy workflow); without it a named person is found afterwards (`fill`)."""
    effects = request.command.apply(state, Change(now=now, cal=cal, actor=request.actor, chosen=chosen))
    state.applied_requests[request.request_id] = state.timeline[-1].seq if state.timeline else 0
    return effects or Effects()


def fill(state: CaseState, wanted: PersonWanted, found: Assignee | None, now: datetime,
         cal: BusinessCalendar) -> bool:
    """Record the person the workflow found for `wanted`, a system step after the action that
    asked. False, and nothing changes, if the case no longer waits for that (it moved on)."""
    if state.wanted != wanted:
        return False
    state.wanted = None
    if wanted.person_id is not None and found is None:  # named, but not (or no longer) serving here
        who = "mediator" if wanted.kind == "mediator" else "legal-aid lawyer"
        event = changes.emit(state, f"{wanted.kind}_not_found", now, None, person_id=wanted.person_id,
                             region_code=state.intake.region_code)
        role = Role.supervisor if wanted.kind == "mediator" else Role.legal_aid_officer
        changes.notify(state, event, f"assign_{wanted.kind}_manually", role,
                       wanted.asked_by.user_id if wanted.asked_by else None,
                       reason=f"no active {who} '{wanted.person_id}' serves the city of region {state.intake.region_code}")
        return True
    if wanted.kind == "mediator":
        assign_mediator(state, found, now, cal)
    elif wanted.person_id is not None:
        represent(state, found, now, cal, wanted.asked_by)
    else:
        assign_lawyer(state, found, now, cal)
    return True


def read_model_refused(state: CaseState, now: datetime, reason: str) -> bool:
    """The read model refuses the case's snapshots for good: record it on the case's timeline, once.
    True the first time (the caller reports it), False after."""
    if state.read_model_refused is not None:
        return False
    state.read_model_refused = reason
    changes.emit(state, "read_model_refused", now, None, reason=reason)
    return True


def view(state: CaseState) -> CaseView:
    return CaseView(
        case_id=state.case_id, stage=state.stage, phase=state.phase, opened_at=state.opened_at,
        stage_entered_at=state.stage_entered_at, closed_at=state.closed_at, final_outcome=state.final_outcome,
        intake=state.intake, policy_version=state.policy.version, mediator=state.mediator, lawyer=state.lawyer,
        mediation=state.mediation, legal_aid=state.legal_aid, referral=state.referral, escalation=state.escalation,
        satisfaction=state.satisfaction, breached=state.breached, tasks=open_tasks(state), clocks=state.clocks,
        timeline=state.timeline, extension_requests=state.extension_requests, wanted=state.wanted,
    )

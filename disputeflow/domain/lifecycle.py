"""The dispute process as pure rules: which action is allowed when and by whom, and what it changes.

The workflow holds a `CaseState` and calls into this module; nothing here does I/O or reads a
clock (`now` is always passed in), so every rule is unit-testable and replay-safe. Functions that
change a case mutate the state they are given and return the `Effects` the workflow must carry out
with activities (choosing a mediator or a lawyer from reference data).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from disputeflow.domain import actions as a
from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar
from disputeflow.domain.case import (
    Assignee,
    CaseEvent,
    CaseState,
    CaseTask,
    CaseView,
    Escalation,
    ExtensionRequest,
    MediationSession,
    Notification,
    PersonWanted,
)
from disputeflow.domain.clocks import (
    Clock,
    ClockStatus,
    due_alarms,
    extend_clock,
    mark_fired,
    next_alarm_at as clock_next_alarm_at,
    pause_clock,
    resume_clock,
    start_clock,
    stop_clock,
)
from disputeflow.domain.eligibility import assess
from disputeflow.domain.enums import ExternalForum, FinalOutcome, PauseReason, Role, SessionOutcome, Stage
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import BreachAction, CasePolicy


class Refused(Exception):
    """An action that is not allowed now, by this actor; the message says why, for a person."""


class Effects(BaseModel):
    """Work the workflow must do with activities after a change (what `CaseState.wanted` says,
    in the form the legacy workflow reads)."""

    assign_mediator: bool = False
    exclude_mediators: list[str] = Field(default_factory=list)
    assign_lawyer: bool = False


OPEN_STAGES = frozenset(Stage) - {Stage.closed}
STAFF = frozenset({Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor})

# command type -> (stages where it is allowed, roles that may do it, what it does in words)
RULES: dict[str, tuple[frozenset[Stage], frozenset[Role], str]] = {
    "answer_consultation": (frozenset({Stage.triage}), frozenset({Role.operator, Role.supervisor}), "answer a consultation"),
    "refer": (frozenset({Stage.triage}), frozenset({Role.operator, Role.supervisor}), "refer a case to another body"),
    "record_referral_outcome": (frozenset({Stage.referred}), frozenset({Role.operator, Role.supervisor}), "record whether a referral was accepted"),
    "send_to_mediation": (frozenset({Stage.triage}), frozenset({Role.operator, Role.supervisor}), "send a case to mediation"),
    "open_legal_aid": (frozenset({Stage.triage}), frozenset({Role.operator, Role.legal_aid_officer, Role.supervisor}), "open a legal-aid application"),
    "record_mediation_session": (frozenset({Stage.mediation}), frozenset({Role.mediator, Role.supervisor}), "record a mediation session"),
    "extend_mediation": (frozenset({Stage.mediation}), frozenset({Role.mediator, Role.supervisor}), "extend mediation"),
    "record_judicial_confirmation": (frozenset({Stage.agreement}), frozenset({Role.mediator, Role.supervisor}), "record an application for judicial confirmation"),
    "record_performance": (frozenset({Stage.agreement}), frozenset({Role.mediator, Role.supervisor}), "record whether an agreement was performed"),
    "escalate": (
        frozenset({Stage.triage, Stage.referred, Stage.mediation, Stage.agreement, Stage.legal_aid_review,
                   Stage.legal_aid_assignment, Stage.legal_aid_representation}),
        STAFF,
        "escalate a case",
    ),
    "reassign_mediator": (frozenset({Stage.mediation, Stage.escalated}), frozenset({Role.supervisor}), "reassign the mediator"),
    "send_to_legal_aid": (frozenset({Stage.escalated}), frozenset({Role.supervisor}), "send an escalated case to legal aid"),
    "refer_out": (frozenset({Stage.escalated}), frozenset({Role.supervisor}), "refer a case to litigation or arbitration"),
    "request_materials": (frozenset({Stage.legal_aid_review}), frozenset({Role.legal_aid_officer}), "request missing materials"),
    "materials_supplied": (frozenset({Stage.legal_aid_review}), frozenset({Role.legal_aid_officer, Role.operator}), "record that materials were supplied"),
    "assess_eligibility": (frozenset({Stage.legal_aid_review}), frozenset({Role.legal_aid_officer}), "assess legal-aid eligibility"),
    "decide_legal_aid": (frozenset({Stage.legal_aid_review}), frozenset({Role.legal_aid_officer}), "decide a legal-aid application"),
    "request_review": (frozenset({Stage.legal_aid_refused}), frozenset({Role.operator, Role.legal_aid_officer}), "request a review of a refusal"),
    "decide_review": (frozenset({Stage.legal_aid_reconsideration}), frozenset({Role.supervisor}), "decide the review of a refusal"),
    "assign_lawyer": (frozenset({Stage.legal_aid_assignment, Stage.escalated}), frozenset({Role.legal_aid_officer, Role.supervisor}), "assign a lawyer"),
    "record_legal_aid_outcome": (frozenset({Stage.legal_aid_representation}), frozenset({Role.legal_aid_officer}), "record the outcome of legal aid"),
    "record_return_visit": (frozenset({Stage.follow_up}), frozenset({Role.operator, Role.supervisor}), "record a return visit"),
    "complete_review": (frozenset({Stage.supervisor_review}), frozenset({Role.supervisor}), "complete the review of a dissatisfied caller"),
    # A pause moves a deadline, so it is a supervisor's call (a legal-aid officer's for legal-aid
    # clocks); materials requests pause and resume the decision clock by themselves.
    "pause_clock": (OPEN_STAGES, frozenset({Role.legal_aid_officer, Role.supervisor}), "pause a clock"),
    "resume_clock": (OPEN_STAGES, frozenset({Role.legal_aid_officer, Role.supervisor}), "resume a clock"),
    "extend_clock": (OPEN_STAGES, frozenset({Role.supervisor}), "extend a deadline"),
    # Whoever works a case may ask for more time; the supervisor's decision is the approval.
    "request_extension": (OPEN_STAGES, STAFF - {Role.supervisor}, "request an extension of a deadline"),
    "decide_extension": (OPEN_STAGES, frozenset({Role.supervisor}), "decide a requested extension"),
    "withdraw": (OPEN_STAGES, frozenset({Role.operator, Role.supervisor}), "close a withdrawn case"),
}
assert set(RULES) == set(a.COMMAND_TYPES), "every command needs a rule"

# Which clocks give a task its due time.
TASK_CLOCKS: dict[str, tuple[str, ...]] = {
    "triage": ("emergency_response", "triage_response"),
    "confirm_referral": ("referral_acceptance",),
    "hold_mediation_session": ("mediation_conclusion",),
    "record_judicial_confirmation": ("judicial_confirmation_window",),
    "check_performance": ("performance_check",),
    "resolve_escalation": ("escalation_response",),
    "decide_legal_aid": ("legal_aid_decision",),
    "review_refusal": ("refusal_review",),
    "assign_lawyer": ("lawyer_assignment",),
    "return_visit": ("return_visit",),
    "review_dissatisfaction": ("dissatisfaction_review",),
}


# -- Opening -------------------------------------------------------------------------------


def open_case(case_id: str, intake: Intake, policy: CasePolicy, now: datetime, cal: BusinessCalendar,
              *, registered_by: a.Actor | None = None) -> CaseState:
    state = CaseState(case_id=case_id, intake=intake, policy=policy, opened_at=now, stage_entered_at=now)
    event = _emit(
        state, "case_registered", now, registered_by,
        channel=intake.channel, category=intake.category, dispute_type=intake.dispute_type,
        urgency=intake.urgency, region_code=intake.region_code, policy_version=policy.version,
        policy_fingerprint=policy.fingerprint,
    )
    _start_stage_clocks(state, now, cal)
    if intake.urgency == "emergency":
        _notify(state, event, "emergency_registered", Role.supervisor, None, summary=intake.description[:200])
    return state


# -- Checking ------------------------------------------------------------------------------


def check(state: CaseState, request: a.ActionRequest) -> None:
    """Raise `Refused` unless this actor may do this now. Writes nothing."""
    command, actor = request.command, request.actor
    stages, roles, what = RULES[command.type]
    if state.closed:
        raise Refused(f"case {state.case_id} is closed; nothing more can be done to it")
    if actor.role not in roles:
        allowed = ", ".join(sorted(r.value for r in roles))
        article = "an" if actor.role.value[0] in "aeiou" else "a"
        raise Refused(f"{article} {actor.role.value} cannot {what}; this needs one of: {allowed}")
    _check_scope(state, actor)
    if state.stage not in stages:
        allowed = ", ".join(sorted(s.value for s in stages))
        raise Refused(f"cannot {what} while the case is in stage '{state.stage.value}' (allowed in: {allowed})")
    guard = _GUARDS.get(command.type)
    if guard is not None:
        guard(state, command, actor)


def _check_scope(state: CaseState, actor: a.Actor) -> None:
    if actor.role is Role.mediator:
        if state.mediator is None or state.mediator.id != actor.user_id:
            raise Refused(f"mediator {actor.user_id} is not assigned to case {state.case_id}")
    elif actor.region_code and not state.intake.region_code.startswith(actor.region_code):
        raise Refused(
            f"case {state.case_id} belongs to region {state.intake.region_code}, "
            f"outside your region {actor.region_code}"
        )


def _guard_session(state: CaseState, _cmd: a.RecordMediationSession, _actor: a.Actor) -> None:
    if state.mediator is None:
        raise Refused("no mediator is assigned yet; assign one before recording a session")


def _guard_extend_mediation(state: CaseState, _cmd: a.ExtendMediation, _actor: a.Actor) -> None:
    rules = state.policy.mediation
    if state.mediation.extensions >= rules.max_extensions:
        raise Refused(f"mediation was already extended {state.mediation.extensions} time(s); the limit is {rules.max_extensions}")
    if _stage_clock(state, "mediation_conclusion") is None:
        raise Refused("this case has no running mediation deadline to extend")


def _guard_confirmation(state: CaseState, _cmd: a.RecordJudicialConfirmation, _actor: a.Actor) -> None:
    if state.mediation.confirmation_applied is not None:
        raise Refused("the judicial confirmation was already recorded for this agreement")


def _guard_materials_supplied(state: CaseState, _cmd: a.MaterialsSupplied, _actor: a.Actor) -> None:
    if not state.legal_aid.missing_materials:
        raise Refused("no materials were requested, so none can be supplied")


def _guard_decide(state: CaseState, cmd: a.DecideLegalAid, _actor: a.Actor) -> None:
    if state.legal_aid.missing_materials:
        missing = "; ".join(state.legal_aid.missing_materials)
        raise Refused(f"materials are still missing ({missing}); record them as supplied before deciding")
    if cmd.approve:
        assessment = state.legal_aid.assessment
        if assessment is None:
            raise Refused("assess eligibility before approving legal aid")
        if not assessment.eligible:
            raise Refused(f"cannot approve: the applicant is not eligible ({assessment.explanation})")


def _guard_assign_lawyer(state: CaseState, _cmd: a.AssignLawyer, _actor: a.Actor) -> None:
    if state.stage is Stage.escalated and not state.legal_aid.approved:
        raise Refused("a lawyer can be assigned only after legal aid was approved")


def _open_clock_or_refuse(state: CaseState, clock_id: str) -> Clock:
    clock = state.clock(clock_id)
    if clock is None:
        known = ", ".join(c.clock_id for c in state.open_clocks) or "none"
        raise Refused(f"case {state.case_id} has no clock '{clock_id}' (open clocks: {known})")
    if not clock.open:
        raise Refused(f"clock '{clock_id}' has already ended ({clock.status.value})")
    return clock


LEGAL_AID_STAGES = frozenset(s for s in Stage if s.value.startswith("legal_aid"))


def _guard_clock_owner(actor: a.Actor, clock: Clock) -> None:
    if actor.role is Role.legal_aid_officer and clock.stage not in LEGAL_AID_STAGES:
        raise Refused(f"a legal-aid officer may pause or resume only legal-aid clocks, not '{clock.name}'")


def _guard_pause(state: CaseState, cmd: a.PauseClock, actor: a.Actor) -> None:
    clock = _open_clock_or_refuse(state, cmd.clock_id)
    _guard_clock_owner(actor, clock)
    if clock.paused:
        raise Refused(f"clock '{cmd.clock_id}' is already paused")


def _guard_resume(state: CaseState, cmd: a.ResumeClock, actor: a.Actor) -> None:
    clock = _open_clock_or_refuse(state, cmd.clock_id)
    _guard_clock_owner(actor, clock)
    if not clock.paused:
        raise Refused(f"clock '{cmd.clock_id}' is not paused")


def _guard_extend_clock(state: CaseState, cmd: a.ExtendClock, _actor: a.Actor) -> None:
    _open_clock_or_refuse(state, cmd.clock_id)


def _guard_request_extension(state: CaseState, cmd: a.RequestExtension, _actor: a.Actor) -> None:
    _open_clock_or_refuse(state, cmd.clock_id)
    if (pending := _extension_request(state, cmd.clock_id)) is not None:
        raise Refused(f"an extension of clock '{cmd.clock_id}' requested by {pending.requested_by.user_id} "
                      "already awaits a supervisor's decision")


def _guard_decide_extension(state: CaseState, cmd: a.DecideExtension, _actor: a.Actor) -> None:
    _open_clock_or_refuse(state, cmd.clock_id)
    if _extension_request(state, cmd.clock_id) is None:
        waiting = ", ".join(r.clock_id for r in state.extension_requests) or "none"
        raise Refused(f"no extension of clock '{cmd.clock_id}' awaits a decision (awaiting: {waiting})")


_GUARDS: dict[str, Callable[[CaseState, Any, a.Actor], None]] = {
    "record_mediation_session": _guard_session,
    "extend_mediation": _guard_extend_mediation,
    "record_judicial_confirmation": _guard_confirmation,
    "materials_supplied": _guard_materials_supplied,
    "decide_legal_aid": _guard_decide,
    "assign_lawyer": _guard_assign_lawyer,
    "pause_clock": _guard_pause,
    "resume_clock": _guard_resume,
    "extend_clock": _guard_extend_clock,
    "request_extension": _guard_request_extension,
    "decide_extension": _guard_decide_extension,
}


# -- Applying ------------------------------------------------------------------------------


def apply(
    state: CaseState,
    request: a.ActionRequest,
    now: datetime,
    cal: BusinessCalendar,
    *,
    chosen: Assignee | None = None,
) -> Effects:
    """Apply a checked action. `chosen` is the mediator or lawyer named by the action, looked up."""
    cmd, actor = request.command, request.actor
    effects = Effects()
    match cmd:
        case a.AnswerConsultation():
            _to_follow_up(state, now, cal, actor, FinalOutcome.consultation_answered, "consultation_answered", answer=cmd.answer)
        case a.Refer():
            state.referral = {"body": cmd.body.value, "organisation": cmd.organisation, "note": cmd.note}
            _enter(state, Stage.referred, now, cal, actor, "referred", body=cmd.body, organisation=cmd.organisation, note=cmd.note)
        case a.RecordReferralOutcome(accepted=True):
            _to_follow_up(state, now, cal, actor, FinalOutcome.referred_accepted, "referral_accepted", note=cmd.note)
        case a.RecordReferralOutcome(accepted=False):
            _enter(state, Stage.triage, now, cal, actor, "referral_bounced", note=cmd.note)
        case a.SendToMediation():
            _enter(state, Stage.mediation, now, cal, actor, "sent_to_mediation", note=cmd.note)
            _want(state, "mediator", actor)
            effects.assign_mediator = True
        case a.OpenLegalAid():
            _enter(state, Stage.legal_aid_review, now, cal, actor, "legal_aid_opened", note=cmd.note)
        case a.RecordMediationSession():
            effects = _record_session(state, cmd, now, cal, actor)
        case a.ExtendMediation():
            clock = _stage_clock(state, "mediation_conclusion")
            assert clock is not None  # guarded
            state.mediation.extensions += 1
            _emit(state, "mediation_extended", now, actor, reason=cmd.reason, both_parties_consent=True)
            _extend(state, clock, state.policy.mediation.extension, now, cal, actor, cmd.reason)
        case a.RecordJudicialConfirmation():
            state.mediation.confirmation_applied = cmd.applied
            _emit(state, "judicial_confirmation_recorded", now, actor, applied=cmd.applied, court=cmd.court)
            _stop_named(state, "judicial_confirmation_window", now, ClockStatus.met)
        case a.RecordPerformance(performed=True):
            _to_follow_up(state, now, cal, actor, FinalOutcome.mediated_agreement_performed, "agreement_performed", note=cmd.note)
        case a.RecordPerformance(performed=False):
            _escalate(state, now, cal, actor, "the mediated agreement was not performed", note=cmd.note)
        case a.Escalate():
            _escalate(state, now, cal, actor, cmd.reason)
        case a.ReassignMediator():
            effects = _reassign_mediator(state, cmd, now, cal, actor, chosen)
        case a.SendToLegalAid():
            _enter(state, Stage.legal_aid_review, now, cal, actor, "legal_aid_opened", reason=cmd.reason)
        case a.ReferOut():
            outcome = (FinalOutcome.referred_to_litigation if cmd.forum is ExternalForum.litigation
                       else FinalOutcome.referred_to_arbitration)
            _to_follow_up(state, now, cal, actor, outcome, "referred_out", forum=cmd.forum,
                          legal_aid_offered=cmd.legal_aid_offered, note=cmd.note)
        case a.RequestMaterials():
            state.legal_aid.missing_materials += [m for m in cmd.missing if m not in state.legal_aid.missing_materials]
            _emit(state, "materials_requested", now, actor, missing=cmd.missing)
            for clock in _stage_clocks(state):
                if not clock.paused:
                    _pause(state, clock, now, actor, PauseReason.awaiting_materials.value)
        case a.MaterialsSupplied():
            supplied, state.legal_aid.missing_materials = state.legal_aid.missing_materials, []
            _emit(state, "materials_supplied", now, actor, supplied=supplied, note=cmd.note)
            for clock in _stage_clocks(state):
                if clock.paused and clock.pauses[-1].reason == PauseReason.awaiting_materials.value:
                    _resume(state, clock, now, cal, actor)
        case a.AssessEligibility():
            result = assess(
                income_per_capita=cmd.monthly_income_per_capita,
                special_groups=state.intake.special_groups,
                dispute_type=state.intake.dispute_type,
                rules=state.policy.legal_aid,
                today=now.astimezone(SHANGHAI).date(),
                limitation_deadline=cmd.limitation_deadline,
            )
            state.legal_aid.assessment = result
            event = _emit(state, "eligibility_assessed", now, actor, **result.model_dump(mode="json"))
            if result.advance_aid:
                _notify(state, event, "advance_aid_possible", Role.legal_aid_officer, actor.user_id,
                        explanation=result.explanation)
        case a.DecideLegalAid(approve=True):
            state.legal_aid.approved, state.legal_aid.decision_reason = True, cmd.reason
            _enter(state, Stage.legal_aid_assignment, now, cal, actor, "legal_aid_approved", reason=cmd.reason)
            _want(state, "lawyer", actor)
            effects.assign_lawyer = True
        case a.DecideLegalAid(approve=False):
            state.legal_aid.approved, state.legal_aid.decision_reason = False, cmd.reason
            event = _enter(state, Stage.legal_aid_refused, now, cal, actor, "legal_aid_refused", reason=cmd.reason)
            _notify(state, event, "legal_aid_refused", Role.operator, None, reason=cmd.reason)
        case a.RequestReview():
            state.legal_aid.review_requested = True
            _enter(state, Stage.legal_aid_reconsideration, now, cal, actor, "review_requested", reason=cmd.reason)
        case a.DecideReview(overturn=True):
            state.legal_aid.approved, state.legal_aid.decision_reason = True, cmd.reason
            _enter(state, Stage.legal_aid_assignment, now, cal, actor, "refusal_overturned", reason=cmd.reason)
            _want(state, "lawyer", actor)
            effects.assign_lawyer = True
        case a.DecideReview(overturn=False):
            _to_follow_up(state, now, cal, actor, FinalOutcome.legal_aid_refused, "refusal_upheld", reason=cmd.reason)
        case a.AssignLawyer():
            if chosen is not None:  # looked up before the action (the legacy workflow)
                _assign_lawyer(state, chosen, now, cal, actor)
            else:
                _emit(state, "lawyer_named", now, actor, lawyer_id=cmd.lawyer_id)
                _want(state, "lawyer", actor, person_id=cmd.lawyer_id)
        case a.RecordLegalAidOutcome():
            state.legal_aid.outcome = cmd.outcome
            _to_follow_up(state, now, cal, actor, FinalOutcome.legal_aid_completed, "legal_aid_outcome_recorded",
                          outcome=cmd.outcome, note=cmd.note)
        case a.RecordReturnVisit():
            state.satisfaction = cmd.satisfaction
            if cmd.satisfaction <= state.policy.follow_up.review_if_satisfaction_at_most:
                event = _enter(state, Stage.supervisor_review, now, cal, actor, "return_visit_recorded",
                               satisfaction=cmd.satisfaction, comment=cmd.comment, dissatisfied=True)
                _notify(state, event, "caller_dissatisfied", Role.supervisor, None,
                        satisfaction=cmd.satisfaction, comment=cmd.comment)
            else:
                _emit(state, "return_visit_recorded", now, actor, satisfaction=cmd.satisfaction,
                      comment=cmd.comment, dissatisfied=False)
                _close(state, now, cal, actor, state.pending_outcome or FinalOutcome.consultation_answered)
        case a.CompleteReview():
            _emit(state, "review_completed", now, actor, resolution=cmd.resolution)
            _close(state, now, cal, actor, state.pending_outcome or FinalOutcome.consultation_answered)
        case a.PauseClock():
            _pause(state, _require_clock(state, cmd.clock_id), now, actor, cmd.reason.value, note=cmd.note)
        case a.ResumeClock():
            _resume(state, _require_clock(state, cmd.clock_id), now, cal, actor, note=cmd.note)
        case a.ExtendClock():
            _extend(state, _require_clock(state, cmd.clock_id), cmd.by, now, cal, actor, cmd.reason)
        case a.RequestExtension():
            clock = _require_clock(state, cmd.clock_id)
            state.extension_requests.append(ExtensionRequest(clock_id=clock.clock_id, by=cmd.by, reason=cmd.reason,
                                                             requested_by=actor, requested_at=now))
            event = _emit(state, "extension_requested", now, actor, clock_id=clock.clock_id, clock=clock.name,
                          by=str(cmd.by), due_at=clock.due_at, reason=cmd.reason)
            _notify(state, event, "extension_requested", Role.supervisor, None, clock=clock.title, by=str(cmd.by),
                    due_at=clock.due_at.isoformat(), reason=cmd.reason, requested_by=actor.user_id)
        case a.DecideExtension():
            asked = _extension_request(state, cmd.clock_id)
            assert asked is not None  # guarded
            state.extension_requests.remove(asked)
            clock = _require_clock(state, cmd.clock_id)
            if cmd.approve:
                _extend(state, clock, asked.by, now, cal, actor, asked.reason)
            event = _emit(state, "extension_approved" if cmd.approve else "extension_refused", now, actor,
                          clock_id=clock.clock_id, clock=clock.name, by=str(asked.by),
                          requested_by=asked.requested_by.user_id, reason=cmd.reason)
            _notify(state, event, "extension_approved" if cmd.approve else "extension_refused",
                    asked.requested_by.role, asked.requested_by.user_id, clock=clock.title, by=str(asked.by),
                    due_at=state.clock(clock.clock_id).due_at.isoformat(), reason=cmd.reason)
        case a.Withdraw():
            _emit(state, "withdrawn", now, actor, reason=cmd.reason)
            _close(state, now, cal, actor, FinalOutcome.withdrawn, clock_status=ClockStatus.cancelled)
        case _:  # pragma: no cover - RULES and this match are kept in step by the assert above
            raise Refused(f"unknown action {cmd.type}")
    state.applied_requests[request.request_id] = state.timeline[-1].seq if state.timeline else 0
    return effects


def _record_session(state: CaseState, cmd: a.RecordMediationSession, now: datetime, cal: BusinessCalendar,
                    actor: a.Actor) -> Effects:
    progress = state.mediation
    number = len(progress.sessions) + 1
    progress.sessions.append(MediationSession(number=number, at=now, outcome=cmd.outcome, notes=cmd.notes,
                                              mediator_id=state.mediator.id if state.mediator else None))
    if cmd.outcome is SessionOutcome.agreement:
        _enter(state, Stage.agreement, now, cal, actor, "agreement_reached", session=number, notes=cmd.notes)
        return Effects()
    _emit(state, "mediation_session_recorded", now, actor, session=number, outcome=cmd.outcome, notes=cmd.notes)
    if cmd.outcome in (SessionOutcome.no_agreement, SessionOutcome.party_absent):
        progress.failed_sessions += 1
        limit = state.policy.mediation.max_sessions
        if progress.failed_sessions >= limit:
            _escalate(state, now, cal, None, f"{progress.failed_sessions} mediation sessions without agreement (limit {limit})")
    return Effects()


def _reassign_mediator(state: CaseState, cmd: a.ReassignMediator, now: datetime, cal: BusinessCalendar,
                       actor: a.Actor, chosen: Assignee | None) -> Effects:
    previous = state.mediator
    # Not the one being replaced, nor those a reassignment still being carried out set aside.
    pending = state.wanted.exclude if state.wanted and state.wanted.kind == "mediator" else []
    exclude = ([previous.id] if previous else []) + pending
    if state.stage is not Stage.mediation:
        state.mediation.failed_sessions = 0  # a new attempt with a new mediator
        _enter(state, Stage.mediation, now, cal, actor, "sent_to_mediation", reason=cmd.reason)
    else:
        _emit(state, "mediator_released", now, actor, mediator_id=previous.id if previous else None, reason=cmd.reason)
    state.mediator = None
    if chosen is not None:  # looked up before the action (the legacy workflow)
        assign_mediator(state, chosen, now, cal)
        return Effects()
    if cmd.mediator_id is not None:
        _want(state, "mediator", actor, person_id=cmd.mediator_id)
        return Effects()
    _want(state, "mediator", actor, exclude=exclude)
    return Effects(assign_mediator=True, exclude_mediators=exclude)


# -- Results of activities -----------------------------------------------------------------


def fill(state: CaseState, wanted: PersonWanted, found: Assignee | None, now: datetime,
         cal: BusinessCalendar) -> bool:
    """Record the person the workflow found for `wanted`, a system step after the action that
    asked. False, and nothing changes, if the case no longer waits for that (it moved on)."""
    if state.wanted != wanted:
        return False
    state.wanted = None
    if wanted.person_id is not None and found is None:  # named, but not (or no longer) serving here
        who = "mediator" if wanted.kind == "mediator" else "legal-aid lawyer"
        event = _emit(state, f"{wanted.kind}_not_found", now, None, person_id=wanted.person_id,
                      region_code=state.intake.region_code)
        role = Role.supervisor if wanted.kind == "mediator" else Role.legal_aid_officer
        _notify(state, event, f"assign_{wanted.kind}_manually", role, wanted.asked_by.user_id if wanted.asked_by else None,
                reason=f"no active {who} '{wanted.person_id}' serves the city of region {state.intake.region_code}")
        return True
    if wanted.kind == "mediator":
        assign_mediator(state, found, now, cal)
    elif wanted.person_id is not None:
        _assign_lawyer(state, found, now, cal, wanted.asked_by)
    else:
        assign_lawyer(state, found, now, cal)
    return True


def assign_mediator(state: CaseState, chosen: Assignee | None, now: datetime, cal: BusinessCalendar) -> None:
    """Record the mediator the workflow found; none available escalates to the supervisor."""
    state.wanted = None
    if chosen is None:
        _escalate(state, now, cal, None,
                  f"no active mediator in region {state.intake.region_code} for {state.intake.dispute_type.value} disputes")
        return
    state.mediator = chosen
    event = _emit(state, "mediator_assigned", now, None, mediator_id=chosen.id, mediator_name=chosen.name)
    _notify(state, event, "case_assigned", Role.mediator, chosen.id, stage=state.stage)


def assign_lawyer(state: CaseState, chosen: Assignee | None, now: datetime, cal: BusinessCalendar) -> None:
    state.wanted = None
    if chosen is None:
        event = _emit(state, "no_lawyer_available", now, None, region_code=state.intake.region_code)
        _notify(state, event, "assign_lawyer_manually", Role.legal_aid_officer, None)
        return
    _assign_lawyer(state, chosen, now, cal, None)


def _assign_lawyer(state: CaseState, chosen: Assignee, now: datetime, cal: BusinessCalendar, actor: a.Actor | None) -> None:
    state.wanted = None
    state.lawyer = chosen
    _enter(state, Stage.legal_aid_representation, now, cal, actor, "lawyer_assigned",
           lawyer_id=chosen.id, lawyer_name=chosen.name)


# -- Timers --------------------------------------------------------------------------------


def next_alarm_at(state: CaseState) -> datetime | None:
    times = [t for t in (clock_next_alarm_at(c) for c in state.open_clocks) if t is not None]
    return min(times) if times else None


def fire_alarms(state: CaseState, now: datetime, cal: BusinessCalendar) -> bool:
    """Fire every warning and breach that is due, each exactly once. True if anything fired."""
    alarms = sorted((al for c in state.open_clocks for al in due_alarms(c, now)), key=lambda al: al.at)
    fired = False
    for alarm in alarms:
        clock = state.clock(alarm.clock_id)
        if clock is None or clock.status is not ClockStatus.running:
            continue  # an earlier breach in this batch moved the case on
        _replace_clock(state, mark_fired(clock, alarm, now))
        fired = True
        if alarm.kind == "warning":
            event = _emit(state, "clock_warning", now, None, clock_id=clock.clock_id, clock=clock.name,
                          fraction=alarm.fraction, due_at=clock.due_at)
            role, who = _current_assignee(state)
            _notify(state, event, "deadline_warning", role, who, clock=clock.title, due_at=clock.due_at.isoformat())
            continue
        event = _emit(state, "clock_breached", now, None, clock_id=clock.clock_id, clock=clock.name,
                      due_at=clock.due_at, lateness_seconds=(now - clock.due_at).total_seconds(),
                      actions=[x.value for x in clock.on_breach])
        if BreachAction.notify_supervisor in clock.on_breach:
            _notify(state, event, "deadline_breached", Role.supervisor, None, clock=clock.title,
                    due_at=clock.due_at.isoformat())
        if BreachAction.escalate in clock.on_breach and state.stage in RULES["escalate"][0]:
            _escalate(state, now, cal, None, f"deadline missed: {clock.title}")
        elif BreachAction.lapse in clock.on_breach:
            _lapse(state, now, cal, clock)
    return fired


def _lapse(state: CaseState, now: datetime, cal: BusinessCalendar, clock: Clock) -> None:
    if state.stage is Stage.legal_aid_refused:
        _to_follow_up(state, now, cal, None, FinalOutcome.legal_aid_refused, "review_window_lapsed", clock=clock.name)


# -- Views ---------------------------------------------------------------------------------


def open_tasks(state: CaseState) -> list[CaseTask]:
    stage, who = state.stage, None
    specs: list[tuple[str, str, Role, str | None]] = []  # kind, title, role, assignee id
    if stage is Stage.triage:
        specs.append(("triage", "Triage the call: answer, refer, mediate or open legal aid", Role.operator, None))
    elif stage is Stage.referred:
        specs.append(("confirm_referral", "Confirm the referral was accepted", Role.operator, None))
    elif stage is Stage.mediation:
        if state.mediator is None:
            specs.append(("assign_mediator", "Assign a mediator", Role.supervisor, None))
        else:
            specs.append(("hold_mediation_session", "Hold a mediation session and record its outcome", Role.mediator, state.mediator.id))
    elif stage is Stage.agreement:
        who = state.mediator.id if state.mediator else None
        if state.mediation.confirmation_applied is None:
            specs.append(("record_judicial_confirmation", "Record whether the parties applied for judicial confirmation", Role.mediator, who))
        specs.append(("check_performance", "Check that the agreement is performed", Role.mediator, who))
    elif stage is Stage.escalated:
        specs.append(("resolve_escalation", "Resolve the escalation: reassign, legal aid or refer out", Role.supervisor, None))
    elif stage is Stage.legal_aid_review:
        title = ("Await the missing materials" if state.legal_aid.missing_materials
                 else "Assess eligibility and decide the application")
        specs.append(("decide_legal_aid", title, Role.legal_aid_officer, None))
    elif stage is Stage.legal_aid_reconsideration:
        specs.append(("review_refusal", "Review the refusal of legal aid", Role.supervisor, None))
    elif stage is Stage.legal_aid_assignment:
        specs.append(("assign_lawyer", "Assign a lawyer", Role.legal_aid_officer, None))
    elif stage is Stage.legal_aid_representation:
        specs.append(("record_legal_aid_outcome", "Record the outcome of the legal aid", Role.legal_aid_officer, None))
    elif stage is Stage.follow_up:
        specs.append(("return_visit", "Return visit: ask the caller's satisfaction", Role.operator, None))
    elif stage is Stage.supervisor_review:
        specs.append(("review_dissatisfaction", "Review the dissatisfied caller's case", Role.supervisor, None))
    tasks = []
    for kind, title, role, assignee in specs:
        dues = [c.due_at for c in _stage_clocks(state) if c.name in TASK_CLOCKS.get(kind, ())]
        tasks.append(CaseTask(key=f"{state.stage_entries}-{stage.value}-{kind}", kind=kind, title=title,
                              assignee_role=role, assignee_id=assignee, due_at=min(dues) if dues else None,
                              created_at=state.stage_entered_at))
    for asked in state.extension_requests:  # decided before the deadline it would move
        clock = state.clock(asked.clock_id)
        assert clock is not None
        tasks.append(CaseTask(key=f"{state.stage_entries}-{stage.value}-decide_extension-{asked.clock_id}",
                              kind="decide_extension",
                              title=f"Decide the extension by {asked.by} of '{clock.title}' asked by "
                                    f"{asked.requested_by.user_id}: {asked.reason}",
                              assignee_role=Role.supervisor, due_at=clock.due_at, created_at=asked.requested_at))
    return tasks


def view(state: CaseState) -> CaseView:
    return CaseView(
        case_id=state.case_id, stage=state.stage, phase=state.phase, opened_at=state.opened_at,
        stage_entered_at=state.stage_entered_at, closed_at=state.closed_at, final_outcome=state.final_outcome,
        intake=state.intake, policy_version=state.policy.version, mediator=state.mediator, lawyer=state.lawyer,
        mediation=state.mediation, legal_aid=state.legal_aid, referral=state.referral, escalation=state.escalation,
        satisfaction=state.satisfaction, breached=state.breached, tasks=open_tasks(state), clocks=state.clocks,
        timeline=state.timeline, extension_requests=state.extension_requests, wanted=state.wanted,
    )


# -- Internals -----------------------------------------------------------------------------


def _emit(state: CaseState, type_: str, now: datetime, actor: a.Actor | None, **data: Any) -> CaseEvent:
    clean = {k: (v.isoformat() if isinstance(v, datetime) else v.value if hasattr(v, "value") else v)
             for k, v in data.items()}
    event = CaseEvent(seq=len(state.timeline) + 1, type=type_, at=now, actor=actor, stage=state.stage, data=clean)
    state.timeline.append(event)
    return event


def _notify(state: CaseState, event: CaseEvent, kind: str, role: Role, recipient: str | None, **payload: Any) -> None:
    state.outbox.append(Notification(
        key=f"{state.case_id}:{event.seq}:{kind}", kind=kind, recipient_role=role, recipient_id=recipient,
        event_seq=event.seq, payload=payload,
    ))


def _current_assignee(state: CaseState) -> tuple[Role, str | None]:
    tasks = open_tasks(state)
    return (tasks[0].assignee_role, tasks[0].assignee_id) if tasks else (Role.supervisor, None)


def _stage_clocks(state: CaseState) -> list[Clock]:
    return [c for c in state.open_clocks if c.stage is state.stage]


def _stage_clock(state: CaseState, name: str) -> Clock | None:
    return next((c for c in _stage_clocks(state) if c.name == name), None)


def _require_clock(state: CaseState, clock_id: str) -> Clock:
    clock = state.clock(clock_id)
    assert clock is not None  # guarded
    return clock


def _replace_clock(state: CaseState, clock: Clock) -> None:
    state.clocks = [clock if c.clock_id == clock.clock_id else c for c in state.clocks]


def _enter(state: CaseState, stage: Stage, now: datetime, cal: BusinessCalendar, actor: a.Actor | None,
           event_type: str, *, clock_status: ClockStatus = ClockStatus.met, **data: Any) -> CaseEvent:
    """Move to `stage`: the old stage's clocks end, the new stage's clocks start."""
    previous = state.stage
    state.wanted = None  # whoever was being found was for the stage the case leaves
    for clock in _stage_clocks(state):
        _stop(state, clock, now, clock_status)
    state.stage, state.stage_entered_at = stage, now
    state.stage_entries += 1
    event = _emit(state, event_type, now, actor, from_stage=previous, **data)
    _start_stage_clocks(state, now, cal)
    return event


def _start_stage_clocks(state: CaseState, now: datetime, cal: BusinessCalendar) -> None:
    for spec in state.policy.clocks_for(state.stage):
        state.clocks_started += 1
        clock = start_clock(spec, clock_id=f"{spec.clock}-{state.clocks_started}", now=now, calendar=cal)
        state.clocks.append(clock)
        _emit(state, "clock_started", now, None, clock_id=clock.clock_id, clock=clock.name, title=clock.title,
              target=str(clock.target), due_at=clock.due_at, source=clock.source)


def _stop(state: CaseState, clock: Clock, now: datetime, status: ClockStatus) -> None:
    stopped = stop_clock(clock, now=now, status=status)
    _replace_clock(state, stopped)
    kind = "clock_met" if status is ClockStatus.met else "clock_cancelled"
    _emit(state, kind, now, None, clock_id=clock.clock_id, clock=clock.name, due_at=stopped.due_at,
          late=stopped.breached)
    if (asked := _extension_request(state, clock.clock_id)) is not None:  # nothing left to extend
        state.extension_requests.remove(asked)
        _emit(state, "extension_request_lapsed", now, None, clock_id=clock.clock_id, clock=clock.name,
              requested_by=asked.requested_by.user_id)


def _want(state: CaseState, kind: str, actor: a.Actor | None, *, person_id: str | None = None,
          exclude: list[str] | None = None) -> None:
    state.wanted = PersonWanted(kind=kind, person_id=person_id, exclude=exclude or [],
                                asked_at_seq=state.timeline[-1].seq, asked_by=actor)


def _extension_request(state: CaseState, clock_id: str) -> ExtensionRequest | None:
    return next((r for r in state.extension_requests if r.clock_id == clock_id), None)


def _stop_named(state: CaseState, name: str, now: datetime, status: ClockStatus) -> None:
    clock = _stage_clock(state, name)
    if clock is not None:
        _stop(state, clock, now, status)


def _pause(state: CaseState, clock: Clock, now: datetime, actor: a.Actor | None, reason: str, note: str = "") -> None:
    _replace_clock(state, pause_clock(clock, now=now, reason=reason))
    _emit(state, "clock_paused", now, actor, clock_id=clock.clock_id, clock=clock.name, reason=reason, note=note)


def _resume(state: CaseState, clock: Clock, now: datetime, cal: BusinessCalendar, actor: a.Actor | None, note: str = "") -> None:
    resumed = resume_clock(clock, now=now, calendar=cal)
    _replace_clock(state, resumed)
    _emit(state, "clock_resumed", now, actor, clock_id=clock.clock_id, clock=clock.name,
          previous_due_at=clock.due_at, due_at=resumed.due_at, note=note)


def _extend(state: CaseState, clock: Clock, by: Any, now: datetime, cal: BusinessCalendar, actor: a.Actor, reason: str) -> None:
    extended = extend_clock(clock, by=by, now=now, calendar=cal, reason=reason, approved_by=actor.user_id)
    _replace_clock(state, extended)
    _emit(state, "clock_extended", now, actor, clock_id=clock.clock_id, clock=clock.name, by=str(by),
          previous_due_at=clock.due_at, due_at=extended.due_at, reason=reason)


def _escalate(state: CaseState, now: datetime, cal: BusinessCalendar, actor: a.Actor | None, reason: str, **data: Any) -> None:
    state.escalation = Escalation(from_stage=state.stage, reason=reason, at=now)
    event = _enter(state, Stage.escalated, now, cal, actor, "escalated", reason=reason, **data)
    _notify(state, event, "case_escalated", Role.supervisor, None, reason=reason)


def _to_follow_up(state: CaseState, now: datetime, cal: BusinessCalendar, actor: a.Actor | None,
                  final: FinalOutcome, event_type: str, **data: Any) -> None:
    state.pending_outcome = final
    _enter(state, Stage.follow_up, now, cal, actor, event_type, pending_outcome=final, **data)


def _close(state: CaseState, now: datetime, cal: BusinessCalendar, actor: a.Actor | None, outcome: FinalOutcome,
           *, clock_status: ClockStatus = ClockStatus.met) -> None:
    state.final_outcome, state.closed_at = outcome, now
    _enter(state, Stage.closed, now, cal, actor, "case_closed", clock_status=clock_status, final_outcome=outcome)

"""What a person must do next on a case, derived from its stage, each task due with its clocks."""

from __future__ import annotations

from disputeflow.domain.case import CaseState, CaseTask
from disputeflow.domain.enums import Role, Stage
from disputeflow.domain.process import changes as c

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


# Every task's title, by a stable key: the task's kind, or for a task whose title changes with the
# case, the variant's own key (`await_materials`). The console words each key in its languages.
TASK_TITLES: dict[str, str] = {
    "triage": "Triage the call: answer, refer, mediate or open legal aid",
    "confirm_referral": "Confirm the referral was accepted",
    "assign_mediator": "Assign a mediator",
    "hold_mediation_session": "Hold a mediation session and record its outcome",
    "record_judicial_confirmation": "Record whether the parties applied for judicial confirmation",
    "check_performance": "Check that the agreement is performed",
    "resolve_escalation": "Resolve the escalation: reassign, legal aid or refer out",
    "await_materials": "Await the missing materials",
    "decide_legal_aid": "Assess eligibility and decide the application",
    "review_refusal": "Review the refusal of legal aid",
    "assign_lawyer": "Assign a lawyer",
    "record_legal_aid_outcome": "Record the outcome of the legal aid",
    "return_visit": "Return visit: ask the caller's satisfaction",
    "review_dissatisfaction": "Review the dissatisfied caller's case",
    "decide_extension": "Decide the extension by {by} of '{clock}' asked by {user}: {reason}",
}


def title_key(kind: str, title: str) -> str:
    """The key of a task's title (its kind, or the variant it shows)."""
    return "await_materials" if kind == "decide_legal_aid" and title == TASK_TITLES["await_materials"] else kind


def _stage_tasks(state: CaseState) -> list[tuple[str, str, Role, str | None]]:
    """(kind, title, role, assignee id) of the tasks the case's stage calls for."""
    match state.stage:
        case Stage.triage:
            return [("triage", TASK_TITLES["triage"], Role.operator, None)]
        case Stage.referred:
            return [("confirm_referral", TASK_TITLES["confirm_referral"], Role.operator, None)]
        case Stage.mediation if state.mediator is None:
            return [("assign_mediator", TASK_TITLES["assign_mediator"], Role.supervisor, None)]
        case Stage.mediation:
            return [("hold_mediation_session", TASK_TITLES["hold_mediation_session"], Role.mediator,
                     state.mediator.id)]
        case Stage.agreement:
            who = state.mediator.id if state.mediator else None
            tasks = []
            if state.mediation.confirmation_applied is None:
                tasks.append(("record_judicial_confirmation",
                              TASK_TITLES["record_judicial_confirmation"], Role.mediator, who))
            return tasks + [("check_performance", TASK_TITLES["check_performance"], Role.mediator, who)]
        case Stage.escalated:
            return [("resolve_escalation", TASK_TITLES["resolve_escalation"], Role.supervisor,
                     None)]
        case Stage.legal_aid_review:
            title = TASK_TITLES["await_materials" if state.legal_aid.missing_materials else "decide_legal_aid"]
            return [("decide_legal_aid", title, Role.legal_aid_officer, None)]
        case Stage.legal_aid_reconsideration:
            return [("review_refusal", TASK_TITLES["review_refusal"], Role.supervisor, None)]
        case Stage.legal_aid_assignment:
            return [("assign_lawyer", TASK_TITLES["assign_lawyer"], Role.legal_aid_officer, None)]
        case Stage.legal_aid_representation:
            return [("record_legal_aid_outcome", TASK_TITLES["record_legal_aid_outcome"], Role.legal_aid_officer, None)]
        case Stage.follow_up:
            return [("return_visit", TASK_TITLES["return_visit"], Role.operator, None)]
        case Stage.supervisor_review:
            return [("review_dissatisfaction", TASK_TITLES["review_dissatisfaction"], Role.supervisor, None)]
    return []


def open_tasks(state: CaseState) -> list[CaseTask]:
    stage = state.stage
    tasks = []
    for kind, title, role, assignee in _stage_tasks(state):
        dues = [clock.due_at for clock in c.stage_clocks(state) if clock.name in TASK_CLOCKS.get(kind, ())]
        tasks.append(CaseTask(key=f"{state.stage_entries}-{stage.value}-{kind}", kind=kind, title=title,
                              assignee_role=role, assignee_id=assignee, due_at=min(dues) if dues else None,
                              created_at=state.stage_entered_at))
    for asked in state.extension_requests:  # decided before the deadline it would move
        clock = state.clock(asked.clock_id)
        assert clock is not None
        tasks.append(CaseTask(key=f"{state.stage_entries}-{stage.value}-decide_extension-{asked.clock_id}",
                              kind="decide_extension",
                              title=TASK_TITLES["decide_extension"].format(
                                  by=asked.by, clock=clock.title, user=asked.requested_by.user_id, reason=asked.reason),
                              assignee_role=Role.supervisor, due_at=clock.due_at, created_at=asked.requested_at))
    return tasks


def current_assignee(state: CaseState) -> tuple[Role, str | None]:
    tasks = open_tasks(state)
    return (tasks[0].assignee_role, tasks[0].assignee_id) if tasks else (Role.supervisor, None)

"""Intake (POST /cases), listing (GET /cases), search (POST /cases/search), one case (GET /cases/{case_id})."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Body, Query, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import Session

from api import cases
from api.auth import HUMAN_ROLES, REGION_PATTERN, ActorDep, router_for, scoped_region
from api.deps import CaseIdPath, CaseNumbersDep, Day, EngineDep, IdempotencyKey, NowDep, PolicyPinsDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ERROR_DESCRIPTIONS, ApiError, InvalidQuery, error_responses
from api.read_log import ReadLog, ReadLogDep
from api.schemas import CaseDetail, CasePage, CaseSummary
from disputeflow.db import queries
from disputeflow.domain import actions as a
from disputeflow.domain.actions import COMMAND_TYPES, Actor
from disputeflow.domain.drills import DrillAnswer
from disputeflow.domain.enums import Category, DisputeType, Phase, Role, Stage, Urgency
from disputeflow.domain.intake import Caller, Intake
from disputeflow.domain.patterns import PHONE_PATTERN
from disputeflow.domain.text import single_line

intake_router = router_for(Role.operator, Role.supervisor, tags=["intake"])
router = router_for(*HUMAN_ROLES, tags=["cases"])

INTAKE_EXAMPLES = {
    "wage_arrears": {
        "summary": "Migrant worker, wage arrears (hotline call)",
        "value": {
            "channel": "hotline",
            "caller": {"name": "张三", "phone": "13800138000"},
            "region_code": "370102",
            "category": "dispute",
            "dispute_type": "labour_wages",
            "urgency": "normal",
            "special_groups": ["migrant_worker"],
            "description": "工地拖欠三个月工资，共计一万二千元，包工头失联。",
            "counterparty": "某建筑劳务公司",
        },
    },
    "consultation": {
        "summary": "A question answered on the spot",
        "value": {
            "channel": "online",
            "caller": {"name": "李四", "phone": "0531-86012348"},
            "region_code": "370103",
            "category": "consultation",
            "dispute_type": "marriage_family",
            "description": "离婚后孩子抚养费标准如何确定？",
        },
    },
    "emergency": {
        "summary": "Neighbours, threat of violence (handled within the hour)",
        "value": {
            "channel": "walk_in",
            "caller": {"name": "王五", "phone": "13912345678"},
            "region_code": "370102",
            "category": "dispute",
            "dispute_type": "neighbours",
            "urgency": "emergency",
            "special_groups": ["elderly"],
            "description": "邻居因宅基地界线扬言动手，老人独居，情绪激动。",
        },
    },
}

# Where a registered case leads (OpenAPI links): its page, every action, and the auditors' views, each
# with the new case's number, so that a client (or a stateful test) follows a case from registration on.
CASE_OPERATIONS = ["get_case", *(f"act_{kind}" for kind in COMMAND_TYPES),
                   "case_timeline", "case_history", "case_replay", "case_audit", "case_audit_check"]
CASE_LINKS = {operation: {"operationId": operation, "parameters": {"case_id": "$response.body#/case_id"},
                          "description": "The case just registered"} for operation in CASE_OPERATIONS}

# Old enough for any record, and far from the limits of datetime arithmetic.
DayQuery = Annotated[Day | None, Query()]


@intake_router.post(
    "/cases",
    status_code=201,
    response_model=CaseDetail,
    summary="Register a call as a new case",
    operation_id="register_case",
    description=(
        "Registers the call and opens its case: **201** with the case as it opens, its clocks running from "
        "this moment. The case number reads `{region}-{YYYYMMDD}-{NNNN}` (Asia/Shanghai day, a counter per "
        "region and day).\n\n"
        "**Idempotency-Key** (recommended): a retry with the same key and the same body answers **200** with "
        "the same case instead of registering a second one; the same key with a different body is **409**. "
        "Without a key every request registers a new case.\n\n"
        "**503** + `Retry-After` when Temporal is unreachable: nothing was registered (a case number may have "
        "been used up: numbers are unique, not gapless)."
    ),
    responses={201: {"description": "The case, as it opens", "links": CASE_LINKS},
               200: {"model": CaseDetail, "description": "The case registered earlier with this Idempotency-Key",
                     "links": CASE_LINKS},
               **error_responses(409, 413, e409=ERROR_DESCRIPTIONS["409-intake"])},
)
async def register_case(
    intake: Annotated[Intake, Body(openapi_examples=INTAKE_EXAMPLES)],
    response: Response, actor: ActorDep, engine: EngineDep, session: SessionDep, temporal: TemporalDep,
    settings: SettingsDep, pins: PolicyPinsDep, numbers: CaseNumbersDep, now: NowDep, read_log: ReadLogDep,
    idempotency_key: IdempotencyKey = None,
) -> CaseDetail:
    if intake.caller.id_number is not None and intake.category is not Category.legal_aid:
        raise IdNumberNotAsked("the identity card number is asked only for a legal-aid application (category "
                               "legal_aid); give it when the application is opened (open_legal_aid or "
                               "assess_eligibility)")
    case, created = await cases.register_case(intake, key=idempotency_key, actor=actor, engine=engine, session=session,
                                              temporal=temporal, task_queue=settings.temporal_task_queue, pins=pins,
                                              numbers=numbers, now=now,
                                              key_ttl=timedelta(hours=settings.intake_key_ttl_hours))
    if not created:
        # A registration's answer shows the operator what they have just typed, and the case's first
        # event already records who registered it: the read log records later reads, such as this.
        await read_log.arecord([case])
    response.headers["Location"] = f"/cases/{case.case_id}"
    if not created:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return case


class IdNumberNotAsked(ApiError):
    """A well-formed identity-card number on a call that is no legal-aid application: a rule (data
    minimisation) refuses it, 409 with the reason."""

    status_code = 409


def _normalised_phone(phone: str | None, *, where: str = "query") -> str | None:
    if phone is None:
        return None
    try:
        return Caller.model_validate({"name": "-", "phone": phone}).phone
    except ValidationError:
        raise InvalidQuery("phone", "not a valid phone number (mobile: 11 digits; landline: area code + number)",
                           where=where) from None


TextSearch = single_line(min_length=1, max_length=100)


class CaseSearch(BaseModel):
    """`POST /cases/search`: the filters of `GET /cases`, in a body, so that a caller's name or phone
    number never appears in a URL (and so in no access log)."""

    model_config = ConfigDict(extra="forbid")

    stage: Stage | None = None
    phase: Phase | None = None
    region: str | None = Field(default=None, pattern=REGION_PATTERN, description="Region code prefix: 2, 4 or 6 digits")
    urgency: Urgency | None = None
    category: Category | None = None
    dispute_type: DisputeType | None = None
    assignee: single_line(max_length=64) | None = Field(default=None, description="Mediator or lawyer id")
    breached: bool | None = None
    opened_from: Day | None = None
    opened_to: Day | None = None
    q: TextSearch | None = Field(default=None, description="Text in the description or the caller's name",
                                 examples=["工资"])
    phone: str | None = Field(default=None, max_length=32, json_schema_extra={"pattern": PHONE_PATTERN},
                              description="The caller's phone number, in any form intake accepts",
                              examples=["138 0013 8000"])
    cursor: str | None = Field(default=None, pattern=queries.CURSOR_PATTERN, description="`next_cursor` of the page before")
    limit: int = Field(default=50, ge=1, le=queries.MAX_PAGE)


def _search(actor: Actor, session: Session, read_log: ReadLog, search: CaseSearch, *, where: str) -> CasePage:
    if actor.role is Role.mediator:
        scope = queries.Scope(mediator_id=actor.user_id)
    else:
        scope = queries.Scope(region_prefix=scoped_region(actor, search.region))
    filters = queries.CaseFilters(
        stage=search.stage, phase=search.phase, region_prefix=search.region, urgency=search.urgency,
        category=search.category, dispute_type=search.dispute_type, assignee_id=search.assignee,
        breached=search.breached, opened_from=search.opened_from, opened_to=search.opened_to, text=search.q,
        caller_phone=_normalised_phone(search.phone, where=where),
    )
    try:
        page = queries.list_cases(session, scope=scope, filters=filters, cursor=search.cursor, limit=search.limit)
    except queries.InvalidCursor as exc:
        raise InvalidQuery("cursor", str(exc), where=where) from None
    items = [CaseSummary.from_record(r, actor=actor) for r in page.items]
    read_log.record(items)
    return CasePage(items=items, next_cursor=page.next_cursor)


LISTING_NOTE = (
    "From the read model, newest first. Mediators see the cases assigned to them; everyone else the "
    "cases of their region. Filters combine with AND. Paging: pass `next_cursor` back as `cursor` "
    "(stable while new cases arrive). `caller_name` is masked (`张*`) for anyone not working the case."
)


@router.get(
    "/cases",
    response_model=CasePage,
    summary="List cases",
    operation_id="list_cases",
    description=(
        LISTING_NOTE + "\n\nSearching by the caller's phone number is `POST /cases/search`: a number in a URL "
        "ends up in access logs. `phone` here is refused (422) and kept only to say so."
    ),
)
def list_cases(
    actor: ActorDep,
    session: SessionDep,
    read_log: ReadLogDep,
    stage: Stage | None = None,
    phase: Phase | None = None,
    region: Annotated[str | None, Query(pattern=REGION_PATTERN, description="Region code prefix: 2, 4 or 6 digits",
                                        examples=["3701"])] = None,
    urgency: Urgency | None = None,
    category: Category | None = None,
    dispute_type: DisputeType | None = None,
    assignee: Annotated[single_line(max_length=64) | None, Query(description="Mediator or lawyer id")] = None,
    breached: Annotated[bool | None, Query(description="Cases with (or without) a missed deadline")] = None,
    opened_from: DayQuery = None,
    opened_to: DayQuery = None,
    q: Annotated[TextSearch | None,
                 Query(description="Text in the description or the caller's name; a phone number (7 digits or more, "
                                   "spaces and dashes allowed) searches the callers' phones by prefix instead. Prefer "
                                   "`POST /cases/search`: a query string ends up in access logs",
                       examples=["工资"])] = None,
    phone: Annotated[str | None, Query(deprecated=True, include_in_schema=False)] = None,
    cursor: Annotated[str | None, Query(pattern=queries.CURSOR_PATTERN,
                                        description="`next_cursor` of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
) -> CasePage:
    if phone is not None:
        raise InvalidQuery("phone", "search by phone number with POST /cases/search, the number in the body")
    search = CaseSearch(stage=stage, phase=phase, region=region, urgency=urgency, category=category,
                        dispute_type=dispute_type, assignee=assignee, breached=breached, opened_from=opened_from,
                        opened_to=opened_to, q=q, cursor=cursor, limit=limit)
    return _search(actor, session, read_log, search, where="query")


@router.post(
    "/cases/search",
    response_model=CasePage,
    summary="Search cases (by phone number, name, text or any filter of GET /cases)",
    description=LISTING_NOTE + "\n\nThe filters of `GET /cases` in the body, so that a caller's name or phone "
                               "number never appears in a URL.",
    responses=error_responses(413),
)
def search_cases(actor: ActorDep, session: SessionDep, read_log: ReadLogDep, search: CaseSearch) -> CasePage:
    return _search(actor, session, read_log, search, where="body")


@router.get(
    "/cases/{case_id}",
    response_model=CaseDetail,
    summary="One case, as it stands now",
    description=(
        "An open case live from its workflow (`source: workflow`); a closed case from the read model "
        "(`source: read_model`). A case outside your scope answers 404, like an unknown one. The caller's "
        "name and phone are masked for anyone not working the case; each answer that shows them in full "
        "is recorded in the read log (`GET /audit/reads`)."
    ),
    responses=error_responses(404),
    operation_id="get_case",
)
async def get_case(case_id: CaseIdPath, actor: ActorDep, session: SessionDep, temporal: TemporalDep,
                   read_log: ReadLogDep) -> CaseDetail:
    detail = await cases.case_detail(case_id, actor, session=session, temporal=temporal)
    await read_log.arecord([detail])
    return detail



drill_router = router_for(Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor, tags=["cases"])


class DrillBody(BaseModel):
    """An optional action, as the action routes take it plus its `type`; without one, only "if nobody acts"."""

    model_config = ConfigDict(extra="forbid")

    action: a.Command | None = None
    horizon_days: int = Field(default=366, ge=1, le=3660, description="How far ahead to look")


@drill_router.post(
    "/cases/{case_id}/drill",
    response_model=DrillAnswer,
    summary="Clock drill: what the deadlines will do, if nobody acts and if you act",
    description=(
        "Every warning, breach, automatic escalation and lapse still to come, with its instant, in order, "
        "computed by the rules the case's workflow runs, on a copy of its state (`if_nobody_acts`). With an "
        "`action` (a body of an action route plus its `type`), the same after that action done now "
        "(`if_you_act`), without doing it: a drill writes nothing and records nothing in the case's history. "
        "A mediator or lawyer the case waits for is assumed found at once. **409** with the rule's words "
        "when you could not do the action now, when the case is closed, or when it still runs on the legacy "
        "workflow type."
    ),
    responses=error_responses(404, 409, 413),
    openapi_extra={"requestBody": {"content": {"application/json": {"examples": {
        "if_nobody_acts": {"value": {}},
        "extension": {"value": {"action": {"type": "extend_clock", "clock_id": "mediation_conclusion-2",
                                           "by": {"amount": 15, "unit": "calendar_days"}, "reason": "案情复杂"}}},
    }}}}},
)
async def drill_case(case_id: CaseIdPath, actor: ActorDep, session: SessionDep, temporal: TemporalDep, now: NowDep,
                     body: DrillBody | None = None) -> DrillAnswer:
    body = body or DrillBody()
    return await cases.drill(case_id, body.action, actor=actor, session=session, temporal=temporal, now=now,
                             horizon_days=body.horizon_days)

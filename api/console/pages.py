"""The console's pages: server-rendered HTML over the same services and queries as the JSON API.

Every page is built on `page_router(*roles)`: a `PageGuard` (a `RoleGuard`, so the API's own
start-up check sees it) reads the person from the signed session instead of a bearer token, and
lets only those roles through. Every POST also depends on `csrf_checked`; `create_console` refuses
to start if a route lacks either. Cases are found, shown and acted on through `api.cases`
(`locate`, `case_detail`, `register_case`, `act`), listings, inboxes and the board through
`disputeflow.db.queries` and `reports`, scope through `api.auth`; the actions offered are the ones
`lifecycle.offered` lets past the rules' own role, scope and stage checks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi import Path as FastApiPath
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api import cases
from api.auth import HUMAN_ROLES, RoleGuard, api_routes, ensure_every_route_has_roles, in_scope, scoped_region
from api.console import chart, oidc, staff
from api.console.forms import errors_by_field, fields_of, form_values, nest
from api.console.web import (
    LANG_COOKIE, LANGUAGES, SessionCookies, csrf_matches, language_of, render, session_of, translate, words_for,
)
from api.deps import CaseIdPath, database_engine, CaseNumbersDep, EngineDep, NowDep, PolicyPinsDep, SessionDep, SettingsDep, TemporalDep
from api.errors import ActionAccepted, ApiError, Forbidden, TransitionRefused, install_error_handlers
from api.read_log import ReadLog
from api.schemas import CaseDetail, CaseSummary, InboxTask
from disputeflow import history, tracing
from disputeflow.db import audit, queries, reads, reports
from disputeflow.domain import lifecycle
from disputeflow.domain.actions import COMMAND_TYPES, Actor
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.enums import Category, Channel, DisputeType, Role, SpecialGroup, Stage, Urgency
from disputeflow.domain.intake import Caller, Intake

PREFIX = "/console"
PUBLIC_PAGES = frozenset({"/", "/signin", "/signin/dev", "/signout", "/oidc/login", "/oidc/callback", "/language",
                          "/static/{path:path}"})
AT_RISK_WINDOW = reports.DEFAULT_AT_RISK_WINDOW
BOARD_ROWS = 100
READ_LOG_ROWS = 100  # the audit page's newest reads of a case's caller data
HOME = {Role.operator: "/intake", Role.mediator: "/inbox", Role.legal_aid_officer: "/inbox",
        Role.supervisor: "/board", Role.auditor: "/cases"}


class SignInNeeded(Exception):
    """No one is signed in: the page sends the browser to the sign-in page."""


class CsrfRefused(ApiError):
    status_code = 403


class PageGuard(RoleGuard):
    """A page's roles: the person comes from the session, never from the request."""

    def __call__(self, request: Request) -> Actor:  # type: ignore[override]
        actor = session_of(request).actor()
        if actor is None:
            raise SignInNeeded
        if actor.role not in self.roles:
            raise Forbidden(f"a {actor.role.value} may not use this page")
        return actor


async def csrf_checked(request: Request) -> None:
    """Every POST: the session's CSRF token, from the form's `csrf` field or the X-CSRF-Token header."""
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = (await request.form()).get("csrf")
    if not csrf_matches(session_of(request), sent if isinstance(sent, str) else None):
        raise CsrfRefused("this form has expired (or did not come from this console): reload the page and send it again")


Csrf = Depends(csrf_checked)


def page_router(*roles: Role) -> APIRouter:
    return APIRouter(dependencies=[Depends(PageGuard(roles))])


def _me(request: Request) -> Actor:
    actor = session_of(request).actor()
    if actor is None:
        raise SignInNeeded
    return actor


Me = Annotated[Actor, Depends(_me)]

public = APIRouter()
staff_pages = page_router(*HUMAN_ROLES)
intake_pages = page_router(Role.operator, Role.supervisor)
inbox_pages = page_router(Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor)
acting_pages = page_router(Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor)
board_pages = page_router(Role.supervisor)
audit_pages = page_router(Role.auditor, Role.supervisor)


def see_other(path: str) -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}{path}", status_code=303)


# -- Sign-in -------------------------------------------------------------------------------------


@public.get("/")
def home(request: Request) -> Response:
    actor = session_of(request).actor()
    return see_other(HOME[actor.role] if actor else "/signin")


@public.get("/signin")
def signin(request: Request) -> Response:
    provider = oidc.provider_for(request.app.state)
    people = [] if provider else staff.reference_staff()
    return render(request, "signin.html", people=people, oidc=provider is not None,
                  problem=session_of(request).pop("signin_problem"))


@public.post("/signin/dev", dependencies=[Csrf])
def signin_dev(request: Request, user_id: Annotated[str, Form(max_length=64)]) -> Response:
    if oidc.provider_for(request.app.state) is not None:  # development sign-in: only without a provider
        raise Forbidden("sign in through your organisation's account")
    member = staff.find(user_id)
    if member is None:
        raise Forbidden("not one of the development staff")
    session = session_of(request)
    session.sign_in(user_id=member.user_id, role=member.role, region=member.region, name=member.name)
    return see_other(HOME[Role(member.role)])


@public.get("/oidc/login")
async def oidc_login(request: Request) -> Response:
    provider = oidc.provider_for(request.app.state)
    if provider is None:
        return see_other("/signin")
    redirect_uri = str(request.url.replace(path=f"{PREFIX}/oidc/callback", query=""))
    return RedirectResponse(await provider.begin(session_of(request), redirect_uri), status_code=303)


@public.get("/oidc/callback")
async def oidc_callback(request: Request, code: str | None = None, state: str | None = None,
                        error: str | None = None) -> Response:
    provider = oidc.provider_for(request.app.state)
    if provider is None:
        return see_other("/signin")
    session = session_of(request)
    try:
        person = provider.person(await provider.finish(session, code=code, state=state, error=error))
    except oidc.SignInFailed as failure:
        session["signin_problem"] = str(failure)
        return see_other("/signin")
    session.sign_in(**person)
    return see_other(HOME[Role(person["role"])])


@public.post("/signout", dependencies=[Csrf])
def signout(request: Request) -> Response:
    session_of(request).clear()
    return see_other("/signin")


@public.post("/language", dependencies=[Csrf])
def language(request: Request, to: Annotated[str, Form()], back: Annotated[str, Form()] = "/console/") -> Response:
    target = back if back.startswith(f"{PREFIX}/") and "//" not in back else f"{PREFIX}/"
    response = RedirectResponse(target, status_code=303)
    if to in LANGUAGES:
        response.set_cookie(LANG_COOKIE, to, path=PREFIX, samesite="lax", httponly=True, max_age=365 * 86400,
                            secure=request.url.scheme == "https")
    return response


# -- Intake ----------------------------------------------------------------------------------------

INTAKE_FIELDS = ("channel", "caller.name", "caller.phone", "caller.id_number", "region_code", "category",
                 "dispute_type", "urgency", "special_groups", "description", "counterparty", "transfer_order_id")


def _intake_page(request: Request, me: Actor, values: dict[str, Any], errors: dict[str, str], status: int = 200,
                 key: str | None = None) -> Response:
    return render(request, "intake.html", status_code=status, canonical=f"{PREFIX}/intake", values=values, errors=errors,
                  key=key or uuid.uuid4().hex, channels=list(Channel), categories=list(Category),
                  dispute_types=list(DisputeType), urgencies=list(Urgency), groups=list(SpecialGroup))


@intake_pages.get("/intake")
def intake_form(request: Request, me: Me) -> Response:
    region = me.region_code if me.region_code and len(me.region_code) == 6 else ""
    return _intake_page(request, me, {"region_code": region, "channel": "hotline", "urgency": "normal"}, {})


def _intake_input(values: dict[str, Any]) -> dict[str, Any]:
    def text(name: str) -> str | None:
        value = values.get(name)
        value = value.strip() if isinstance(value, str) else None
        return value or None

    groups = values.get("special_groups") or []
    data: dict[str, Any] = {
        "channel": text("channel"), "region_code": text("region_code"), "category": text("category"),
        "caller": {"name": text("caller.name"), "phone": text("caller.phone"), "id_number": text("caller.id_number")},
        "special_groups": [groups] if isinstance(groups, str) else list(groups),
        "description": values.get("description") or "",
        "counterparty": text("counterparty"), "transfer_order_id": text("transfer_order_id"),
    }
    for optional in ("dispute_type", "urgency"):
        if text(optional):
            data[optional] = text(optional)
    return data


@intake_pages.post("/intake", dependencies=[Csrf])
async def intake_submit(request: Request, me: Me, engine: EngineDep, session: SessionDep, temporal: TemporalDep,
                        settings: SettingsDep, pins: PolicyPinsDep, numbers: CaseNumbersDep, now: NowDep) -> Response:
    values = form_values(await request.form())
    values.pop("csrf", None)
    key = str(values.pop("idempotency_key", "") or "")[:64] or None
    try:
        intake = Intake.model_validate(_intake_input(values))
    except ValidationError as error:
        return _intake_page(request, me, values, errors_by_field(error, language=language_of(request)), status=422, key=key)
    try:
        case, _created = await cases.register_case(
            intake, key=key, actor=me, engine=engine, session=session, temporal=temporal,
            task_queue=settings.temporal_task_queue, pins=pins, numbers=numbers, now=now,
            key_ttl=timedelta(hours=settings.intake_key_ttl_hours))
    except Forbidden as refused:
        return _intake_page(request, me, values, {"region_code": refused.detail}, status=403, key=key)
    except Exception as error:  # noqa: BLE001 - shown beside the form, with everything typed kept
        from api.errors import IntakeKeyReused
        if isinstance(error, IntakeKeyReused):
            return _intake_page(request, me, values, {"_form": str(error)}, status=422)
        raise
    if case.possible_duplicates:
        session_of(request)["flash"] = {"duplicates": case.possible_duplicates}
    return see_other(f"/cases/{case.case_id}")


@intake_pages.post("/intake/check", dependencies=[Csrf])
async def intake_check(request: Request, me: Me, session: SessionDep) -> JSONResponse:
    """As the phone is typed: whether it is a number, and the open cases in the operator's region
    from it (the number travels in the body, never in a URL)."""
    body = await request.json()
    phone = str(body.get("phone", ""))[:32]
    language = language_of(request)
    try:
        normalised = Caller.model_validate({"name": "-", "phone": phone}).phone
    except ValidationError as error:
        return JSONResponse({"valid": False, "message": errors_by_field(error, language=language).get("phone", ""),
                             "duplicates": []})
    found = await asyncio.to_thread(queries.open_cases_of_caller, session, phone=normalised,
                                    region_prefix=me.region_code, exclude="")
    return JSONResponse({"valid": True, "message": "", "duplicates": [
        {"case_id": r.case_id, "stage": translate(language, f"stage.{r.stage}"), "opened_at": r.opened_at.isoformat()}
        for r in found]})


# -- Lists and the inbox ---------------------------------------------------------------------------


def _due_state(due_at: datetime | None, breached: bool = False, warned: bool = False,
               now: datetime | None = None) -> str:
    """on_time | warned | breached, for the colour of a task or a clock: breached once the breach
    fired or the due time passed; warned once a warning fired or it falls due within the board's
    at-risk window."""
    if due_at is None:
        return "on_time"
    now = now or datetime.now(UTC)
    due = due_at if due_at.tzinfo else due_at.replace(tzinfo=UTC)
    if breached or due <= now:
        return "breached"
    if warned or due - now <= AT_RISK_WINDOW:
        return "warned"
    return "on_time"


@inbox_pages.get("/inbox")
def inbox(request: Request, me: Me, session: SessionDep, engine: EngineDep, offset: int = 0) -> Response:
    offset = max(0, min(offset, 100_000))
    if me.role is Role.mediator:
        page = queries.open_tasks(session, assignee_id=me.user_id, limit=50, offset=offset)
    else:
        page = queries.open_tasks(session, role=me.role.value, region_prefix=me.region_code, limit=50, offset=offset)
    now = datetime.now(UTC)
    items = [InboxTask.from_rows(t, c, actor=me) for t, c in page.items]  # the caller masked as the API masks it
    _record_reads(engine, me, "GET /console/inbox", items, now)
    rows = [{"task": t, "case": c, "caller_name": item.caller_name, "state": _due_state(t.due_at, now=now)}
            for (t, c), item in zip(page.items, items, strict=True)]
    return render(request, "inbox.html", rows=rows, total=page.total, offset=offset)


@staff_pages.get("/cases")
def case_list(request: Request, me: Me, session: SessionDep, engine: EngineDep, stage: str | None = None,
              cursor: str | None = None) -> Response:
    return _case_list(request, me, session, engine, stage=stage, cursor=cursor)


@staff_pages.post("/cases/search", dependencies=[Csrf])
async def case_search(request: Request, me: Me, session: SessionDep, engine: EngineDep) -> Response:
    values = form_values(await request.form())
    return _case_list(request, me, session, engine, stage=values.get("stage") or None, text=values.get("q") or None,
                      phone=values.get("phone") or None)


def _case_list(request: Request, me: Me, session: Session, engine: Engine, *, stage: str | None,
               cursor: str | None = None, text: str | None = None, phone: str | None = None) -> Response:
    errors: dict[str, str] = {}
    scope = (queries.Scope(mediator_id=me.user_id) if me.role is Role.mediator
             else queries.Scope(region_prefix=scoped_region(me, None)))
    stage = stage if stage in {s.value for s in Stage} else None
    normalised = None
    if phone:
        try:
            normalised = Caller.model_validate({"name": "-", "phone": str(phone)[:32]}).phone
        except ValidationError as error:
            errors["phone"] = errors_by_field(error, language=language_of(request)).get("phone", "")
    text = str(text).strip()[:100] or None if text else None
    page = queries.CasePage(items=[], next_cursor=None)
    if not errors:
        try:
            page = queries.list_cases(session, scope=scope, filters=queries.CaseFilters(
                stage=stage, text=text, caller_phone=normalised), cursor=cursor, limit=50)
        except queries.InvalidCursor:
            errors["cursor"] = "invalid cursor"
    items = [CaseSummary.from_record(r, actor=me) for r in page.items]  # masked as the API masks it
    _record_reads(engine, me, "GET /console/cases", items, datetime.now(UTC))
    return render(request, "cases.html", page=page, items=items, stage=stage, stages=list(Stage), errors=errors,
                  q=text or "", phone=phone or "")


def _record_reads(engine: Engine, me: Actor, route: str, parts: list, now: datetime) -> None:
    """The API's read log: who was shown a caller's data unmasked, written before the page is sent."""
    ReadLog(engine=engine, actor=me, route=route, now=now).record(parts)


# -- One case ------------------------------------------------------------------------------------------


def _offered(me: Actor, case: CaseDetail) -> list[str]:
    return lifecycle.offered(me, case_id=case.case_id, stage=case.stage, closed=case.closed_at is not None,
                             mediator_id=case.mediator.id if case.mediator else None, region_code=case.region_code)


def _case_page(request: Request, me: Actor, case: CaseDetail, *, status: int = 200, open_form: str | None = None,
               form_errors: dict[str, str] | None = None, form_values_: dict[str, Any] | None = None,
               refusal: str | None = None, notice: str | None = None) -> Response:
    now = datetime.now(UTC)
    kinds = _offered(me, case)
    forms = [{"kind": k, "command": COMMAND_TYPES[k], "fields": fields_of(COMMAND_TYPES[k]), "key": uuid.uuid4().hex}
             for k in kinds]
    clocks = [{"clock": c, "state": ("met" if c.status == "met" else "cancelled" if c.status == "cancelled"
                                     else _due_state(c.due_at, c.breached, now=now))} for c in case.clocks]
    tasks = [{"task": t, "state": _due_state(t.due_at, now=now)} for t in case.tasks]
    flash = session_of(request).pop("flash") or {}
    return render(request, "case.html", status_code=status, canonical=f"{PREFIX}/cases/{case.case_id}", case=case, forms=forms, clocks=clocks, tasks=tasks,
                  open_form=open_form, form_errors=form_errors or {}, form_values=form_values_ or {},
                  refusal=refusal, notice=notice or flash.get("notice"), duplicates=flash.get("duplicates", []),
                  can_audit=me.role in (Role.auditor, Role.supervisor))


@staff_pages.get("/cases/{case_id}")
async def case_page(request: Request, case_id: CaseIdPath, me: Me, session: SessionDep, engine: EngineDep,
                    temporal: TemporalDep) -> Response:
    case = await cases.case_detail(case_id, me, session=session, temporal=temporal)
    await asyncio.to_thread(_record_reads, engine, me, "GET /console/cases/{case_id}", [case], datetime.now(UTC))
    return _case_page(request, me, case)


@acting_pages.post("/cases/{case_id}/act/{kind}", dependencies=[Csrf])
async def case_act(request: Request, case_id: CaseIdPath, kind: str, me: Me, session: SessionDep,
                   temporal: TemporalDep) -> Response:
    command_type = COMMAND_TYPES.get(kind)
    await cases.locate(case_id, me, session=session, temporal=temporal)  # 404 before anything else
    if command_type is None:
        raise TransitionRefused(f"there is no action '{kind[:40]}'", code="unknown_action")
    values = form_values(await request.form())
    request_id = str(values.get("idempotency_key") or "")[:64] or cases.new_request_id()
    fields = fields_of(command_type)
    try:
        command = command_type.model_validate({**nest(values, fields), "type": kind})
    except ValidationError as error:
        case = await cases.case_detail(case_id, me, session=session, temporal=temporal)
        return _case_page(request, me, case, status=422, open_form=kind, form_errors=errors_by_field(error, language=language_of(request)),
                          form_values_=values)
    try:
        await cases.act(case_id, command, request_id=request_id, actor=me, session=session, temporal=temporal)
    except TransitionRefused as refused:
        case = await cases.case_detail(case_id, me, session=session, temporal=temporal)
        return _case_page(request, me, case, status=409, open_form=kind, form_values_=values,
                          refusal=words_for(language_of(request)).refusal(refused))
    except ActionAccepted:
        session_of(request)["flash"] = {"notice": "action.accepted"}
        return see_other(f"/cases/{case_id}")
    session_of(request)["flash"] = {"notice": "action.done"}
    # A mediator who hands the case on (or anyone whose scope it leaves) goes back to their inbox.
    try:
        await cases.locate(case_id, me, session=session, temporal=temporal)
    except ApiError:
        return see_other(HOME[me.role])
    return see_other(f"/cases/{case_id}")


# -- Auditor -----------------------------------------------------------------------------------------


async def _history_read(request: Request, me: Actor, route: str, case_id: str, kind: str, detail: str) -> None:
    """The read log's row for a read of the case's history (`ReadLog.access`), before the page leaves."""
    engine = await asyncio.to_thread(database_engine, request.app.state)
    await ReadLog(engine=engine, actor=me, route=route, now=datetime.now(UTC)).aaccess([case_id], kind=kind,
                                                                                      detail=detail)


def _temporal_ui_link(request: Request, case_id: str) -> str:
    settings = request.app.state.settings
    return (f"http://127.0.0.1:{settings.temporal_ui_port}/namespaces/{settings.temporal_namespace}"
            f"/workflows/case-{case_id}")


@audit_pages.get("/cases/{case_id}/audit")
async def audit_page(request: Request, case_id: CaseIdPath, me: Me, session: SessionDep,
                     temporal: TemporalDep) -> Response:
    return await _audit_page(request, case_id, me, session, temporal)


async def _audit_page(request: Request, case_id: str, me: Actor, session: Session, temporal: Any,
                      replay: Any = None) -> Response:
    await cases.locate(case_id, me, session=session, temporal=temporal)
    runs = await history.fetch_case_history(await temporal.client(), case_id)
    entries = await asyncio.to_thread(audit.entries_for_case, session, case_id)
    check = audit.compare_with_source(case_id, entries, history.projected_events(runs))
    # Who was shown the caller's data: the read log's own query, as GET /audit/reads answers it.
    read_log = await asyncio.to_thread(reads.for_case, session, case_id, limit=READ_LOG_ROWS)
    # The page shows the case's story from its history: a read, recorded as the API records it.
    await _history_read(request, me, "GET /console/cases/{case_id}/audit", case_id, "timeline", f"{len(runs)} run(s)")
    return render(request, "audit.html", canonical=f"{PREFIX}/cases/{case_id}/audit", case_id=case_id, story=history.timeline(runs), runs=len(runs), check=check,
                  replay=replay, temporal_ui=_temporal_ui_link(request, case_id), read_log=read_log)


@audit_pages.post("/cases/{case_id}/replay", dependencies=[Csrf])
async def audit_replay(request: Request, case_id: CaseIdPath, me: Me, session: SessionDep,
                       temporal: TemporalDep) -> Response:
    await cases.locate(case_id, me, session=session, temporal=temporal)
    report = await history.replay_case(await temporal.client(), case_id)
    return await _audit_page(request, case_id, me, session, temporal, replay=report)


@audit_pages.get("/cases/{case_id}/history.json")
async def audit_history(request: Request, case_id: CaseIdPath, me: Me, session: SessionDep,
                        temporal: TemporalDep) -> Response:
    await cases.locate(case_id, me, session=session, temporal=temporal)
    runs = await history.fetch_case_history(await temporal.client(), case_id, decode=False)
    await _history_read(request, me, "GET /console/cases/{case_id}/history.json", case_id, "history", f"run {len(runs)}")
    return Response(history.export_history_json(runs[-1]), media_type="application/json",
                    headers={"Content-Disposition": f'attachment; filename="case-{case_id}-run{len(runs)}.json"'})


# -- Supervisor's board --------------------------------------------------------------------------------


def _board_filters(me: Actor, region: str | None, stage: str | None, clock: str | None,
                   assignee: str | None) -> dict[str, Any]:
    import re
    region = region if region and re.fullmatch(r"\d{2}(\d{2}){0,2}", region) else None
    return {"region_prefix": scoped_region(me, region), "stage": stage if stage in {s.value for s in Stage} else None,
            "clock": (clock or "").strip()[:64] or None, "assignee_id": (assignee or "").strip()[:64] or None}


def _board_rows(session: Session, filters: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    breached = reports.breached_clocks(session, limit=BOARD_ROWS, offset=0, **filters)
    at_risk = reports.at_risk_clocks(session, now=now, within=AT_RISK_WINDOW, limit=BOARD_ROWS, offset=0, **filters)
    groups = {axis: Counter(getattr(r, attr) or "—" for r in breached)
              for axis, attr in (("region", "region_code"), ("stage", "stage"), ("clock", "name"),
                                 ("assignee", "assignee_id"))}
    return {"breached": breached, "at_risk": [{"row": r, "state": _due_state(r.due_at, warned=r.warnings_fired > 0,
                                                                              now=now)} for r in at_risk],
            "groups": groups, "now": now}


@board_pages.get("/board")
def board(request: Request, me: Me, session: SessionDep, region: str | None = None, stage: str | None = None,
          clock: str | None = None, assignee: str | None = None) -> Response:
    filters = _board_filters(me, region, stage, clock, assignee)
    today = datetime.now(SHANGHAI).date()
    start = today - timedelta(weeks=7)
    figures = reports.compliance(session, start=start - timedelta(days=start.weekday()), end=today, period="week",
                                 region_prefix=filters["region_prefix"], group_by_region_level=2)
    return render(request, "board.html", filters=filters, stages=list(Stage), raw={"region": region or "",
                  "stage": stage or "", "clock": clock or "", "assignee": assignee or ""},
                  chart=chart.compliance_svg(figures, language_of(request)), **_board_rows(session, filters))


@board_pages.get("/board/live")
def board_live(request: Request, me: Me, session: SessionDep, region: str | None = None, stage: str | None = None,
               clock: str | None = None, assignee: str | None = None) -> Response:
    """The board's tables alone: the board's script asks for them every second, sending the ETag of
    the tables it shows; when nothing in them changed, the answer is 304 and nothing is rendered."""
    filters = _board_filters(me, region, stage, clock, assignee)
    rows = _board_rows(session, filters)
    etag = _board_etag(language_of(request), rows)
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    response = render(request, "board_rows.html", **rows)
    response.headers["ETag"] = etag
    return response


def _board_etag(language: str, rows: dict[str, Any]) -> str:
    """What the board's tables show, as a tag: each row's shown fields (the groups follow from
    them), each at-risk row's colour (which moves with the time), and the language."""
    def shown(row: reports.ClockRow) -> str:
        return f"{row.case_id}\t{row.title}\t{row.region_code}\t{row.stage}\t{row.assignee_id}\t{row.due_at.timestamp()}\n"

    text = "".join([language, "\n", *map(shown, rows["breached"]), "|\n",
                    *(item["state"] + shown(item["row"]) for item in rows["at_risk"])])
    return f'"{hashlib.blake2b(text.encode(), digest_size=16).hexdigest()}"'


@board_pages.get("/board/compliance.csv")
def board_csv(me: Me, session: SessionDep, weeks: int = 8, group_by: int = 4) -> Response:
    """The chart's figures per ISO week, by city (`group_by=6`: by county, 2: by province)."""
    today = datetime.now(SHANGHAI).date()
    start = today - timedelta(weeks=max(1, min(weeks, 53)) - 1)
    region = scoped_region(me, None)
    level = group_by if group_by in (2, 4, 6) else 4
    rows = reports.compliance(session, start=start - timedelta(days=start.weekday()), end=today, period="week",
                              region_prefix=region, group_by_region_level=level)  # type: ignore[arg-type]
    return Response(reports.compliance_csv(rows).encode(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="compliance-{region}-{today:%Y%m%d}.csv"'})


# -- Staffing forecast --------------------------------------------------------------------------------------

FORECAST_ROLES = ("operator", "mediator", "legal_aid_officer", "supervisor")
FORECAST_FIELDS = ("region", "start", "weeks", "runs", "target", "sweep_role", "sweep_levels", "arrivals_source",
                   "arrivals_weeks", "arrivals", "outcomes_source", "outcomes_weeks",
                   *(f"staff_{r}_{k}" for r in FORECAST_ROLES for k in ("count", "per_day")))
JOB_ID = r"^[0-9a-f]{32}$"


def _forecast_defaults(me: Actor) -> dict[str, str]:
    from disputeflow.forecast.spec import default_staff

    today = datetime.now(SHANGHAI).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    values = {"region": me.region_code if len(me.region_code) == 6 else "", "start": monday.isoformat(), "weeks": "8",
              "runs": "3", "target": "95", "sweep_role": "mediator", "sweep_levels": "", "arrivals_source": "read_model",
              "arrivals_weeks": "8", "arrivals": "dispute:labour_wages=40\nconsultation:other=30",
              "outcomes_source": "given", "outcomes_weeks": "8"}
    for role, staff in default_staff().items():
        values[f"staff_{role}_count"], values[f"staff_{role}_per_day"] = str(staff.count), f"{staff.per_day:g}"
    return values


def _forecast_form(request: Request, values: dict[str, str], errors: dict[str, str], status: int = 200) -> Response:
    return render(request, "forecast.html", status_code=status, canonical=f"{PREFIX}/forecast", values=values,
                  errors=errors, roles=FORECAST_ROLES)


def _forecast_spec(values: dict[str, str], session: Session, language: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values as a forecast (a `ForecastSpec`'s input), and the errors by field. The
    arrivals and the outcome mix come from the read model's last weeks when asked."""
    from disputeflow.forecast.profile import outcome_mix, weekly_rates
    from disputeflow.forecast.spec import parse_arrival, parse_levels

    errors: dict[str, str] = {}

    def number(name: str, kind: type = int) -> Any:
        try:
            return kind(values[name].strip())
        except ValueError:
            errors[name] = translate(language, "forecast.error.number")
            return None

    raw: dict[str, Any] = {"region_code": values["region"].strip(), "weeks": number("weeks"), "runs": number("runs")}
    try:
        raw["start"] = date.fromisoformat(values["start"].strip()).isoformat()
    except ValueError:
        errors["start"] = translate(language, "forecast.error.date")
    target = number("target", float)
    if target is not None:
        raw["target"] = target / 100
    raw["staff"] = {role: {"count": number(f"staff_{role}_count"), "per_day": number(f"staff_{role}_per_day", float)}
                    for role in FORECAST_ROLES}
    if values["sweep_levels"].strip():
        try:
            raw["sweep"] = {"role": values["sweep_role"], "levels": parse_levels(values["sweep_levels"])}
        except ValueError:
            errors["sweep_levels"] = translate(language, "forecast.error.levels")
    today = datetime.now(SHANGHAI).date()
    if values["arrivals_source"] == "read_model":
        weeks = number("arrivals_weeks")
        if weeks is not None and "region" not in errors:
            if not 1 <= weeks <= 52:
                errors["arrivals_weeks"] = translate(language, "forecast.error.weeks_back")
            else:
                rates = weekly_rates(session, raw["region_code"], weeks=weeks, until=today)
                if not rates:
                    errors["arrivals_weeks"] = translate(language, "forecast.error.no_arrivals", weeks=weeks)
                raw["arrivals"] = [a.model_dump(mode="json") for a in rates]
    else:
        try:
            raw["arrivals"] = [parse_arrival(line) for line in values["arrivals"].splitlines() if line.strip()]
        except ValueError:
            errors["arrivals"] = translate(language, "forecast.error.arrivals")
    if values["outcomes_source"] == "read_model":
        weeks = number("outcomes_weeks")
        if weeks is not None:
            if not 1 <= weeks <= 52:
                errors["outcomes_weeks"] = translate(language, "forecast.error.weeks_back")
            else:
                mix, _ = outcome_mix(session, raw["region_code"], weeks=weeks, until=today)
                raw["outcomes"] = mix.model_dump(mode="json")
    return raw, errors


_SPEC_FIELDS = {"region_code": "region", "start": "start", "weeks": "weeks", "runs": "runs", "target": "target",
                "arrivals": "arrivals", "sweep": "sweep_levels"}


@board_pages.get("/forecast")
def forecast_form(request: Request, me: Me) -> Response:
    return _forecast_form(request, _forecast_defaults(me), {})


@board_pages.post("/forecast", dependencies=[Csrf])
async def forecast_submit(request: Request, me: Me, session: SessionDep, settings: SettingsDep) -> Response:
    """Start a forecast (the same job as `POST /supervision/forecast`) and show its page."""
    from api.errors import InvalidQuery
    from api.routes.supervision import start_forecast_job
    from disputeflow.forecast.spec import ForecastSpec

    form = await request.form()
    values = _forecast_defaults(me) | {k: str(form.get(k) or "") for k in FORECAST_FIELDS if k in form}
    language = language_of(request)
    raw, errors = _forecast_spec(values, session, language)
    if errors:
        return _forecast_form(request, values, errors, status=422)
    try:
        spec = ForecastSpec.model_validate(raw)
    except ValidationError as error:
        for dotted, message in errors_by_field(error, language=language).items():
            head, _, rest = dotted.partition(".")
            if head == "staff":
                role, _, what = rest.partition(".")
                name = f"staff_{role}_{what}" if what in ("count", "per_day") else "_form"
            else:
                name = _SPEC_FIELDS.get(head, "_form")
            errors.setdefault(name if name in values or name == "_form" else "_form", message)
        return _forecast_form(request, values, errors, status=422)
    try:
        job = start_forecast_job(spec, me, settings)
    except (InvalidQuery, TransitionRefused, Forbidden) as refused:
        return _forecast_form(request, values, {"_form": str(refused.detail)}, status=refused.status_code)
    return see_other(f"/forecast/{job.job_id}")


@board_pages.get("/forecast/{job_id}")
def forecast_page(request: Request, me: Me, job_id: Annotated[str, FastApiPath(pattern=JOB_ID)]) -> Response:
    """A forecast's progress (updated every second), then its charts and tables."""
    from api.routes.supervision import forecast_job_of

    job = forecast_job_of(job_id, me)
    charts = chart.forecast_svg(job.result, language_of(request)) if job.result is not None else []
    return render(request, "forecast_job.html", canonical=f"{PREFIX}/forecast/{job_id}", job=job, charts=charts)


@board_pages.get("/forecast/{job_id}/progress")
def forecast_progress(request: Request, me: Me, job_id: Annotated[str, FastApiPath(pattern=JOB_ID)]) -> Response:
    """The progress alone: the page's script asks for it every second, and reloads the page once done."""
    from api.routes.supervision import forecast_job_of

    return render(request, "forecast_progress.html", job=forecast_job_of(job_id, me))


# -- The app ---------------------------------------------------------------------------------------------


def _wrap_handlers(console: FastAPI) -> None:
    """The API's own error mapping (same status, same words), shown as a page."""
    for exc_type, handler in list(console.exception_handlers.items()):
        async def as_page(request: Request, exc: Exception, handler: Any = handler) -> Response:
            answer = await handler(request, exc)
            detail = json.loads(answer.body).get("detail")
            if isinstance(exc, TransitionRefused):  # a rule's refusal, in the page's language
                detail = words_for(language_of(request)).refusal(exc)
            if isinstance(detail, list):
                detail = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail)
            return render(request, "error.html", status_code=answer.status_code, status=answer.status_code,
                          detail=detail or "")
        console.add_exception_handler(exc_type, as_page)

    async def to_signin(request: Request, exc: Exception) -> Response:
        return see_other("/signin")

    console.add_exception_handler(SignInNeeded, to_signin)


def ensure_every_form_checks_csrf(console: FastAPI) -> None:
    missing = [route.path for route in console.routes if isinstance(route, APIRoute) and "POST" in route.methods
               and not any(d.dependency is csrf_checked for d in route.dependencies)]
    if missing:
        raise RuntimeError(f"console forms without a CSRF check: {', '.join(missing)}")


def create_console(state: Any) -> FastAPI:
    """The console as an app of its own, mounted at /console, sharing the API's state (settings,
    database, Temporal gateway)."""
    from fastapi.staticfiles import StaticFiles

    from api.console.web import HERE

    console = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, telemetry=tracing.NO_NATIVE_TELEMETRY)
    console.state = state
    install_error_handlers(console)
    _wrap_handlers(console)
    console.add_middleware(SessionCookies)
    for router in (public, intake_pages, inbox_pages, staff_pages, acting_pages, board_pages, audit_pages):
        console.include_router(router)
    console.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    ensure_every_route_has_roles(console, public=PUBLIC_PAGES)
    ensure_every_form_checks_csrf(console)
    return console


__all__ = ["create_console", "api_routes", "in_scope", "date"]

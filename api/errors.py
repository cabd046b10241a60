"""Errors a person can act on: typed exceptions, and the one place that maps them to HTTP.

Services and dependencies raise these (or let Temporal's and the database's own errors through);
`install_error_handlers` turns each into a status code and a JSON body `{"detail": ...}`:

| raised                                                      | status                   |
|-------------------------------------------------------------|--------------------------|
| `NotAuthenticated` (missing, forged, expired token)         | 401 + `WWW-Authenticate` |
| `Forbidden` (role never allowed here, region outside scope) | 403                      |
| `CaseNotFound` (unknown, or outside the caller's scope)     | 404                      |
| `ActionAccepted` (taken up by the case, not finished yet)   | 202 + `Location`         |
| `TransitionRefused` (the workflow's validator said no)      | 409                      |
| `InvalidQuery`, bad input, a body that                      | 422                      |
| is not UTF-8 JSON                                           |                          |
| `IntakeKeyReused` (same key, another body), an intake a     | 409                      |
| rule refuses (`RULE_ERRORS`: an identity-card               |                          |
| number's check digit or birthplace)                         |                          |
| a method the path does not have                             | 405 + `Allow` (all of    |
|                                                             | the path's methods)      |
| body over `max_body_bytes` (see `api.body_limit`)           | 413                      |
| `api.limits.RateLimited` (a user's rate limit reached)      | 429 + `Retry-After`      |
| `TemporalUnavailable`, RPC UNAVAILABLE / DEADLINE_EXCEEDED, | 503 + `Retry-After`      |
| `CaseNotAnswering`, database unreachable                    |                          |
| `history.HistoryIncomplete` (an earlier run was purged)      | 410                      |
| `history.CaseErased` (its data key destroyed)                | 410                      |
| any other Temporal RPC or update failure                    | 503 + `Retry-After`      |
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from api.temporal_gateway import TemporalUnavailable
from disputeflow import history
from disputeflow.db.intake import IntakeKeyReused
from disputeflow.domain.intake import ID_NUMBER_RULE
from disputeflow.domain.process.command import REFUSAL_CODES

# Validation errors that are not malformed input but a rule of the world the request runs into
# (a well-formed identity-card number whose check digit is wrong): 409 with the reason, when they
# are all that is wrong with the request.
RULE_ERRORS = frozenset({ID_NUMBER_RULE})

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = TemporalUnavailable.retry_after_seconds
UNAVAILABLE_STATUSES = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


class ApiError(Exception):
    """A business error with its status code. `detail` is what the caller reads."""

    status_code = 500
    headers: dict[str, str] = {}

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotAuthenticated(ApiError):
    status_code = 401
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class Forbidden(ApiError):
    status_code = 403


class CaseNotFound(ApiError):
    """Unknown case, or one outside the caller's scope: the two answer alike, so that a case's
    existence does not leak to someone who may not see it."""

    status_code = 404

    def __init__(self, case_id: str) -> None:
        super().__init__(f"case {case_id} not found")
        self.case_id = case_id


class NotificationNotFound(ApiError):
    """Unknown, or not addressed to the caller: the two answer alike."""

    status_code = 404

    def __init__(self, notification_id: int) -> None:
        super().__init__(f"notification {notification_id} not found among yours")


class TransitionRefused(ApiError):
    """A rule refused the action. `code` and `params` (the domain's `Refused`, when known) let the
    console word it in its own languages; the JSON answer carries `detail` alone, as always."""

    status_code = 409

    def __init__(self, detail: str, *, code: str | None = None, params: dict[str, Any] | None = None) -> None:
        if code is not None and code not in REFUSAL_CODES | API_REFUSAL_CODES:
            raise ValueError(f"unknown refusal code {code!r}")
        super().__init__(detail)
        self.code = code
        self.params = params or {}


# Refusals the API itself makes before a case's rules are asked (the rules' own: REFUSAL_CODES).
API_REFUSAL_CODES = frozenset({"no_such_mediator", "no_such_lawyer", "unknown_action"})


class InvalidQuery(ApiError):
    """A query parameter the route could not use (a cursor from elsewhere, a region outside scope...)."""

    status_code = 422

    def __init__(self, parameter: str, message: str, *, where: str = "query") -> None:
        super().__init__(message)
        self.parameter = parameter
        self.where = where  # "query" or "body"


class CaseNotAnswering(ApiError):
    """The case's workflow did not answer in time (its worker is slow or down); safe to retry."""

    status_code = 503
    headers = {"Retry-After": "2"}


class ActionAccepted(ApiError):
    """The case took the action up but has not finished it in time; it will. Not an error: 202."""

    status_code = 202

    def __init__(self, case_id: str, request_id: str, waited: float) -> None:
        super().__init__(
            f"case {case_id} accepted the action but did not finish it within {waited:g} s; it will be carried "
            "out: send the same request with the same Idempotency-Key to read its result, or read the case")
        self.case_id, self.request_id = case_id, request_id


class ActionAcceptedBody(BaseModel):
    """202: the action was accepted and will be carried out; its result is not known yet."""

    status: Literal["accepted"] = "accepted"
    case_id: str
    request_id: str = Field(description="The Idempotency-Key: send it again with the same request to read the result")
    detail: str


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a sentence, or (422) one item per offending field."""

    detail: str | list[ErrorItem]


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}

ERROR_DESCRIPTIONS: dict[int | str, str] = {
    400: "A payload cannot be decrypted with this server's payload keys (codec endpoint)",
    401: "Missing, forged or expired bearer token",
    403: "Your role may not use this route, or the region is outside your scope",
    404: "No such case (or not one you may see)",
    409: "The case refused the action; `detail` says why",
    "409-intake": "The Idempotency-Key was already used with a different body, or a rule refuses the call as "
                  "given (an identity-card number whose check digit or birthplace code does not hold together, or "
                  "one given on a call that is no legal-aid application); `detail` says which",
    410: "An earlier run of the case's history is gone (purged by the namespace's retention), or the case was "
         "erased (its data key destroyed: its history can no longer be decrypted)",
    413: "Request body larger than `DISPUTEFLOW_MAX_BODY_BYTES`",
    422: "Invalid input (a body that is not UTF-8 JSON included); `detail` names each offending field",
    429: "Too many requests from you (per-user rate limit); retry after `Retry-After` seconds",
    503: "Temporal (or the database, or the token issuer's keys) is unreachable, or the case's worker did not "
         "answer in time; retry after `Retry-After` seconds",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for these status codes, each with the one error model.
    `descriptions` (keyed `e404=...`) says what a status means on a particular route."""
    entries: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entries[code] = {"model": ErrorBody, "description": descriptions.get(f"e{code}", ERROR_DESCRIPTIONS[code])}
        if code in (429, 503):
            entries[code]["headers"] = _RETRY_AFTER
    return entries


def _json(status: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _unavailable(reason: str) -> JSONResponse:
    return _json(503, reason, {"Retry-After": str(RETRY_AFTER_SECONDS)})


def _readable(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Only where and what: the offending input is not echoed back (it may be huge, personal, or
    # not even JSON-encodable, like NaN).
    readable = []
    for e in errors:
        msg = e.get("msg", "invalid")
        if e.get("type") == "json_invalid" and (e.get("ctx") or {}).get("error"):
            msg = f"{msg}: {e['ctx']['error']}"  # e.g. "Expecting ',' delimiter"
        readable.append({"loc": list(e.get("loc", ())), "msg": msg, "type": e.get("type", "value_error")})
    return readable


async def _api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if isinstance(exc, ActionAccepted):
        body = ActionAcceptedBody(case_id=exc.case_id, request_id=exc.request_id, detail=exc.detail)
        return JSONResponse(body.model_dump(), status_code=202,
                            headers={"Location": f"/cases/{exc.case_id}", "Idempotency-Key": exc.request_id})
    if isinstance(exc, InvalidQuery):
        return _json(422, [{"loc": [exc.where, *exc.parameter.split(".")], "msg": exc.detail, "type": "value_error"}])
    return _json(exc.status_code, exc.detail, exc.headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if errors and all(e.get("type") in RULE_ERRORS for e in errors):
        return _json(409, "; ".join(e.get("msg", "refused") for e in errors))
    return _json(422, _readable(errors))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own errors, in the API's shape. A body FastAPI could not even
    decode (not UTF-8) is invalid input like any malformed JSON: 422, not FastAPI's bare 400. A
    405 lists every method of the path in `Allow` (Starlette names only the first route's)."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return _json(422, [{"loc": ["body"], "msg": "the body is not JSON encoded as UTF-8", "type": "json_invalid"}])
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(allowed_methods(request.app, request.url.path))
    return _json(exc.status_code, exc.detail, headers)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route of `app` serves at `path` (HEAD with GET, as Starlette does)."""
    matching = []
    for context in iter_route_contexts(app.routes):
        regex, served = getattr(context, "path_regex", None), context.methods
        if regex is not None and served and regex.match(path):
            matching.append((context.path_format, served))
    # A literal path (`/cases/search`) is its own resource, though a template (`/cases/{case_id}`)
    # would also match it: only the literal route's methods are the resource's.
    literal = [(template, served) for template, served in matching if "{" not in template]
    return sorted(set().union(*(served for _, served in literal or matching)))


async def _intake_key_reused(_request: Request, exc: Exception) -> JSONResponse:
    # Well-formed, but it conflicts with what the key already stands for: 409, like any refusal.
    return _json(409, str(exc))


async def _no_history(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, history.CaseNotFound)
    return _json(404, f"case {exc.case_id} not found")


async def _history_incomplete(_request: Request, exc: Exception) -> JSONResponse:
    return _json(410, str(exc))  # also history.CaseErased: "case ... was erased: ...", no caller data


async def _history_undecryptable(_request: Request, exc: Exception) -> JSONResponse:
    log.error("%s", exc)  # names the key id, never a payload
    return _json(500, "the case's history cannot be decrypted with this server's payload keys")


async def _temporal_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return _unavailable(str(exc))


async def _rpc_error(_request: Request, exc: Exception) -> JSONResponse:
    # Whatever Temporal answered that the services did not turn into a business error: nothing
    # was done that a retry would repeat (actions carry their request id), so: try again later.
    assert isinstance(exc, RPCError)
    if exc.status in UNAVAILABLE_STATUSES:
        return _unavailable(f"Temporal is unavailable: {exc.message}")
    log.warning("Temporal refused a request: %s (%s)", exc.message, exc.status)
    return _unavailable(f"Temporal could not answer now: {exc.message}")


async def _update_failed(_request: Request, exc: Exception) -> JSONResponse:
    # A refusal is turned into TransitionRefused by the service; anything else failed inside the
    # workflow's handler, which changed nothing.
    assert isinstance(exc, WorkflowUpdateFailedError)
    log.warning("case update failed: %r", exc.cause)
    return _unavailable(f"the case could not apply the action: {getattr(exc.cause, 'message', None) or exc.cause}")


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # Unreachable, or locked past the busy timeout: both pass.
    assert isinstance(exc, OperationalError)
    log.warning("database unavailable: %s", (str(exc.orig).splitlines() or ["?"])[0])
    return _unavailable("the database is unavailable")


def _naming_the_request(handler: Callable[[Request, Exception], Awaitable[JSONResponse]]):
    """An action's error answers name its request id (`Idempotency-Key`), as its results do: a
    caller who sent no key can then retry a 503 with the one it was given, which acts at most once
    (the first delivery may still reach the case)."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = await handler(request, exc)
        request_id = getattr(request.state, "request_id", None)
        if request_id is not None and "Idempotency-Key" not in response.headers:
            response.headers["Idempotency-Key"] = request_id
        return response

    return handle


def install_error_handlers(app: FastAPI) -> None:
    for exc_type, handler in ((ApiError, _api_error), (StarletteHTTPException, _http_error),
                              (RequestValidationError, _validation_error),
                              (IntakeKeyReused, _intake_key_reused), (history.CaseNotFound, _no_history),
                              (history.HistoryIncomplete, _history_incomplete), (history.CaseErased, _history_incomplete),
                              (history.HistoryUndecryptable, _history_undecryptable),
                              (TemporalUnavailable, _temporal_unavailable), (RPCError, _rpc_error),
                              (WorkflowUpdateFailedError, _update_failed), (OperationalError, _database_unavailable)):
        app.add_exception_handler(exc_type, _naming_the_request(handler))

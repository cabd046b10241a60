"""Who is calling, and may they: bearer tokens, the actor dependency, and routers that deny by default.

Tokens are JWTs signed with EdDSA (Ed25519; see `disputeflow.token_keys` for where the keys live),
or HS256 only where configured on purpose, carrying

    sub     the user id                    role    operator | mediator | legal_aid_officer | supervisor | auditor
    region  2, 4 or 6 digits of an administrative code: the user's scope
    name    display name (optional)        iat, exp  issued / expires (seconds since the epoch)
    iss     DISPUTEFLOW_TOKEN_ISSUER       aud     DISPUTEFLOW_TOKEN_AUDIENCE

The API checks the signature, the algorithm, `iss`, `aud`, the expiry and that the token lives no
longer than `DISPUTEFLOW_TOKEN_MAX_TTL_HOURS`. `disputeflow token ...` prints one for local use.
The actor of every action comes from the token only, never from a request body.

Deny by default: routes live on routers made by `router_for(*roles)`, which puts a `RoleGuard` in
front of every route; a route may narrow further with `dependencies=[allow(...)]`. At start-up
`ensure_every_route_has_roles` refuses an app with a route that has no guard, so a route cannot
be added without saying who may call it. `/health` and the docs are the only public routes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

import logging

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, ValidationError

from api import limits
from api.errors import ApiError, Forbidden, NotAuthenticated, error_responses
from disputeflow import logs, token_keys
from disputeflow.domain.actions import Actor
from disputeflow.domain.enums import Role
from disputeflow.settings import Settings

HUMAN_ROLES = tuple(r for r in Role if r is not Role.system)
PUBLIC_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc"})
REGION_PATTERN = r"^\d{2}(\d{2}){0,2}$"

log = logging.getLogger(__name__)

TokenRole = Literal["operator", "mediator", "legal_aid_officer", "supervisor", "auditor"]
assert set(TokenRole.__args__) == {r.value for r in HUMAN_ROLES}  # type: ignore[attr-defined]


class TokenClaims(BaseModel):
    sub: str = Field(min_length=1, max_length=64)
    role: TokenRole
    region: str = Field(pattern=REGION_PATTERN)
    name: str | None = Field(default=None, max_length=100)
    iat: int
    exp: int

    def actor(self) -> Actor:
        return Actor(user_id=self.sub, role=Role(self.role), region_code=self.region, name=self.name)


class TokenKeysUnavailable(ApiError):
    """The issuer's JWKS could not be fetched: no token can be checked now (503, retry)."""

    status_code = 503
    headers = {"Retry-After": "5"}


class TokenTooLong(ValueError):
    """A token asked for longer than DISPUTEFLOW_TOKEN_MAX_TTL_HOURS."""


def issue_token(settings: Settings, *, user_id: str, role: Role | str, region: str, name: str | None = None,
                hours: float | None = None, now: datetime | None = None) -> str:
    """A signed token for this person, valid `hours` (default `settings.token_ttl_hours`, at most
    `settings.token_max_ttl_hours`)."""
    issued = now or datetime.now(timezone.utc)
    hours = settings.token_ttl_hours if hours is None else hours
    if not 0 < hours <= settings.token_max_ttl_hours:
        raise TokenTooLong(f"a token lives more than 0 and at most {settings.token_max_ttl_hours:g} hours "
                           "(DISPUTEFLOW_TOKEN_MAX_TTL_HOURS)")
    claims = TokenClaims(sub=user_id, role=Role(role).value, region=region, name=name,
                         iat=int(issued.timestamp()), exp=int((issued + timedelta(hours=hours)).timestamp()))
    payload = claims.model_dump(exclude_none=True) | {"iss": settings.token_issuer, "aud": settings.token_audience}
    return token_keys.signer(settings).sign(payload)


def decode_token(token: str, verifier: token_keys.Verifier) -> Actor:
    """The actor a token names; `NotAuthenticated` if it is forged, expired or malformed, or was
    issued by someone else, for someone else, or for too long."""
    try:
        return TokenClaims.model_validate(verifier.claims(token)).actor()
    except jwt.ExpiredSignatureError:
        raise NotAuthenticated("the bearer token has expired; get a new one") from None
    except (jwt.InvalidTokenError, ValidationError):
        raise NotAuthenticated("the bearer token is not valid") from None
    except token_keys.TokenKeyUnavailable as error:
        log.warning("%s", error)
        raise TokenKeysUnavailable("the token issuer's keys are unavailable; retry shortly") from None


_bearer = HTTPBearer(
    auto_error=False, bearerFormat="JWT",
    description="A token from `disputeflow token --user U --role R --region 3701`",
)


def token_verifier(request: Request) -> token_keys.Verifier:
    state = request.app.state
    if getattr(state, "token_verifier", None) is None:  # read (or generated) once per process
        state.token_verifier = token_keys.Verifier(state.settings)
    return state.token_verifier


async def current_actor(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Actor:
    if credentials is None:
        raise NotAuthenticated("send a bearer token: Authorization: Bearer <token>")
    actor = decode_token(credentials.credentials, token_verifier(request))
    case_id = request.path_params.get("case_id")
    logs.update(user_id=actor.user_id, case_id=case_id, workflow_id=f"case-{case_id}" if case_id else None)
    return actor


ActorDep = Annotated[Actor, Depends(current_actor)]


class RoleGuard:
    """A dependency that lets only `roles` through (403 for the others)."""

    def __init__(self, roles: Iterable[Role]) -> None:
        self.roles = frozenset(roles)
        if not self.roles:
            raise ValueError("a route needs at least one role; say explicitly who may call it")
        if Role.system in self.roles:
            raise ValueError("the system role has no tokens")

    async def __call__(self, actor: ActorDep) -> Actor:
        if actor.role not in self.roles:
            allowed = ", ".join(sorted(r.value for r in self.roles))
            raise Forbidden(f"a {actor.role.value} may not use this route; it needs one of: {allowed}")
        return actor


def allow(*roles: Role) -> Any:
    """`dependencies=[allow(Role.supervisor)]`: narrow one route of a `router_for` router."""
    return Depends(RoleGuard(roles))


async def _rate_limit(request: Request, actor: ActorDep) -> None:
    limits.enforce(request, actor)


def router_for(*roles: Role, **kwargs: Any) -> APIRouter:
    """A router every route of which requires a token with one of `roles`, within the user's rate
    limits (`api.limits`: 429 + Retry-After beyond them)."""
    kwargs.setdefault("responses", {})
    kwargs["responses"] = {**error_responses(401, 403, 422, 429, 503), **kwargs["responses"]}
    return APIRouter(dependencies=[allow(*roles), Depends(_rate_limit)], **kwargs)


@dataclass(frozen=True)
class RouteInfo:
    method: str
    path: str
    roles: frozenset[Role] | None  # None: no guard at all


def api_routes(app: FastAPI) -> list[RouteInfo]:
    """Every operation of the app as served (router prefixes and dependencies included)."""
    found = []
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            roles = _guarded_roles(context.dependant)
            found += [RouteInfo(method, context.path, roles) for method in sorted(context.methods)]
    return found


def _guarded_roles(root: Dependant) -> frozenset[Role] | None:
    """The roles every guard in the dependency tree lets through; None if there is no guard."""
    allowed: frozenset[Role] | None = None
    pending = [root]
    while pending:
        dependant = pending.pop()
        if isinstance(dependant.call, RoleGuard):
            allowed = dependant.call.roles if allowed is None else allowed & dependant.call.roles
        pending.extend(dependant.dependencies)
    return allowed


def ensure_every_route_has_roles(app: FastAPI, public: Collection[str] = PUBLIC_PATHS) -> None:
    unguarded = [f"{r.method} {r.path}" for r in api_routes(app) if r.path not in public and r.roles is None]
    if unguarded:
        raise RuntimeError(f"routes without a role guard (build them with router_for): {', '.join(unguarded)}")


def in_scope(actor: Actor, *, region_code: str, mediator_id: str | None) -> bool:
    """Object-level scope: a mediator sees the cases assigned to them; everyone else their region."""
    if actor.role is Role.mediator:
        return mediator_id is not None and mediator_id == actor.user_id
    return region_code.startswith(actor.region_code or "")


def scoped_region(actor: Actor, requested: str | None) -> str:
    """The region prefix a query may cover: the caller's own, or a narrower one inside it."""
    own = actor.region_code or ""
    if requested is None or requested.startswith(own):
        return requested or own
    if own.startswith(requested):
        return own
    raise Forbidden(f"region {requested} is outside your region {own}")

"""Bearer tokens: who may call at all (401), deny-by-default routers, and the token command."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import jwt
import pytest
from fastapi import APIRouter

from api.app import create_app
from api.auth import decode_token, ensure_every_route_has_roles, issue_token, router_for
from api.errors import NotAuthenticated
from disputeflow import cli
from disputeflow.domain.enums import Role
from disputeflow.settings import get_settings
from tests.api.conftest import OPERATOR, SIGNING_KEY, Stack

CLI_KEY = "cli-test-signing-key-" + "y" * 32


def _claims(**overrides) -> dict:
    now = int(datetime.now(timezone.utc).timestamp())
    return {"sub": "op-1", "role": "operator", "region": "370102", "iat": now, "exp": now + 3600} | overrides


@pytest.mark.parametrize(
    ("authorization", "why"),
    [
        (None, "send a bearer token"),
        ("Basic b3AtMTpzZWNyZXQ=", "send a bearer token"),
        ("Bearer not-a-token", "not valid"),
        ("Bearer " + jwt.encode(_claims(), "someone-elses-key-" + "x" * 32, algorithm="HS256"), "not valid"),  # forged
        ("Bearer " + jwt.encode(_claims(), SIGNING_KEY, algorithm="HS512"), "not valid"),  # algorithm not accepted
        ("Bearer " + jwt.encode(_claims(), None, algorithm="none"), "not valid"),  # unsigned
        ("Bearer " + jwt.encode(_claims(role="system"), SIGNING_KEY, algorithm="HS256"), "not valid"),
        ("Bearer " + jwt.encode(_claims(role="admin"), SIGNING_KEY, algorithm="HS256"), "not valid"),
        ("Bearer " + jwt.encode(_claims(region="3"), SIGNING_KEY, algorithm="HS256"), "not valid"),
        ("Bearer " + jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SIGNING_KEY), "not valid"),
        ("Bearer " + jwt.encode(_claims(iat=1, exp=2), SIGNING_KEY, algorithm="HS256"), "expired"),
    ],
    ids=["missing", "basic", "garbage", "forged", "hs512", "alg-none", "system-role", "unknown-role",
         "bad-region", "no-exp", "expired"],
)
async def test_401_for_a_missing_or_invalid_token(stack: Stack, authorization: str | None, why: str) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/cases"), ("POST", "/cases/370102-20261130-0001/actions/withdraw"),
                         ("GET", "/audit/verify")):
        response = await stack.http.request(method, path, headers=headers, json={"reason": "x"})
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert why in response.json()["detail"]


async def test_an_expired_token_of_ours_is_refused(stack: Stack) -> None:
    token = issue_token(stack.settings, user_id="op-1", role="operator", region="370102", hours=1,
                        now=datetime.now(timezone.utc) - timedelta(hours=2))
    response = await stack.http.get("/cases", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


async def test_health_and_docs_are_public(stack: Stack) -> None:
    assert (await stack.http.get("/docs")).status_code == 200
    spec = (await stack.http.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert (await stack.http.get("/health")).status_code in (200, 503)  # public: never 401


def test_a_route_without_roles_stops_the_app() -> None:
    app = create_app()
    unguarded = APIRouter()

    @unguarded.get("/leak")
    def leak() -> dict:
        return {}

    app.include_router(unguarded)
    with pytest.raises(RuntimeError, match="/leak"):
        ensure_every_route_has_roles(app)
    with pytest.raises(ValueError, match="at least one role"):
        router_for()
    with pytest.raises(ValueError, match="system"):
        router_for(Role.system)


def test_the_token_command_prints_a_token_the_api_accepts(monkeypatch, capsys, tmp_path) -> None:
    monkeypatch.setenv("DISPUTEFLOW_JWT_SECRET", CLI_KEY)
    monkeypatch.setenv("DISPUTEFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert cli.main(["token", "--user", "med-370102-01", "--role", "mediator", "--region", "3701",
                         "--name", "李秀兰", "--hours", "2"]) == 0
    finally:
        get_settings.cache_clear()
    token = capsys.readouterr().out.strip()
    actor = decode_token(token, CLI_KEY)
    assert (actor.user_id, actor.role, actor.region_code, actor.name) == ("med-370102-01", Role.mediator, "3701", "李秀兰")
    claims = jwt.decode(token, CLI_KEY, algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == 2 * 3600
    with pytest.raises(NotAuthenticated):
        decode_token(token, SIGNING_KEY)
    for bad in (["--role", "system"], ["--role", "operator", "--region", "370"]):
        with pytest.raises(SystemExit):
            cli.main(["token", "--user", "x", "--region", "37", *bad])


def test_the_actor_is_the_token(stack: Stack) -> None:
    token = stack.auth(OPERATOR, name="王芳")["Authorization"].removeprefix("Bearer ")
    actor = decode_token(token, SIGNING_KEY)
    assert actor.model_dump() == {"user_id": "op-1", "role": Role.operator, "region_code": "370102", "name": "王芳"}

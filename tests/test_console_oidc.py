"""The console's production sign-in: OpenID Connect, authorization code with PKCE, against a tiny
provider this test runs on loopback (discovery, authorize, token with PKCE verification, JWKS; the
ID token signed with an Ed25519 key). The console is driven over ASGI, the provider over real HTTP,
since the console's server calls the provider's token endpoint and JWKS itself."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse

from api.app import create_app
from disputeflow.settings import Settings
from tests.conftest import free_port

CLIENT_ID, CLIENT_SECRET = "disputeflow-console", "console-secret-for-tests"


@dataclass
class Provider:
    issuer: str
    claims: dict[str, Any] = field(default_factory=lambda: {"role": "12348-operators", "region": "370102",
                                                            "name": "张晓燕"})
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    nonce_override: str | None = None


def provider_app(provider: Provider, key: Ed25519PrivateKey) -> FastAPI:
    app = FastAPI()
    public = jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "k1", "use": "sig",
                                                                                   "alg": "EdDSA"}

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {"issuer": provider.issuer, "authorization_endpoint": f"{provider.issuer}/authorize",
                "token_endpoint": f"{provider.issuer}/token", "jwks_uri": f"{provider.issuer}/jwks",
                "code_challenge_methods_supported": ["S256"], "id_token_signing_alg_values_supported": ["EdDSA"]}

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return {"keys": [public]}

    @app.get("/authorize")
    def authorize(request: Request) -> RedirectResponse:
        asked = dict(request.query_params)
        provider.authorize_requests.append(asked)
        code = secrets.token_urlsafe(16)
        provider.codes[code] = asked
        return RedirectResponse(f"{asked['redirect_uri']}?code={code}&state={asked['state']}", status_code=302)

    @app.post("/token")
    def token(request: Request, grant_type: str = Form(), code: str = Form(), redirect_uri: str = Form(),
              code_verifier: str = Form()) -> JSONResponse:
        provider.token_requests.append({"grant_type": grant_type, "code": code, "verifier": code_verifier,
                                        "authorization": request.headers.get("authorization", "")})
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        asked = provider.codes.pop(code, None)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(code_verifier.encode()).digest()).rstrip(b"=").decode()
        if (asked is None or grant_type != "authorization_code" or redirect_uri != asked["redirect_uri"]
                or request.headers.get("authorization") != f"Basic {basic}" or challenge != asked["code_challenge"]):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        now = int(time.time())
        id_token = jwt.encode({"iss": provider.issuer, "aud": CLIENT_ID, "sub": "staff-0042", "iat": now,
                               "exp": now + 300, "nonce": provider.nonce_override or asked["nonce"],
                               **provider.claims}, key, algorithm="EdDSA", headers={"kid": "k1"})
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": id_token})

    return app


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    port = free_port()
    found = Provider(issuer=f"http://127.0.0.1:{port}")
    server = uvicorn.Server(uvicorn.Config(provider_app(found, Ed25519PrivateKey.generate()), host="127.0.0.1",
                                           port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        yield found
    finally:
        server.should_exit = True
        await serving


@pytest.fixture(scope="module")
async def console_app(provider: Provider) -> AsyncIterator[FastAPI]:
    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()), temporal_address="127.0.0.1:9",
                        console_oidc_issuer=provider.issuer, console_oidc_client_id=CLIENT_ID,
                        console_oidc_client_secret=CLIENT_SECRET,
                        console_oidc_role_map={"12348-operators": "operator"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def console(console_app: FastAPI, provider: Provider) -> AsyncIterator[httpx.AsyncClient]:
    """A browser of its own (no cookies yet) for each test, and the provider's default answers."""
    provider.claims = {"role": "12348-operators", "region": "370102", "name": "张晓燕"}
    provider.nonce_override = None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=console_app), base_url="https://console.test") as c:
        yield c


async def _sign_in(console: httpx.AsyncClient, *, tamper_state: bool = False) -> httpx.Response:
    """The browser's part: the console's redirect to the provider, the provider's back."""
    start = await console.get("/console/oidc/login")
    assert start.status_code == 303
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    assert back.status_code == 302
    callback = urlsplit(back.headers["location"])
    query = callback.query.replace("state=", "state=x") if tamper_state else callback.query
    return await console.get(f"{callback.path}?{query}")


async def test_sign_in_with_code_and_pkce_maps_role_and_region(console: httpx.AsyncClient,
                                                                provider: Provider) -> None:
    page = await console.get("/console/signin")
    assert "/console/oidc/login" in page.text and "signin-op-1" not in page.text  # no development list

    done = await _sign_in(console)
    assert done.status_code == 303 and done.headers["location"] == "/console/intake"
    cookie = done.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie  # https
    asked = provider.authorize_requests[-1]
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"] == "https://console.test/console/oidc/callback"
    assert asked["scope"] == "openid profile" and asked["nonce"]
    exchanged = provider.token_requests[-1]
    assert exchanged["verifier"] and exchanged["authorization"].startswith("Basic ")

    intake = await console.get("/console/intake")
    assert intake.status_code == 200
    assert "张晓燕 · 接线员 · 370102" in intake.text  # operator (mapped), region from its claim

    # The development sign-in is refused while a provider is configured.
    refused = await console.post("/console/signin/dev", data={"csrf": _csrf(intake.text), "user_id": "sup-1"})
    assert refused.status_code == 403


def _csrf(html: str) -> str:
    import re
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


async def test_a_forged_state_signs_no_one_in(console: httpx.AsyncClient) -> None:
    done = await _sign_in(console, tamper_state=True)
    assert done.headers["location"] == "/console/signin"
    page = await console.get("/console/signin")
    assert "this sign-in was not started here" in page.text
    assert (await console.get("/console/intake")).headers["location"] == "/console/signin"


async def test_an_id_token_for_another_sign_in_is_refused(console: httpx.AsyncClient, provider: Provider) -> None:
    provider.nonce_override = "someone-elses-nonce"
    done = await _sign_in(console)
    assert done.headers["location"] == "/console/signin"
    assert "nonce" in (await console.get("/console/signin")).text


async def test_claims_without_a_role_sign_no_one_in(console: httpx.AsyncClient, provider: Provider) -> None:
    provider.claims = {"role": "cleaner", "region": "370102"}
    done = await _sign_in(console)
    assert done.headers["location"] == "/console/signin"
    assert "no disputeflow role" in (await console.get("/console/signin")).text


async def test_a_code_replayed_with_another_verifier_is_not_exchanged(console: httpx.AsyncClient,
                                                                      provider: Provider) -> None:
    # The provider checks PKCE: a code exchanged with a verifier that does not match its challenge fails.
    start = await console.get("/console/oidc/login")
    async with httpx.AsyncClient() as browser:
        back = await browser.get(start.headers["location"])
    code = parse_qs(urlsplit(back.headers["location"]).query)["code"][0]
    basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
    async with httpx.AsyncClient() as attacker:
        stolen = await attacker.post(f"{provider.issuer}/token", headers={"Authorization": f"Basic {basic}"}, data={
            "grant_type": "authorization_code", "code": code, "code_verifier": secrets.token_urlsafe(48),
            "redirect_uri": "https://console.test/console/oidc/callback"})
    assert stolen.status_code == 400

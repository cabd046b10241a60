"""Bearer tokens: who may call at all (401), deny-by-default routers, and the token command."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import stat
import threading
from datetime import datetime, timedelta, timezone

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter
from pydantic import ValidationError

from api.app import create_app
from api.auth import TokenTooLong, decode_token, ensure_every_route_has_roles, issue_token, router_for
from api.errors import NotAuthenticated
from disputeflow import cli, token_keys
from disputeflow.domain.enums import Role
from disputeflow.settings import Settings, get_settings
from tests.api.conftest import OPERATOR, SIGNING_KEY, Stack

def _claims(**overrides) -> dict:
    now = int(datetime.now(timezone.utc).timestamp())
    return {"sub": "op-1", "role": "operator", "region": "370102", "iat": now, "exp": now + 3600,
            "iss": "disputeflow", "aud": "disputeflow-api"} | overrides


def _ours(stack: Stack, claims: dict) -> str:
    return token_keys.signer(stack.settings).sign(claims)


def _hmac_token(claims: dict, key: bytes, alg: str = "HS256") -> str:
    """A token made by hand, so that any key (even the API's public key) can sign it."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    signed = f"{part({'alg': alg, 'typ': 'JWT'})}.{part(claims)}"
    mac = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return f"{signed}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"


def _public_pem(stack: Stack) -> bytes:
    return token_keys.load_private_key(stack.settings).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


TOKENS = {
    "missing": lambda stack: None,
    "basic": lambda stack: "Basic b3AtMTpzZWNyZXQ=",
    "garbage": lambda stack: "Bearer not-a-token",
    "forged": lambda stack: "Bearer " + jwt.encode(  # another Ed25519 key claiming to be ours
        _claims(), Ed25519PrivateKey.generate(), algorithm="EdDSA",
        headers={"kid": token_keys.signer(stack.settings).kid}),
    "shared-key": lambda stack: "Bearer " + jwt.encode(_claims(), SIGNING_KEY, algorithm="HS256"),
    "public-key-as-hmac": lambda stack: "Bearer " + _hmac_token(_claims(), _public_pem(stack)),
    "alg-none": lambda stack: "Bearer " + jwt.encode(_claims(), None, algorithm="none"),
    "system-role": lambda stack: "Bearer " + _ours(stack, _claims(role="system")),
    "unknown-role": lambda stack: "Bearer " + _ours(stack, _claims(role="admin")),
    "bad-region": lambda stack: "Bearer " + _ours(stack, _claims(region="3")),
    "no-exp": lambda stack: "Bearer " + _ours(stack, {k: v for k, v in _claims().items() if k != "exp"}),
    "other-issuer": lambda stack: "Bearer " + _ours(stack, _claims(iss="someone-else")),
    "other-audience": lambda stack: "Bearer " + _ours(stack, _claims(aud="another-api")),
    "no-audience": lambda stack: "Bearer " + _ours(stack, {k: v for k, v in _claims().items() if k != "aud"}),
    "too-long": lambda stack: "Bearer " + _ours(stack, _claims(exp=_claims()["iat"] + 13 * 3600)),
    "expired": lambda stack: "Bearer " + _ours(stack, _claims(iat=1, exp=2)),
}


@pytest.mark.parametrize("case", list(TOKENS))
async def test_401_for_a_missing_or_invalid_token(stack: Stack, case: str) -> None:
    authorization = TOKENS[case](stack)
    why = {"missing": "send a bearer token", "basic": "send a bearer token", "expired": "expired"}.get(case, "not valid")
    headers = {"Authorization": authorization} if authorization else {}
    for method, path in (("GET", "/cases"), ("POST", "/cases/370102-20261130-0001/actions/withdraw"),
                         ("POST", "/audit/verify")):
        response = await stack.http.request(method, path, headers=headers, json={"reason": "x"})
        assert response.status_code == 401, response.text
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert why in response.json()["detail"]


async def test_our_own_token_passes(stack: Stack) -> None:
    response = await stack.http.get("/cases", headers={"Authorization": "Bearer " + _ours(stack, _claims())})
    assert response.status_code == 200, response.text


async def test_an_expired_token_of_ours_is_refused(stack: Stack) -> None:
    token = issue_token(stack.settings, user_id="op-1", role="operator", region="370102", hours=1,
                        now=datetime.now(timezone.utc) - timedelta(hours=2))
    response = await stack.http.get("/cases", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_tokens_are_eddsa_with_issuer_audience_and_a_capped_lifetime(tmp_path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "var")
    token = issue_token(settings, user_id="op-1", role="operator", region="370102")
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA" and header["kid"] == token_keys.signer(settings).kid
    assert (claims["iss"], claims["aud"], claims["exp"] - claims["iat"]) == ("disputeflow", "disputeflow-api", 12 * 3600)
    key_file = tmp_path / "var" / "keys" / "token-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    with pytest.raises(TokenTooLong):
        issue_token(settings, user_id="op-1", role="operator", region="370102", hours=12.5)
    # another process on the machine verifies with the same (kept) key
    assert decode_token(token, token_keys.Verifier(Settings(_env_file=None, data_dir=tmp_path / "var"))).user_id == "op-1"


def test_hs256_only_on_purpose_and_with_a_long_key(tmp_path) -> None:
    with pytest.raises(ValidationError, match="DISPUTEFLOW_JWT_SECRET is set but tokens are EdDSA"):
        Settings(_env_file=None, jwt_secret="x" * 40)
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, token_algorithm="HS256", jwt_secret="short-key")
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(_env_file=None, token_algorithm="HS256")
    with pytest.raises(ValidationError, match="over DISPUTEFLOW_TOKEN_MAX_TTL_HOURS"):
        Settings(_env_file=None, token_ttl_hours=24)
    settings = Settings(_env_file=None, data_dir=tmp_path, token_algorithm="HS256", jwt_secret=SIGNING_KEY)
    token = issue_token(settings, user_id="op-1", role="operator", region="370102")
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    assert decode_token(token, token_keys.Verifier(settings)).user_id == "op-1"
    assert not (tmp_path / "keys").exists()  # no key pair generated for HS256


def test_the_api_reads_the_issuers_keys_from_a_jwks_file_and_url(tmp_path) -> None:
    issuer = Settings(_env_file=None, data_dir=tmp_path / "issuer")
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(token_keys.public_jwks(issuer)))
    token = issue_token(issuer, user_id="aud-1", role="auditor", region="37")
    api_host = Settings(_env_file=None, data_dir=tmp_path / "api", token_jwks_file=jwks_file)
    assert decode_token(token, token_keys.Verifier(api_host)).user_id == "aud-1"
    assert not (tmp_path / "api" / "keys").exists()  # the API host holds no private key
    other = issue_token(Settings(_env_file=None, data_dir=tmp_path / "other"), user_id="x", role="auditor", region="37")
    with pytest.raises(NotAuthenticated):
        decode_token(other, token_keys.Verifier(api_host))

    body = jwks_file.read_bytes()

    class JWKS(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
        verifier = token_keys.Verifier(Settings(_env_file=None, data_dir=tmp_path / "api", token_jwks_url=url))
        assert decode_token(token, verifier).user_id == "aud-1"
        with pytest.raises(NotAuthenticated):
            decode_token(other, verifier)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_an_unreachable_jwks_url_is_503_not_401(tmp_path) -> None:
    from api.auth import TokenKeysUnavailable
    from tests.conftest import free_port

    issuer = Settings(_env_file=None, data_dir=tmp_path / "issuer")
    token = issue_token(issuer, user_id="aud-1", role="auditor", region="37")
    url = f"http://127.0.0.1:{free_port()}/jwks.json"
    verifier = token_keys.Verifier(Settings(_env_file=None, data_dir=tmp_path / "api", token_jwks_url=url))
    with pytest.raises(TokenKeysUnavailable) as unavailable:
        decode_token(token, verifier)
    assert unavailable.value.status_code == 503 and unavailable.value.headers["Retry-After"]


def test_an_api_key_is_never_sent_to_temporal_without_tls() -> None:
    with pytest.raises(ValidationError, match="TEMPORAL_API_KEY would be sent in clear"):
        Settings(_env_file=None, temporal_address="x.tmprl.cloud:7233", temporal_api_key="key")
    assert Settings(_env_file=None, temporal_address="x.tmprl.cloud:7233", temporal_api_key="key",
                    temporal_tls=True).temporal_api_key is not None


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
    monkeypatch.setenv("DISPUTEFLOW_DATA_DIR", str(tmp_path))
    for name in ("DISPUTEFLOW_JWT_SECRET", "DISPUTEFLOW_TOKEN_ALGORITHM", "DISPUTEFLOW_TOKEN_JWKS_URL",
                 "DISPUTEFLOW_TOKEN_JWKS_FILE", "DISPUTEFLOW_TOKEN_MAX_TTL_HOURS"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        assert cli.main(["token", "--user", "med-370102-01", "--role", "mediator", "--region", "3701",
                         "--name", "李秀兰", "--hours", "2"]) == 0
        token = capsys.readouterr().out.strip()
        assert cli.main(["token", "--user", "x", "--role", "auditor", "--region", "37", "--hours", "24"]) == 2
        assert "at most 12 hours" in capsys.readouterr().err
        assert cli.main(["token-keys"]) == 0
        jwks = json.loads(capsys.readouterr().out)
        verifier = token_keys.Verifier(get_settings())
    finally:
        get_settings.cache_clear()
    actor = decode_token(token, verifier)
    assert (actor.user_id, actor.role, actor.region_code, actor.name) == ("med-370102-01", Role.mediator, "3701", "李秀兰")
    claims = jwt.decode(token, jwt.PyJWKSet.from_dict(jwks).keys[0].key, algorithms=["EdDSA"], audience="disputeflow-api")
    assert claims["exp"] - claims["iat"] == 2 * 3600
    assert "d" not in jwks["keys"][0]  # the public half only
    with pytest.raises(NotAuthenticated):
        decode_token(token, token_keys.Verifier(Settings(_env_file=None, data_dir=tmp_path / "elsewhere")))
    for bad in (["--role", "system"], ["--role", "operator", "--region", "370"]):
        assert cli.main(["token", "--user", "x", "--region", "37", *bad]) == 2  # a usage error


def test_the_actor_is_the_token(stack: Stack) -> None:
    token = stack.auth(OPERATOR, name="王芳")["Authorization"].removeprefix("Bearer ")
    actor = decode_token(token, token_keys.Verifier(stack.settings))
    assert actor.model_dump() == {"user_id": "op-1", "role": Role.operator, "region_code": "370102", "name": "王芳"}


def test_a_verified_token_is_remembered_until_it_expires(tmp_path, monkeypatch) -> None:
    """The signature is checked once a minute per token and never taken on trust past the token's
    expiry; a token that differs by one character is checked on its own (and refused)."""
    import time as clock

    from disputeflow import token_keys
    from disputeflow.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path)
    verifier = token_keys.Verifier(settings)
    now = int(clock.time())
    claims = {"sub": "op-1", "role": "operator", "region": "370102", "iat": now, "exp": now + 30,
              "iss": settings.token_issuer, "aud": settings.token_audience}
    token = token_keys.signer(settings).sign(claims)
    calls: list[str] = []
    verify = verifier._verify
    monkeypatch.setattr(verifier, "_verify", lambda t: calls.append(t) or verify(t))  # count the real checks
    assert verifier.claims(token)["sub"] == "op-1" and verifier.claims(token)["sub"] == "op-1"
    assert calls == [token]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(jwt.InvalidTokenError):
        verifier.claims(forged)
    # Taken on trust up to its expiry (30 s from now), not the cache's minute; after it, checked again.
    monkeypatch.setattr(token_keys.time, "time", lambda: now + 31)
    verifier.claims(token)  # (PyJWT reads the real clock: still valid for it)
    assert calls == [token, forged, token]

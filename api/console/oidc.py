"""Sign-in through the organisation's OpenID Connect provider: authorization code with PKCE (S256).

`begin` sends the browser to the provider with a fresh state, nonce and code verifier kept in the
signed session; `finish` checks the state, exchanges the code (with the verifier) at the token
endpoint (Authlib's OAuth 2 client), verifies the ID token (signature from the provider's JWKS,
issuer, audience, expiry, nonce; PyJWT) and maps its claims to a disputeflow actor: the role claim
through DISPUTEFLOW_CONSOLE_OIDC_ROLE_MAP, the region claim as it is. A person whose claims name no
disputeflow role or no valid region is not signed in, and told why.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token

from api.auth import HUMAN_ROLES, REGION_PATTERN
from api.console.web import ConsoleSession
from disputeflow.settings import Settings

ID_TOKEN_ALGORITHMS = ["RS256", "ES256", "PS256", "EdDSA"]
HTTP_TIMEOUT_SECONDS = 10.0


class SignInFailed(Exception):
    """The provider's answer could not sign this person in; the message says why."""


class Provider:
    """The configured provider's metadata and keys, fetched on first use and kept."""

    def __init__(self, settings: Settings) -> None:
        assert settings.console_oidc_issuer is not None
        self.settings = settings
        self.issuer = str(settings.console_oidc_issuer).rstrip("/")
        self._metadata: dict[str, Any] | None = None
        self._jwks: jwt.PyJWKClient | None = None

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_SECONDS) as http:
                found = (await http.get(f"{self.issuer}/.well-known/openid-configuration")).raise_for_status().json()
            if found.get("issuer", "").rstrip("/") != self.issuer:
                raise SignInFailed("the provider's metadata names another issuer")
            self._metadata = found
        return self._metadata

    def client(self, redirect_uri: str) -> Any:
        import warnings

        with warnings.catch_warnings():  # Authlib 1.9 announces a move to httpx2; its httpx client still works
            warnings.simplefilter("ignore")
            from authlib.integrations.httpx_client import AsyncOAuth2Client
        secret = self.settings.console_oidc_client_secret
        return AsyncOAuth2Client(
            client_id=self.settings.console_oidc_client_id,
            client_secret=secret.get_secret_value() if secret else None,
            token_endpoint_auth_method="client_secret_basic" if secret else "none",
            scope=self.settings.console_oidc_scope, redirect_uri=redirect_uri, code_challenge_method="S256",
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    async def begin(self, session: ConsoleSession, redirect_uri: str) -> str:
        """The provider's authorization URL for a new sign-in; its secrets go into the session."""
        metadata = await self.metadata()
        state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
        url, _ = self.client(redirect_uri).create_authorization_url(
            metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier)
        session["oidc"] = {"state": state, "nonce": nonce, "verifier": verifier, "redirect_uri": redirect_uri}
        return url

    async def finish(self, session: ConsoleSession, *, code: str | None, state: str | None,
                     error: str | None) -> dict[str, Any]:
        """The ID token's claims for the sign-in this callback ends; `SignInFailed` otherwise."""
        pending = session.pop("oidc", None)
        if error:
            raise SignInFailed(f"the provider refused the sign-in ({error[:80]})")
        if not pending or not state or state != pending["state"] or not code:
            raise SignInFailed("this sign-in was not started here, or has already been used; start again")
        metadata = await self.metadata()
        async with self.client(pending["redirect_uri"]) as client:
            try:
                token = await client.fetch_token(metadata["token_endpoint"], code=code,
                                                 code_verifier=pending["verifier"])
            except Exception as exc:  # noqa: BLE001 - any failure of the exchange is a failed sign-in
                raise SignInFailed(f"the provider did not exchange the code ({type(exc).__name__})") from None
        id_token = token.get("id_token")
        if not id_token:
            raise SignInFailed("the provider sent no ID token")
        if self._jwks is None:
            self._jwks = jwt.PyJWKClient(metadata["jwks_uri"], timeout=int(HTTP_TIMEOUT_SECONDS))
        try:
            key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, id_token)
            claims = jwt.decode(id_token, key.key, algorithms=ID_TOKEN_ALGORITHMS,
                                audience=self.settings.console_oidc_client_id, issuer=self.issuer,
                                options={"require": ["exp", "iat", "sub"]})
        except jwt.PyJWTError as exc:
            raise SignInFailed(f"the ID token is not valid ({exc})") from None
        if claims.get("nonce") != pending["nonce"]:
            raise SignInFailed("the ID token was not issued for this sign-in (nonce)")
        return claims

    def person(self, claims: dict[str, Any]) -> dict[str, Any]:
        """user id, role, region and name from the claims, by the settings' mapping."""
        s = self.settings
        raw_roles = claims.get(s.console_oidc_role_claim)
        candidates = raw_roles if isinstance(raw_roles, list) else [raw_roles]
        known = {r.value for r in HUMAN_ROLES}
        roles = [s.console_oidc_role_map.get(str(r), str(r)) for r in candidates if r is not None]
        role = next((r for r in roles if r in known), None)
        if role is None:
            raise SignInFailed(f"your account has no disputeflow role (claim '{s.console_oidc_role_claim}')")
        region = str(claims.get(s.console_oidc_region_claim) or "")
        if not re.fullmatch(REGION_PATTERN.strip("^$"), region):
            raise SignInFailed(f"your account has no valid region (claim '{s.console_oidc_region_claim}')")
        name = claims.get("name") or claims.get("preferred_username")
        return {"user_id": str(claims["sub"])[:64], "role": role, "region": region,
                "name": str(name)[:100] if name else None}


def provider_for(state: Any) -> Provider | None:
    settings: Settings = state.settings
    if settings.console_oidc_issuer is None:
        return None
    if getattr(state, "console_oidc", None) is None:
        state.console_oidc = Provider(settings)
    return state.console_oidc

"""The console's plumbing: the signed session cookie, CSRF tokens, the message catalogue, templates.

The session is one cookie, signed with a key kept in the data folder (`keys/console-session.key`,
0600, made on first use): the signed-in person (user id, role, region, name), the CSRF token of
the session, and while an OpenID Connect sign-in is under way its state, nonce and PKCE verifier.
HttpOnly, SameSite=Lax, and Secure whenever the request came over https. Nothing about callers is
ever put in it, nor in a URL.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from disputeflow.domain.actions import Actor
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.enums import Role
from disputeflow.keyfiles import KEYS_FOLDER, read_or_create
from disputeflow.settings import Settings

HERE = Path(__file__).parent
COOKIE = "df_console"
LANG_COOKIE = "df_lang"
LANGUAGES = ("zh", "en")
DEFAULT_LANGUAGE = "zh"
SESSION_SALT = "disputeflow.console.session"

# Every page: scripts, styles, images and connections from this server only; no frames, no plugins.
CONSOLE_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:", "connect-src 'self'",
    "font-src 'self'", "object-src 'none'", "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'",
])


# -- Messages ------------------------------------------------------------------------------------


@lru_cache
def catalogue(language: str) -> dict[str, str]:
    return json.loads((HERE / "messages" / f"{language}.json").read_text(encoding="utf-8"))


def translate(language: str, key: str, **values: Any) -> str:
    """The message `key` in `language`; English when the language lacks it, the key itself as a
    last resort (so a missing message shows, rather than breaking the page)."""
    text = catalogue(language).get(key) or catalogue("en").get(key) or key
    return text.format(**values) if values else text


def words_for(language: str) -> Any:
    """The domain's words (tasks, refusals, the timeline) in `language` (`domain_text.Words`)."""
    from api.console.domain_text import Words

    return Words(language, lambda key: catalogue(language).get(key) or catalogue("en").get(key))


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    return chosen if chosen in LANGUAGES else DEFAULT_LANGUAGE


# -- Session -------------------------------------------------------------------------------------


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    key = read_or_create(settings.data_dir / KEYS_FOLDER / "console-session.key",
                         lambda: secrets.token_urlsafe(48).encode())
    return URLSafeTimedSerializer(key.decode().strip(), salt=SESSION_SALT)


def serializer_for(state: Any) -> URLSafeTimedSerializer:
    if getattr(state, "console_serializer", None) is None:
        state.console_serializer = _serializer(state.settings)
    return state.console_serializer


class ConsoleSession(dict):
    """The session's content; `changed` once anything is set, so the cookie is written again."""

    changed = False

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.changed = True

    def pop(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        if key in self:
            self.changed = True
        return super().pop(key, default)

    def clear(self) -> None:
        super().clear()
        self.changed = True

    @property
    def csrf(self) -> str:
        if "csrf" not in self:
            self["csrf"] = secrets.token_urlsafe(32)
        return self["csrf"]

    def actor(self) -> Actor | None:
        who = self.get("who")
        if not who:
            return None
        return Actor(user_id=who["id"], role=Role(who["role"]), region_code=who["region"], name=who.get("name"))

    def sign_in(self, *, user_id: str, role: str, region: str, name: str | None) -> None:
        """A new session for this person: a fresh CSRF token, nothing kept from before."""
        self.clear()
        self["who"] = {"id": user_id, "role": Role(role).value, "region": region, "name": name}
        self["csrf"] = secrets.token_urlsafe(32)
        self["since"] = int(time.time())


def session_of(request: Request) -> ConsoleSession:
    return request.scope["console_session"]


def csrf_matches(session: ConsoleSession, sent: str | None) -> bool:
    return bool(sent) and "csrf" in session and hmac.compare_digest(str(sent), session["csrf"])


class SessionCookies:
    """ASGI middleware: load the signed session cookie before the page, write it back after if it
    changed; put the console's security headers on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        state = scope["app"].state if "app" in scope else None
        serializer = serializer_for(request.app.state) if state is not None else None
        settings: Settings = request.app.state.settings
        session = ConsoleSession()
        raw = request.cookies.get(COOKIE)
        if raw and serializer is not None:
            try:
                session.update(serializer.loads(raw, max_age=int(settings.console_session_hours * 3600)))
            except BadSignature:
                session.changed = True  # a forged or expired cookie: replaced by an empty session
        scope["console_session"] = session
        secure = request.url.scheme == "https"
        began = time.perf_counter()

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", CONSOLE_POLICY)
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - began) * 1000:.1f}"
                headers.setdefault("Cache-Control", "no-store")
                if session.changed and serializer is not None:
                    attributes = "Path=/console; HttpOnly; SameSite=Lax" + ("; Secure" if secure else "")
                    if session:
                        value = serializer.dumps(dict(session))
                        headers.append("Set-Cookie", f"{COOKIE}={value}; {attributes}")
                    else:
                        headers.append("Set-Cookie", f"{COOKIE}=; Max-Age=0; {attributes}")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


# -- Templates -----------------------------------------------------------------------------------

templates = Jinja2Templates(directory=str(HERE / "templates"))


def _local_time(moment: datetime | None, language: str = DEFAULT_LANGUAGE) -> str:
    if moment is None:
        return "—"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(SHANGHAI)  # formatted by hand: strftime cost the board's 200 rows time
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}"


def _iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


templates.env.filters["local"] = _local_time
templates.env.filters["iso"] = _iso
templates.env.autoescape = True


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Any:
    language = language_of(request)
    session = session_of(request)

    def t(key: str, **values: Any) -> str:
        return translate(language, key, **values)

    def label(kind: str, value: Any) -> str:
        """An enum value's label: `stage.mediation` in the catalogue, or the value in words."""
        if value is None:
            return "—"
        raw = getattr(value, "value", value)
        text = catalogue(language).get(f"{kind}.{raw}") or catalogue("en").get(f"{kind}.{raw}")
        return text or str(raw).replace("_", " ")

    base = {"t": t, "label": label, "words": words_for(language), "lang": language, "languages": LANGUAGES,
            "me": session.actor(),
            "csrf": session.csrf, "root": "/console"}
    return templates.TemplateResponse(request, template, {**base, **context}, status_code=status_code)

"""Every request: a request id (the caller's sane `X-Request-ID`, else a new one), returned in
`X-Request-ID`; the log context (request id, then the user id once the token is read, the case id
of a `/cases/{case_id}` route); one log line when it is answered, by route template; its metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from disputeflow import logs, metrics

log = logging.getLogger("disputeflow.api.requests")

HEADER = "X-Request-ID"
# Printable, no spaces, short: an id to correlate by, not a place to smuggle text into the logs.
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if SANE_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or metrics.UNMATCHED_ROUTE


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        with logs.bind(request_id=request_id) as context:
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                seconds = time.perf_counter() - started
                route = route_template(scope)
                case_id = (scope.get("path_params") or {}).get("case_id")
                if isinstance(case_id, str) and len(case_id) <= 40:
                    context.setdefault("case_id", case_id)
                    context.setdefault("workflow_id", f"case-{case_id}")
                metrics.observe_request(scope["method"], route, status, seconds)
                if route != "/health" or status >= 400:  # a load balancer's polls would drown the rest
                    log.info("%s %s %d", scope["method"], route, status,
                             extra={"method": scope["method"], "route": route, "status": status,
                                    "duration_ms": round(seconds * 1000, 1)})

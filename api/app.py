"""The FastAPI application. `app` is what uvicorn serves (`uvicorn api.app:app`).

Importing this module connects nothing: settings are read, the database opened and the Temporal
gateway created in the lifespan, once per process (a Temporal client does not survive a fork).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.engine import Engine

from api.auth import ensure_every_route_has_roles
from api.body_limit import BodySizeLimit
from api.console.pages import create_console
from api.docs_policy import DocsPolicy
from api.errors import install_error_handlers
from api.jobs import JobRegistry
from api.limits import RateLimiter
from api.middleware import RequestContext
from api.routes import actions, audit, cases, codec, erasure, health, inbox, notifications, supervision
from api.temporal_gateway import TemporalGateway, TemporalUnavailable
from disputeflow import history, logs, metrics, tracing
from disputeflow import token_keys
from disputeflow.codec import codec_for
from disputeflow.db.engine import engine_for
from disputeflow.pinning import PolicyPins
from disputeflow.settings import Settings, get_settings

Clock = Callable[[], Awaitable[datetime]]

log = logging.getLogger(__name__)

# Opening the database also creates the schema; a database that is down must not hold up start-up.
DATABASE_OPEN_TIMEOUT_SECONDS = 10.0


API_DESCRIPTION = """
Every route but `/health` and these docs needs a bearer token (`Authorization: Bearer <token>`);
for local use, `disputeflow token --user U --role R --region 3701` prints one. The token's role
decides which routes you may call (403 otherwise) and its region which cases you see: a mediator
sees the cases assigned to them, everyone else the cases of their region. A case outside your
scope answers 404, exactly like an unknown one.

Errors: 401 (token missing, forged or expired), 403 (role), 404 (case), 409 (the case refused the
action; `detail` says why), 413 (body over the limit), 422 (`detail` lists each offending field
with its `loc`), 429 with `Retry-After` (your per-user rate limit), 503 with `Retry-After` (Temporal or the database unreachable: retry).
"""

OPENAPI_TAGS = [
    {"name": "intake", "description": "Register calls, forms, walk-ins and 12345 work orders as cases."},
    {"name": "cases", "description": "Find cases and see one as it stands now."},
    {"name": "actions", "description": "Everything people do to a case, one route per action."},
    {"name": "mediators", "description": "Inboxes, and the actions mediators take."},
    {"name": "notifications", "description": "Deadline warnings, breaches, escalations and assignments, "
                                              "for the person or role they concern."},
    {"name": "supervisors", "description": "Breaches, cases at risk, compliance; reassignment and extensions."},
    {"name": "auditors", "description": "What happened and why: timelines, raw histories, replay, the audit chain."},
    {"name": "health", "description": "Is the API connected to Temporal and the database."},
]


async def _utc_now() -> datetime:
    return datetime.now(UTC)


WARM_UP_PATIENCE = 15.0  # seconds the API's shutdown waits for the replayer's warm-up to end


async def _warm_up_replayer(temporal: TemporalGateway) -> None:
    try:  # with the converter replays will use (the client's), so that the warmed replayer is theirs
        if not await history.warm_up((await temporal.client()).data_converter):
            log.warning("the recorded warm-up case no longer replays under this code")
    except TemporalUnavailable as exc:  # said in a line: /health says it too, and the API starts anyway
        log.warning("could not warm up the replayer: %s", exc)
    except Exception:  # noqa: BLE001 - only a warm-up: the first replay will pay for it instead
        log.exception("could not warm up the replayer")


def create_app(settings: Settings | None = None, *, clock: Clock = _utc_now) -> FastAPI:
    """`clock`: when a call is registered. The tests pass the time-skipping test server's clock,
    which runs ahead of the wall clock once a test has skipped time."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.clock = clock
        app.state.settings = settings or get_settings()
        if settings is None:  # the process's app (uvicorn api.app:app); an app a test builds logs as the test does
            logs.setup(app.state.settings.log_format, app.state.settings.log_level)
        app.state.payload_codec = codec_for(app.state.settings)  # unusable payload keys stop start-up
        app.state.token_verifier = token_keys.Verifier(app.state.settings)  # so do unusable token keys
        app.state.temporal = TemporalGateway(app.state.settings)
        app.state.pins = PolicyPins(app.state.settings.policy_file)
        app.state.engine = await _open_database(app.state.settings)
        app.state.rate_limiter = RateLimiter.from_settings(app.state.settings)
        app.state.jobs = JobRegistry()
        stop_metrics = _start_metrics(app)
        warming = asyncio.create_task(_warm_up_replayer(app.state.temporal))  # in the background: start-up does not wait
        try:
            yield
        finally:
            # A replay cancelled half-way leaves the SDK's replayer waiting on a result that never
            # comes, and then the event loop cannot close (uvicorn's shutdown, or a test session,
            # hangs). The warm-up takes a second or two: let it end, within bounds.
            await asyncio.wait([warming], timeout=WARM_UP_PATIENCE)
            warming.cancel()
            await app.state.jobs.close()
            stop_metrics()
            if app.state.engine is not None:
                app.state.engine.dispose()

    # The docs pages serve Swagger UI and ReDoc from the installed package, not a CDN: the API
    # runs where there is no internet.
    app = FastAPIOffline(
        title="disputeflow",
        summary="Dispute cases of a public legal-service hotline, from intake to closure.",
        description=API_DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        telemetry=tracing.NO_NATIVE_TELEMETRY,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(DocsPolicy)
    app.add_middleware(codec.CodecCORS)  # the Temporal Web UI calls /codec/* from its own origin
    app.add_middleware(RequestContext)  # outermost: every answer has its request id, log line and metrics
    for router in (cases.intake_router, cases.router, actions.router, cases.drill_router, inbox.router,
                   notifications.router, supervision.router, erasure.router, audit.router, codec.router, health.router):
        app.include_router(router)
    ensure_every_route_has_roles(app)  # deny by default: a route without roles stops start-up
    # The console: pages for people, over the same services, sharing this app's state.
    app.mount("/console", create_console(app.state))
    app.add_route("/", _to_console, include_in_schema=False)
    if settings is None and not tracing.enabled():  # the process's app: traced when OTEL_EXPORTER_OTLP_ENDPOINT is set
        tracing.configure(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"), "disputeflow-api")
    tracing.instrument_app(app)
    return app


async def _to_console(_request: Request) -> RedirectResponse:
    return RedirectResponse("/console/", status_code=307)


def _start_metrics(app: FastAPI) -> Callable[[], None]:
    """The read-model figures join the API's metrics; served on their own port when one is set.
    Returns what undoes both."""
    settings: Settings = app.state.settings
    collector = metrics.ReadModelCollector(lambda: getattr(app.state, "engine", None),
                                           cache_seconds=settings.metrics_cache_seconds,
                                           webhook_configured=settings.notify_webhook_url is not None)
    metrics.REGISTRY.register(collector)
    app.state.metrics_collector = collector
    stop_server = metrics.serve(settings.metrics_host, settings.api_metrics_port) if settings.api_metrics_port else None

    def stop() -> None:
        if stop_server is not None:
            stop_server()
        metrics.REGISTRY.unregister(collector)

    return stop


async def _open_database(settings: Settings) -> Engine | None:
    """`engine_for` (schema included), or None while the database is unreachable: the API starts
    anyway, /health reports it, and the first request after it is back opens it."""
    try:
        return await asyncio.wait_for(
            asyncio.to_thread(engine_for, settings.effective_database_url), DATABASE_OPEN_TIMEOUT_SECONDS
        )
    except Exception as exc:  # noqa: BLE001 - report and carry on; /health shows it
        log.warning("database unavailable at start-up: %s", (str(exc).splitlines() or [repr(exc)])[0])
        return None


app = create_app()

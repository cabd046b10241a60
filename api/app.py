"""The FastAPI application. `app` is what uvicorn serves (`uvicorn api.app:app`).

Importing this module connects nothing: settings are read, the database opened and the Temporal
gateway created in the lifespan, once per process (a Temporal client does not survive a fork).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from api.routes import health
from api.temporal_gateway import TemporalGateway
from disputeflow.db.engine import engine_for
from disputeflow.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Opening the database also creates the schema; a database that is down must not hold up start-up.
DATABASE_OPEN_TIMEOUT_SECONDS = 10.0


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings or get_settings()
        app.state.temporal = TemporalGateway(app.state.settings)
        app.state.engine = await _open_database(app.state.settings)
        try:
            yield
        finally:
            if app.state.engine is not None:
                app.state.engine.dispose()

    app = FastAPI(
        title="disputeflow",
        summary="Dispute cases of a public legal-service hotline, from intake to closure.",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    return app


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

"""GET /health: is Temporal reachable, is the database reachable. 503 when either is not."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.engine import make_url
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from api.deps import SettingsDep, TemporalDep, database_engine
from api.temporal_gateway import TemporalGateway
from disputeflow.db.engine import ping

router = APIRouter(tags=["health"])

# Each check gives up after this long, so /health answers within it even when a dependency hangs.
CHECK_TIMEOUT_SECONDS = 2.0


class TemporalHealth(BaseModel):
    ok: bool
    address: str
    namespace: str
    error: str | None = None


class DatabaseHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    temporal: TemporalHealth
    database: DatabaseHealth


@router.get("/health", response_model=Health, responses={503: {"model": Health, "description": "Degraded"}})
async def health(request: Request, response: Response, settings: SettingsDep, temporal: TemporalDep) -> Health:
    temporal_error, database_error = await asyncio.gather(
        _bounded(_check_temporal(temporal, settings.temporal_namespace)),
        _bounded(asyncio.to_thread(lambda: ping(database_engine(request.app.state)))),
    )
    ok = temporal_error is None and database_error is None
    response.status_code = 200 if ok else 503
    return Health(
        status="ok" if ok else "degraded",
        temporal=TemporalHealth(
            ok=temporal_error is None,
            address=temporal.address,
            namespace=settings.temporal_namespace,
            error=temporal_error,
        ),
        database=DatabaseHealth(
            ok=database_error is None,
            backend=make_url(settings.effective_database_url).get_backend_name(),
            error=database_error,
        ),
    )


async def _check_temporal(gateway: TemporalGateway, namespace: str) -> None:
    # Describing the namespace also catches a misconfigured TEMPORAL_NAMESPACE.
    client = await gateway.client()
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
    )


async def _bounded(check: Awaitable[object]) -> str | None:
    """None when the check passes, else why it failed (first line)."""
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ok"
        return (str(exc).splitlines() or [type(exc).__name__])[0]
    return None

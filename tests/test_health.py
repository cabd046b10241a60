"""GET /health and the API's Temporal gateway, with Temporal and the database up, down and back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.temporal_gateway import TemporalGateway, TemporalUnavailable
from disputeflow.settings import Settings
from disputeflow.temporal import SEARCH_ATTRIBUTES
from tests.conftest import free_port, installed_binary


async def start_dev_server(port: int | None = None) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES, port=port
    )


@pytest.fixture(scope="module")
async def temporal_address() -> AsyncIterator[str]:
    async with await start_dev_server() as env:
        yield env.client.service_client.config.target_host


def settings_for(tmp_path: Path, temporal_address: str, database_url: str | None = None) -> Settings:
    return Settings(
        _env_file=None,
        temporal_address=temporal_address,
        temporal_namespace="default",
        data_dir=tmp_path,
        database_url=database_url,
    )


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan run, as it is under uvicorn."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
            yield client


def unused_address() -> str:
    return f"127.0.0.1:{free_port()}"


async def test_healthy_on_sqlite(tmp_path: Path, temporal_address: str) -> None:
    async with api(settings_for(tmp_path, temporal_address)) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "temporal": {"ok": True, "address": temporal_address, "namespace": "default", "error": None},
        "database": {"ok": True, "backend": "sqlite", "error": None},
    }
    assert (tmp_path / "disputeflow.db").exists()  # the lifespan created the schema


async def test_healthy_on_postgresql(tmp_path: Path, temporal_address: str, postgres_url: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, postgres_url)) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["database"] == {"ok": True, "backend": "postgresql", "error": None}


async def test_temporal_down_degrades_quickly(tmp_path: Path) -> None:
    address = unused_address()
    async with api(settings_for(tmp_path, address)) as client:  # starts all the same
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["temporal"]["ok"] is False and body["temporal"]["address"] == address
    assert address in body["temporal"]["error"]
    assert body["database"] == {"ok": True, "backend": "sqlite", "error": None}
    assert elapsed < 5


async def test_unknown_namespace_degrades(tmp_path: Path, temporal_address: str) -> None:
    settings = settings_for(tmp_path, temporal_address).model_copy(update={"temporal_namespace": "no-such-ns"})
    async with api(settings) as client:
        response = await client.get("/health")
    assert response.status_code == 503
    assert "no-such-ns" in response.json()["temporal"]["error"]


async def test_temporal_coming_back_is_picked_up(tmp_path: Path) -> None:
    port = free_port()
    async with api(settings_for(tmp_path, f"127.0.0.1:{port}")) as client:
        assert (await client.get("/health")).status_code == 503
        async with await start_dev_server(port):
            deadline = time.monotonic() + 30  # generous: CI machines are noisy
            while (response := await client.get("/health")).status_code != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert response.status_code == 200, response.json()


async def test_database_down_degrades(tmp_path: Path, temporal_address: str) -> None:
    unreachable = f"postgresql+psycopg://disputeflow@127.0.0.1:{free_port()}/disputeflow"
    async with api(settings_for(tmp_path, temporal_address, unreachable)) as client:  # starts all the same
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["temporal"]["ok"] is True
    assert body["database"]["ok"] is False and body["database"]["backend"] == "postgresql"
    assert body["database"]["error"]
    assert elapsed < 5


async def test_gateway_connects_once(temporal_address: str, tmp_path: Path) -> None:
    gateway = TemporalGateway(settings_for(tmp_path, temporal_address))
    clients = await asyncio.gather(*(gateway.client() for _ in range(5)))
    assert all(client is clients[0] for client in clients)
    assert await gateway.client() is clients[0]


async def test_gateway_raises_a_typed_error_when_temporal_is_down(tmp_path: Path) -> None:
    gateway = TemporalGateway(settings_for(tmp_path, unused_address()))
    with pytest.raises(TemporalUnavailable, match="unavailable"):
        await gateway.client()
    with pytest.raises(TemporalUnavailable):  # within the retry interval: the same answer, at once
        await asyncio.wait_for(gateway.client(), 0.1)

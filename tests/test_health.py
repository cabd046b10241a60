"""GET /health and the API's Temporal gateway: Temporal, a worker (a real `python worker.py`), the database's
writes and the webhook backlog, each up, down and back."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.temporal_gateway import TemporalGateway, TemporalUnavailable
from disputeflow.db.engine import write_session
from disputeflow.db.models import OutboxMessage
from disputeflow.settings import Settings
from disputeflow.stack import child_environment
from disputeflow.temporal import SEARCH_ATTRIBUTES
from tests.conftest import free_port, installed_binary

PROJECT_ROOT = Path(__file__).resolve().parents[1]


async def start_dev_server(port: int | None = None) -> WorkflowEnvironment:
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES, port=port
    )


@pytest.fixture(scope="module")
async def temporal_address() -> AsyncIterator[str]:
    async with await start_dev_server() as env:
        yield env.client.service_client.config.target_host


@pytest.fixture(scope="module")
def worker_queue(temporal_address: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real worker process (`python worker.py`, as `make run` starts it) polling its own task
    queue on the dev server; the queue's name."""
    folder = tmp_path_factory.mktemp("worker")
    queue = f"health-{uuid.uuid4().hex[:8]}"
    settings = settings_for(folder, temporal_address).model_copy(update={"temporal_task_queue": queue})
    log = folder / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "worker.py"], cwd=PROJECT_ROOT, env=child_environment(settings),
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while b"worker polling task queue" not in log.read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield queue
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def settings_for(tmp_path: Path, temporal_address: str, database_url: str | None = None,
                 task_queue: str | None = None, **more: object) -> Settings:
    return Settings(
        _env_file=None,
        temporal_address=temporal_address,
        temporal_namespace="default",
        temporal_task_queue=task_queue or f"nobody-polls-{uuid.uuid4().hex[:8]}",
        data_dir=tmp_path,
        database_url=database_url,
        **({"api_metrics_port": 0} | more),
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


async def healthy(client: httpx.AsyncClient) -> httpx.Response:
    """/health once it answers 200 (the worker's first poll can take a moment to show); bounded."""
    deadline = time.monotonic() + 15
    while (response := await client.get("/health")).status_code != 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert response.status_code == 200, response.json()
    return response


async def timed_get(client: httpx.AsyncClient) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get("/health")
    return response, time.monotonic() - started


def assert_degraded(response: httpx.Response, *failing: str) -> dict:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert body["status"] == "degraded" and body["failing"] == list(failing), body
    for name in failing:
        assert body[name]["ok"] is False and body[name]["error"], body
    return body


async def test_healthy_on_sqlite(tmp_path: Path, temporal_address: str, worker_queue: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, task_queue=worker_queue)) as client:
        response = await healthy(client)
    body = response.json()
    worker = body.pop("worker")
    assert body == {
        "status": "ok",
        "failing": [],
        "temporal": {"ok": True, "address": temporal_address, "namespace": "default", "error": None},
        "database": {"ok": True, "backend": "sqlite", "error": None},
        "notifications": {"ok": True, "webhook": False, "waiting": None, "oldest_waiting_seconds": None,
                          "error": None},
    }
    assert worker["ok"] is True and worker["task_queue"] == worker_queue and worker["error"] is None
    assert worker["workflow_pollers"] >= 1 and worker["activity_pollers"] >= 1
    assert 0 <= worker["last_seen_seconds_ago"] < 90
    assert (tmp_path / "disputeflow.db").exists()  # the lifespan created the schema
    assert "Retry-After" not in response.headers


async def test_healthy_on_postgresql(tmp_path: Path, temporal_address: str, worker_queue: str,
                                     postgres_url: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, postgres_url, task_queue=worker_queue)) as client:
        response = await healthy(client)
    assert response.json()["database"] == {"ok": True, "backend": "postgresql", "error": None}


async def test_no_worker_degrades_naming_the_worker(tmp_path: Path, temporal_address: str) -> None:
    settings = settings_for(tmp_path, temporal_address)
    async with api(settings) as client:
        response, elapsed = await timed_get(client)
    body = assert_degraded(response, "worker")
    assert settings.temporal_task_queue in body["worker"]["error"] and "worker" in body["worker"]["error"]
    assert body["worker"]["workflow_pollers"] == 0 and body["worker"]["activity_pollers"] == 0
    assert elapsed < 3


async def test_a_worker_not_seen_recently_is_not_counted(tmp_path: Path, temporal_address: str,
                                                         worker_queue: str) -> None:
    """The server keeps a stopped worker in its list of pollers for minutes: only recent polls count."""
    settings = settings_for(tmp_path, temporal_address, task_queue=worker_queue,
                            health_worker_seen_within_seconds=0.001)
    async with api(settings) as client:
        response = await client.get("/health")
    body = assert_degraded(response, "worker")
    assert "in the last 0.001 s; the last poll was" in body["worker"]["error"]


async def test_a_held_sqlite_write_lock_degrades_quickly(tmp_path: Path, temporal_address: str,
                                                         worker_queue: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, task_queue=worker_queue)) as client:
        await healthy(client)
        holder = sqlite3.connect(tmp_path / "disputeflow.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # what a long write transaction elsewhere does
            response, elapsed = await timed_get(client)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        body = assert_degraded(response, "database")
        assert "write lock" in body["database"]["error"]
        assert elapsed < 2.5  # the lock timeout (0.5 s), not the database's 30 s busy timeout
        await healthy(client)  # and back once the lock is released


async def test_a_sqlite_file_moved_away_degrades(tmp_path: Path, temporal_address: str, worker_queue: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, task_queue=worker_queue)) as client:
        await healthy(client)
        (tmp_path / "disputeflow.db").rename(tmp_path / "moved.db")
        response, elapsed = await timed_get(client)
        body = assert_degraded(response, "database")
        assert "missing" in body["database"]["error"] and "disputeflow.db" in body["database"]["error"]
        assert elapsed < 2.5
        (tmp_path / "moved.db").rename(tmp_path / "disputeflow.db")
        await healthy(client)


async def test_a_postgresql_table_lock_degrades_quickly(tmp_path: Path, temporal_address: str, worker_queue: str,
                                                        postgres_url: str) -> None:
    async with api(settings_for(tmp_path, temporal_address, postgres_url, task_queue=worker_queue)) as client:
        await healthy(client)
        holder = create_engine(postgres_url)
        try:
            with holder.connect() as conn, conn.begin():
                conn.execute(text("LOCK TABLE case_counters IN EXCLUSIVE MODE"))  # e.g. a migration
                response, elapsed = await timed_get(client)
        finally:
            holder.dispose()
        body = assert_degraded(response, "database")
        assert "lock" in body["database"]["error"] and elapsed < 2.5
        await healthy(client)


def _waiting_notifications(engine_url: str, count: int, age: timedelta) -> None:
    from disputeflow.db.engine import engine_for

    with write_session(engine_for(engine_url)) as session:
        for n in range(count):
            session.add(OutboxMessage(dedupe_key=f"health-{uuid.uuid4()}", case_id="370102-20261201-0001",
                                      kind="clock_warning", recipient_role="mediator", region_code="370102",
                                      payload={}, created_at=datetime.now(UTC) - age + timedelta(seconds=n)))


async def test_a_webhook_backlog_over_the_limits_degrades(tmp_path: Path, temporal_address: str,
                                                          worker_queue: str) -> None:
    settings = settings_for(tmp_path, temporal_address, task_queue=worker_queue,
                            notify_webhook_url=f"http://{unused_address()}/hook",
                            notify_webhook_secret="test-webhook-signing-key-0123456789", health_notify_backlog_max=3,
                            health_notify_backlog_max_age_seconds=300)
    async with api(settings) as client:
        body = (await healthy(client)).json()
        assert body["notifications"] == {"ok": True, "webhook": True, "waiting": 0, "oldest_waiting_seconds": None,
                                         "error": None}
        _waiting_notifications(settings.effective_database_url, 2, timedelta(seconds=30))
        body = (await healthy(client)).json()
        assert body["notifications"]["waiting"] == 2 and 29 <= body["notifications"]["oldest_waiting_seconds"] < 60

        _waiting_notifications(settings.effective_database_url, 2, timedelta(seconds=30))
        body = assert_degraded(await client.get("/health"), "notifications")
        assert "4 notifications wait (more than 3)" in body["notifications"]["error"]

    old = settings.model_copy(update={"health_notify_backlog_max": 100, "health_notify_backlog_max_age_seconds": 10})
    async with api(old) as client:
        body = assert_degraded(await client.get("/health"), "notifications")
        assert "the oldest has waited" in body["notifications"]["error"] and "(longer than 10 s)" in \
            body["notifications"]["error"]


async def test_concurrent_requests_share_one_round_of_checks(tmp_path: Path, temporal_address: str,
                                                             worker_queue: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from api.routes import health as health_route

    rounds = 0
    check_all = health_route._check_all

    async def counted(state):
        nonlocal rounds
        rounds += 1
        return await check_all(state)

    monkeypatch.setattr(health_route, "_check_all", counted)
    async with api(settings_for(tmp_path, temporal_address, task_queue=worker_queue)) as client:
        answers = await asyncio.gather(*(client.get("/health") for _ in range(8)))
    assert {answer.status_code for answer in answers} == {200}
    assert rounds == 1


async def test_a_hung_database_answers_in_bounded_time_without_piling_up_threads(
        tmp_path: Path, temporal_address: str, worker_queue: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from api.routes import health as health_route

    release, started = threading.Event(), []

    def hangs(_state: object) -> None:  # a database that neither answers nor refuses
        started.append(1)
        release.wait(10)

    monkeypatch.setattr(health_route, "_check_database", hangs)
    try:
        async with api(settings_for(tmp_path, temporal_address, task_queue=worker_queue)) as client:
            for _ in range(3):
                response, elapsed = await timed_get(client)
                body = assert_degraded(response, "database")
                assert body["database"]["error"] == "no answer within 2 s" and elapsed < 3
    finally:
        release.set()
    assert len(started) == 1  # the later rounds waited on the same probe


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
    assert body["failing"] == ["temporal", "worker"]  # the worker cannot be seen either
    assert body["worker"]["error"]
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
            while not (response := await client.get("/health")).json()["temporal"]["ok"] \
                    and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert response.json()["failing"] == ["worker"], response.json()  # no worker on this new server


async def test_database_down_degrades(tmp_path: Path, temporal_address: str, worker_queue: str) -> None:
    unreachable = f"postgresql+psycopg://disputeflow@127.0.0.1:{free_port()}/disputeflow"
    async with api(settings_for(tmp_path, temporal_address, unreachable, task_queue=worker_queue)) as client:  # starts all the same
        started = time.monotonic()
        response = await client.get("/health")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["temporal"]["ok"] is True
    assert body["database"]["ok"] is False and body["database"]["backend"] == "postgresql"
    assert body["database"]["error"]
    assert body["failing"] == ["database"]
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


async def test_an_api_started_while_temporal_is_down_says_so_in_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The replayer's warm-up at start-up cannot reach Temporal: a warning naming the address, not a
    traceback (the API starts all the same, and /health says what is down)."""
    from api.app import _warm_up_replayer

    address = unused_address()
    with caplog.at_level("WARNING", logger="api.app"):
        await _warm_up_replayer(TemporalGateway(settings_for(tmp_path, address)))
    [record] = [r for r in caplog.records if "warm up" in r.getMessage()]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert address in record.getMessage() and "unavailable" in record.getMessage()


async def test_an_api_stopped_during_its_warm_up_leaves_no_task_behind(tmp_path: Path, temporal_address: str) -> None:
    """Stopped at once, while the replayer's warm-up replays its recorded case: the warm-up ends
    (cancelled half-way, the SDK's replayer waited for ever and the event loop could not close)."""
    async with api(settings_for(tmp_path, temporal_address)):
        pass
    left = [task for task in asyncio.all_tasks() if task.get_coro().__qualname__ == "_warm_up_replayer"]
    assert not left, left

"""GET /health: does each dependency work, as a case needs it? 200 `ok` when all do; 503 `degraded`
with `Retry-After`, `failing` naming each one that does not, and its `error` saying why.

- `temporal`: the server answers and knows the namespace;
- `worker`: some worker polls the case task queue, for workflow tasks and for activity tasks, and
  was seen within `DISPUTEFLOW_HEALTH_WORKER_SEEN_WITHIN_SECONDS` (from the server's description of
  the task queue: without a worker cases are registered but never move);
- `database`: it takes a write (one row in a transaction rolled back, waiting at most
  `DATABASE_LOCK_TIMEOUT_SECONDS` for a lock), so a database that only reads, a write lock held
  elsewhere, or a SQLite file moved away from under the processes all show;
- `notifications`: with a webhook configured, how many notifications wait for it and since when;
  more than `DISPUTEFLOW_HEALTH_NOTIFY_BACKLOG_MAX`, or older than
  `DISPUTEFLOW_HEALTH_NOTIFY_BACKLOG_MAX_AGE_SECONDS`, is degraded.

The checks run concurrently, each bounded by `CHECK_TIMEOUT_SECONDS`, so the answer comes within
about that even when a dependency hangs; requests that arrive while a check is running share its
answer, so a load balancer polling often costs one round of checks at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session
from starlette.datastructures import State
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest

from api.deps import database_engine
from api.errors import RETRY_AFTER_SECONDS
from api.temporal_gateway import TemporalGateway
from disputeflow.db.engine import probe_write
from disputeflow.db.notifications import undelivered
from disputeflow.settings import Settings

router = APIRouter(tags=["health"])
_Found = TypeVar("_Found", bound=BaseModel)
_T = TypeVar("_T")

# Each check gives up after this long, so /health answers within it even when a dependency hangs.
CHECK_TIMEOUT_SECONDS = 2.0
# The database write probe waits this long for a lock held by another writer, then says so.
DATABASE_LOCK_TIMEOUT_SECONDS = 0.5


class TemporalHealth(BaseModel):
    ok: bool
    address: str
    namespace: str
    error: str | None = None


class WorkerHealth(BaseModel):
    ok: bool
    task_queue: str
    workflow_pollers: int | None = None
    activity_pollers: int | None = None
    last_seen_seconds_ago: float | None = None
    error: str | None = None


class DatabaseHealth(BaseModel):
    ok: bool
    backend: str
    error: str | None = None


class NotificationsHealth(BaseModel):
    ok: bool
    webhook: bool
    waiting: int | None = None
    oldest_waiting_seconds: float | None = None
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    failing: list[Literal["temporal", "worker", "database", "notifications"]]
    temporal: TemporalHealth
    worker: WorkerHealth
    database: DatabaseHealth
    notifications: NotificationsHealth


@router.get("/health", response_model=Health, responses={503: {
    "model": Health, "description": "Degraded: `failing` names each dependency that fails, its `error` says why",
    "headers": {"Retry-After": {"description": "Seconds to wait before asking again", "schema": {"type": "integer"}}},
}})
async def health(request: Request, response: Response) -> Health:
    state = request.app.state
    # One round of checks at a time: requests arriving meanwhile share it.
    running: asyncio.Future[Health] | None = getattr(state, "health_check", None)
    if running is None or running.done():
        running = state.health_check = asyncio.ensure_future(_check_all(state))
    result = await asyncio.shield(running)
    if result.status != "ok":
        response.status_code = 503
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return result


async def _check_all(state: State) -> Health:
    settings: Settings = state.settings
    gateway: TemporalGateway = state.temporal
    temporal_error, (worker, worker_error), database_error, (backlog, backlog_error) = await asyncio.gather(
        _bounded(_check_temporal(gateway, settings.temporal_namespace)),
        _bounded_value(_check_worker(gateway, settings)),
        _bounded(_in_thread_once(state, _check_database)),
        _bounded_value(_in_thread_once(state, _check_backlog)),
    )
    worker = worker or WorkerHealth(ok=False, task_queue=settings.temporal_task_queue)
    worker.ok, worker.error = worker_error is None, worker_error
    notifications = backlog or NotificationsHealth(ok=False, webhook=settings.notify_webhook_url is not None)
    notifications.ok, notifications.error = backlog_error is None, backlog_error
    result = Health(
        status="ok",
        failing=[],
        temporal=TemporalHealth(ok=temporal_error is None, address=gateway.address,
                                namespace=settings.temporal_namespace, error=temporal_error),
        worker=worker,
        database=DatabaseHealth(ok=database_error is None,
                                backend=make_url(settings.effective_database_url).get_backend_name(),
                                error=database_error),
        notifications=notifications,
    )
    result.failing = [name for name in ("temporal", "worker", "database", "notifications")
                      if not getattr(result, name).ok]
    result.status = "degraded" if result.failing else "ok"
    return result


async def _check_temporal(gateway: TemporalGateway, namespace: str) -> None:
    # Describing the namespace also catches a misconfigured TEMPORAL_NAMESPACE.
    client = await gateway.client()
    await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace), timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS)
    )


class _Failed(Exception):
    """A check that got its answer, and the answer is bad: carries what it found."""

    def __init__(self, message: str, found: BaseModel) -> None:
        super().__init__(message)
        self.found = found


async def _check_worker(gateway: TemporalGateway, settings: Settings) -> WorkerHealth:
    client = await gateway.client()
    queue = settings.temporal_task_queue

    async def last_polls(kind: TaskQueueType.ValueType) -> list[datetime]:
        described = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(namespace=settings.temporal_namespace, task_queue=TaskQueue(name=queue),
                                     task_queue_type=kind),
            timeout=timedelta(seconds=CHECK_TIMEOUT_SECONDS))
        return [poller.last_access_time.ToDatetime(tzinfo=UTC) for poller in described.pollers]

    workflow_polls, activity_polls = await asyncio.gather(
        last_polls(TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW), last_polls(TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY))
    now = datetime.now(UTC)
    within = settings.health_worker_seen_within_seconds

    def recent(polls: list[datetime]) -> list[datetime]:
        return [at for at in polls if (now - at).total_seconds() <= within]

    found = WorkerHealth(ok=True, task_queue=queue, workflow_pollers=len(recent(workflow_polls)),
                         activity_pollers=len(recent(activity_polls)))
    seen = workflow_polls + activity_polls
    if seen:
        found.last_seen_seconds_ago = round(max(0.0, (now - max(seen)).total_seconds()), 1)
    missing = [kind for kind, polls in (("workflow", workflow_polls), ("activity", activity_polls))
               if not recent(polls)]
    if missing:
        tasks = " and ".join(f"{kind} tasks" for kind in missing)
        last = (f"; the last poll was {found.last_seen_seconds_ago:g} s ago" if seen else "")
        raise _Failed(f"no worker has polled task queue {queue!r} for {tasks} in the last {within:g} s{last}: "
                      "cases are registered but do not move; start the worker (python worker.py)", found)
    return found


async def _in_thread_once(state: State, check: Callable[[State], _T]) -> _T:
    """`check(state)` in a thread; if the one started by an earlier round is still running (a
    database that hangs rather than refuses), wait for it again instead of starting another, so
    that polling a hung database never piles up threads."""
    pending: dict[str, asyncio.Future] | None = getattr(state, "health_threads", None)
    if pending is None:
        pending = state.health_threads = {}
    future = pending.get(check.__name__)
    if future is None or future.done():
        future = pending[check.__name__] = asyncio.ensure_future(asyncio.to_thread(check, state))
    return await asyncio.shield(future)


def _engine(state: State) -> Engine:
    return database_engine(state)


def _check_database(state: State) -> None:
    probe_write(_engine(state), lock_timeout=DATABASE_LOCK_TIMEOUT_SECONDS)


def _check_backlog(state: State) -> NotificationsHealth:
    settings: Settings = state.settings
    if settings.notify_webhook_url is None:  # nothing is sent: notifications are only read in the API
        return NotificationsHealth(ok=True, webhook=False)
    with Session(_engine(state)) as session:
        waiting, oldest = undelivered(session)
    found = NotificationsHealth(ok=True, webhook=True, waiting=waiting)
    age = None
    if oldest is not None:
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        age = found.oldest_waiting_seconds = round(max(0.0, (datetime.now(UTC) - oldest).total_seconds()), 1)
    too_many = waiting > settings.health_notify_backlog_max
    too_old = age is not None and age > settings.health_notify_backlog_max_age_seconds
    if too_many or too_old:
        reasons = ([f"{waiting} notifications wait (more than {settings.health_notify_backlog_max})"] if too_many
                   else [])
        reasons += ([f"the oldest has waited {age:g} s (longer than {settings.health_notify_backlog_max_age_seconds:g} s)"]
                    if too_old else [])
        raise _Failed(f"the webhook is behind: {' and '.join(reasons)}; see the worker's log for why", found)
    return found


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    return (str(exc).splitlines() or [type(exc).__name__])[0]


async def _bounded(check: Awaitable[object]) -> str | None:
    """None when the check passes, else why it failed (first line)."""
    try:
        await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:  # noqa: BLE001 - any failure means "not ok"
        return _reason(exc)
    return None


async def _bounded_value(check: Awaitable[_Found]) -> tuple[_Found | None, str | None]:
    """(what the check found, None) when it passes; (what it found, if anything, why not) otherwise."""
    try:
        return await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS), None
    except _Failed as failed:
        return failed.found, str(failed)  # type: ignore[return-value]
    except Exception as exc:  # noqa: BLE001 - any failure means "not ok"
        return None, _reason(exc)
